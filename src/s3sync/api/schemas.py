"""Response models: the single description of every JSON shape the API returns.

Handlers build these; :mod:`s3sync.api.openapi` turns them into the OpenAPI
document, so the docs cannot drift from what is served.
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

# a /api/v1/files cursor: unpadded base64url of the key the next page starts after
CURSOR_PATTERN = r"^(?:[A-Za-z0-9_-]{4})*(?:[A-Za-z0-9_-]{2,3})?$"


class _Out(BaseModel):
    model_config = ConfigDict(extra="allow")


class ErrorResponse(BaseModel):
    error: str = Field(description="machine-readable error code")
    message: str = Field(description="human-readable explanation")


class ServiceInfo(_Out):
    service: str
    version: str
    uptime_seconds: float
    docs: str = "/docs"


class Ping(BaseModel):
    status: Literal["ok"] = "ok"


class Health(_Out):
    status: Literal["healthy", "degraded", "unhealthy"]
    message: str
    s3_connection: bool
    download_directory: str
    directory_writable: bool
    timestamp: str
    reason: str | None = None


class LatencySummary(BaseModel):
    count: int
    p50: float | None
    p99: float | None


class Freshness(BaseModel):
    events_applied_through: str | None = Field(
        description="RFC 3339: every event accepted before this instant has been applied (null: none yet)"
    )
    reconciled_through: str | None = Field(
        description="RFC 3339: start of the last complete, error-free reconcile pass (null: none yet)"
    )
    lag_seconds: float = Field(description="now - events_applied_through; 0 when nothing is pending")
    pending: int = Field(description="changes accepted but not yet applied")


class WaitResult(BaseModel):
    key: str
    status: Literal["present", "absent"]
    etag: str | None
    size: int | None
    path: str = Field(description="relative to sync.local_dir")


class WaitTimeout(WaitResult):
    error: Literal["wait_timeout"] = "wait_timeout"
    message: str


class Stats(_Out):
    files_synced: int
    files_deleted: int
    files_failed: int
    files_skipped: int
    files_unchanged: int
    unsafe_keys: int
    bytes_downloaded: int
    queue_depth: int
    in_flight: int
    coalesced: int
    journal_pending: int
    retries: int
    events_received: int
    events_ignored: int
    events_rejected: int
    test_events: int
    auth_failures: int
    last_reconcile: str | None
    last_successful_reconcile: str | None
    next_reconcile: str | None
    reconcile_running: bool
    last_error: str | None
    s3_reachable: bool | None
    event_latency_seconds: LatencySummary
    transfer_seconds: LatencySummary
    uptime_seconds: float
    freshness: Freshness


class SyncDetail(BaseModel):
    operation: str
    file_key: str
    status: str
    message: str


class SyncError(BaseModel):
    key: str
    error: str
    message: str


class SyncResponse(_Out):
    status: Literal["success", "partial", "failed"]
    message: str
    processed_files: int
    successful_operations: int
    failed_operations: int
    sync_details: list[SyncDetail]
    downloaded: int
    deleted: int
    failed: int
    skipped: int
    unchanged: int
    bytes: int
    seconds: float
    dry_run: bool
    aborted: str | None
    errors: list[SyncError]


class JobAccepted(BaseModel):
    job_id: str
    status: Literal["queued"] = "queued"


class Job(BaseModel):
    job_id: str
    status: Literal["queued", "running", "completed", "failed"]
    created_at: str
    started_at: str | None = None
    finished_at: str | None = None
    params: dict[str, Any] = Field(default_factory=dict)
    result: SyncResponse | None = None
    error: str | None = None


class NotificationAccepted(BaseModel):
    accepted: int
    ignored: int


class FileEntry(_Out):
    key: str
    size: int
    last_modified: str | None = None
    etag: str | None = None


class FileList(BaseModel):
    source: Literal["local", "s3"]
    prefix: str
    count: int
    files: list[FileEntry]
    next_cursor: str | None
