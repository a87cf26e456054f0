"""The configuration's sections, one pydantic model each: [s3], [sync], [api], [sqs], [hooks], [log].

Each field carries its default and its validation; a bad value is rejected with
the dotted key named (:func:`s3sync.config.format_validation_error`). Loading,
sources and precedence live in :mod:`s3sync.config.loading`.
"""

from __future__ import annotations

import ipaddress
import json
import os
import re
from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import (
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    InstanceOf,
    PlainSerializer,
    SecretStr,
    WithJsonSchema,
    field_validator,
    model_validator,
)
from pydantic_settings import NoDecode

from s3sync.config.units import parse_duration, parse_rate, parse_size
from s3sync.errors import ConfigError
from s3sync.model import ALL_KEYS, Shard, parse_shard

_section = ConfigDict(extra="forbid", frozen=True)


def _shard(v: Any) -> Shard:
    """``"K/N"`` (TOML, env, ``--shard``) → :class:`Shard`, parsed here once for every reader."""
    if isinstance(v, Shard):
        return v
    try:
        return parse_shard(None if v is None else str(v))
    except ConfigError as exc:
        raise ValueError(str(exc)) from exc


#: ``[sync] shard``: written ``"K/N"`` (``""`` = every key), held as a parsed :class:`Shard`.
ShardSpec = Annotated[
    InstanceOf[Shard],
    NoDecode,
    BeforeValidator(_shard),
    PlainSerializer(lambda s: s.spec, return_type=str),
    WithJsonSchema({"type": "string", "pattern": r"^(\s*\d+\s*/\s*\d+\s*)?$"}),
]

#: An S3 access point ARN (every partition; the region is empty for a multi-Region access point).
ACCESS_POINT_ARN = re.compile(
    r"arn:aws(-cn|-us-gov|-iso|-iso-[a-z])?:s3:[a-z0-9-]*:\d{12}:accesspoint[/:][a-z0-9.-]{3,63}"
)


class S3Settings(BaseModel):
    """Where the bucket lives."""

    model_config = _section

    bucket: str = ""
    prefix: str = ""
    region: str = "us-east-1"
    endpoint_url: str | None = None
    # > sync.concurrency: ranged parts of large objects and listing pages need connections too
    max_pool_connections: int = Field(default=256, ge=1, le=4096)
    connect_timeout_seconds: float = Field(default=10.0, gt=0)
    fast_get: bool = True
    # Requester-pays buckets: ``x-amz-request-payer: requester`` on every request of both paths.
    request_payer: bool = False
    # SSE-C: a file holding the 32-byte key (raw or base64). Only the path is configuration;
    # the key is read by the S3 layer and never appears in /api/v1/config or a log line.
    sse_customer_key_file: Path | None = None

    @field_validator("bucket")
    @classmethod
    def _bucket_name(cls, v: str) -> str:
        # a bucket name, an access point alias (``<name>-<id>-s3alias``, a valid name itself) or
        # an access point ARN (``arn:aws:s3:<region>:<account>:accesspoint/<name>``)
        if v and not (re.fullmatch(r"[a-z0-9][a-z0-9.\-_]{1,254}", v) or ACCESS_POINT_ARN.fullmatch(v)):
            raise ValueError(
                f"{v!r} is not a valid S3 bucket name, access point alias or access point ARN"
                " (arn:aws:s3:REGION:ACCOUNT:accesspoint/NAME)"
            )
        return v

    @field_validator("endpoint_url")
    @classmethod
    def _url(cls, v: str | None) -> str | None:
        if v in (None, ""):
            return None
        assert v is not None
        if not re.match(r"^https?://[^/\s]+", v):
            raise ValueError(f"{v!r} is not an http(s) URL")
        return v.rstrip("/")


# the StorageClass values a listing can carry (ListObjectsV2 API reference); a typo is refused
STORAGE_CLASSES = (
    "STANDARD",
    "REDUCED_REDUNDANCY",
    "STANDARD_IA",
    "ONEZONE_IA",
    "INTELLIGENT_TIERING",
    "GLACIER",
    "DEEP_ARCHIVE",
    "GLACIER_IR",
    "OUTPOSTS",
    "SNOW",
    "EXPRESS_ONEZONE",
)


class SyncSettings(BaseModel):
    """How the mirror is kept."""

    model_config = _section

    local_dir: Path = Path("downloaded_files")
    state_path: Path | None = None
    interval_seconds: float = Field(default=3600.0, gt=0)
    periodic: bool = True
    delete: bool = False
    max_delete: int | str = "50%"
    # operations in flight; memory is bounded separately by bytes in flight (sync.admission)
    concurrency: int = Field(default=128, ge=1, le=1024)
    # 0 = no limit (the old service's default of 1000 silently left big objects out)
    max_file_size_mb: float = Field(default=0.0, ge=0)
    # NoDecode: an env value reaches _globs as a plain string (comma list or JSON list)
    # instead of failing pydantic-settings' JSON decoding with a message naming no key.
    include: Annotated[tuple[str, ...], NoDecode] = ()
    exclude: Annotated[tuple[str, ...], NoDecode] = ()
    # storage classes skipped from the listing, without a GET (``--exclude-storage-class``)
    exclude_storage_classes: Annotated[tuple[str, ...], NoDecode] = ()
    verify_integrity: bool = True
    skip_existing: bool = True
    checksum: bool = False
    download_timeout_seconds: float = Field(default=300.0, gt=0)
    retry_attempts: int = Field(default=3, ge=0, le=100)
    multipart_threshold_mb: float = Field(default=64.0, gt=0)
    part_size_mb: float = Field(default=16.0, ge=5)
    fsync: bool = True
    drain_timeout_seconds: float = Field(default=30.0, ge=0)
    journal_high_water: int = Field(default=100_000, ge=1)
    # Operator controls (README, "Operator controls"): parsed by the same
    # functions as the CLI flags, so a bad value names the key and says what is expected.
    bwlimit: int = 0  # bytes per second for all downloads together; "10M" in TOML; 0 = none
    min_size: int | None = None
    max_size: int | None = None
    min_age: float | None = None  # seconds; "2h" in TOML
    max_age: float | None = None
    files_from: Path | None = None
    resume_min_mb: float = Field(default=64.0, ge=0)
    # The local side is never harmed (README, "How it works"): delete guards, backups, case policy.
    allow_empty_source: bool = False
    backup_dir: Path | None = None
    case_conflict: Literal["skip", "error"] = "skip"
    # Buckets too big to list (docs/scale.md, "Sharding across hosts"): "K/N" = this host takes shard K of N.
    shard: ShardSpec = ALL_KEYS

    @model_validator(mode="after")
    def _backup_outside_mirror(self) -> SyncSettings:
        """A backup inside the mirror would be swept as untracked files and deleted."""
        if self.backup_dir is not None:
            b, m = os.path.realpath(self.backup_dir), os.path.realpath(self.local_dir)
            if b == m or b.startswith(m + os.sep):
                raise ValueError(
                    f"backup_dir {str(self.backup_dir)!r} is inside local_dir {str(self.local_dir)!r}; "
                    "choose a directory outside the mirror"
                )
        return self

    @field_validator("bwlimit", mode="before")
    @classmethod
    def _bwlimit(cls, v: Any) -> int:
        return parse_rate(v, "")

    @field_validator("min_size", "max_size", mode="before")
    @classmethod
    def _size(cls, v: Any) -> int | None:
        return None if v is None or v == "" else parse_size(v, "")

    @field_validator("min_age", "max_age", mode="before")
    @classmethod
    def _age(cls, v: Any) -> float | None:
        return None if v is None or v == "" else parse_duration(v, "")

    @field_validator("files_from", "backup_dir", mode="before")
    @classmethod
    def _files_from(cls, v: Any) -> Any:
        return None if v == "" else v

    @field_validator("max_delete")
    @classmethod
    def _max_delete(cls, v: int | str) -> int | str:
        if isinstance(v, int):
            if v < -1:
                raise ValueError("must be -1 (no limit), a count >= 0, or a percentage like '10%'")
            return v
        text = v.strip()
        if re.fullmatch(r"-?\d+", text):
            return cls._max_delete(int(text))
        m = re.fullmatch(r"(\d+(?:\.\d+)?)\s*%", text)
        if not m or float(m.group(1)) > 100:
            raise ValueError("must be -1 (no limit), a count >= 0, or a percentage like '10%'")
        return f"{m.group(1)}%"

    @field_validator("include", "exclude", "exclude_storage_classes", mode="before")
    @classmethod
    def _globs(cls, v: Any) -> Any:
        if isinstance(v, str):
            if v.strip().startswith("["):
                return json.loads(v)
            return tuple(p.strip() for p in v.split(",") if p.strip())
        return v

    @field_validator("exclude_storage_classes")
    @classmethod
    def _storage_classes(cls, v: tuple[str, ...]) -> tuple[str, ...]:
        out = tuple(c.strip().upper() for c in v if c.strip())
        for c in out:
            if c not in STORAGE_CLASSES:
                raise ValueError(f"{c!r} is not an S3 storage class (one of {', '.join(STORAGE_CLASSES)})")
        return out

    @property
    def resolved_state_path(self) -> Path:
        """The state DB; each shard keeps its own, as N hosts may share one ``local_dir``."""
        if self.state_path:
            return self.state_path
        name = "state.db" if self.shard.everything else f"state-{self.shard.index}-of-{self.shard.count}.db"
        return self.local_dir / ".s3sync" / name

    @property
    def max_file_size_bytes(self) -> int | None:
        return None if self.max_file_size_mb == 0 else int(self.max_file_size_mb * 1024 * 1024)


class InventorySettings(BaseModel):
    """S3 Inventory as the reconcile's listing (buckets too big to list)."""

    model_config = _section

    # s3://DEST-BUCKET/DEST-PREFIX/SOURCE-BUCKET/CONFIG-ID/ ; empty = list the bucket
    location: str = ""
    region: str | None = None  # of the report's bucket, when not [s3] region
    tmp_dir: Path | None = None  # the external sort's spill files (default: the system temp dir)

    @field_validator("location")
    @classmethod
    def _location(cls, v: str) -> str:
        v = v.strip()
        if v and not re.fullmatch(r"s3://[a-z0-9][a-z0-9.\-_]{1,254}(/.*)?", v):
            raise ValueError(f"{v!r} is not s3://BUCKET/PREFIX/SOURCE-BUCKET/CONFIG-ID/")
        return v

    @field_validator("region", "tmp_dir", mode="before")
    @classmethod
    def _empty(cls, v: Any) -> Any:
        return None if v == "" else v


class ApiSettings(BaseModel):
    """The HTTP API."""

    model_config = _section

    enabled: bool = True
    host: str = "127.0.0.1"
    port: int = Field(default=8888, ge=0, le=65535)
    token: SecretStr | None = None
    notification_secret: SecretStr | None = None
    max_body_bytes: int = Field(default=1024 * 1024, ge=1024)
    max_header_bytes: int = Field(default=8190, ge=1024)
    # slow clients (slowloris): a head must arrive within this of its first byte (or of the
    # connection opening), a body within body_timeout of its head; past max_connections: 503
    header_timeout_seconds: float = Field(default=10.0, gt=0, le=3600)
    body_timeout_seconds: float = Field(default=30.0, gt=0, le=3600)
    max_connections: int = Field(default=512, ge=1)
    auth_failures_per_minute: int = Field(default=20, ge=1)
    tls_cert: Path | None = None
    tls_key: Path | None = None

    @field_validator("token", "notification_secret", mode="before")
    @classmethod
    def _empty_secret(cls, v: Any) -> Any:
        return None if v in ("", None) else v

    @model_validator(mode="after")
    def _tls_pair(self) -> ApiSettings:
        if (self.tls_cert is None) != (self.tls_key is None):
            raise ValueError("tls_cert and tls_key must be set together")
        return self

    @property
    def is_loopback(self) -> bool:
        if self.host in ("localhost", "localhost.localdomain"):
            return True
        try:
            return ipaddress.ip_address(self.host).is_loopback
        except ValueError:
            return False


class SqsSettings(BaseModel):
    """Optional SQS consumer."""

    model_config = _section

    queue_url: str = ""
    endpoint_url: str | None = None
    region: str | None = None
    wait_time_seconds: int = Field(default=20, ge=0, le=20)
    visibility_timeout_seconds: int = Field(default=60, ge=1, le=43200)
    max_messages: int = Field(default=10, ge=1, le=10)
    # With [sync] shard: true when N hosts consume ONE queue; a message for other shards' keys is
    # then made visible again (not deleted) for its owner. False: a queue per host (SNS fan-out).
    shared_queue: bool = False

    @field_validator("endpoint_url", mode="before")
    @classmethod
    def _empty_url(cls, v: Any) -> Any:
        return None if v == "" else v


class HooksSettings(BaseModel):
    """Change hooks: a command and/or a URL told about every applied change (at least once)."""

    model_config = _section

    command: tuple[str, ...] = ()  # an argv list, run without a shell
    url: str = ""
    batch_ms: int = Field(default=200, ge=0, le=60_000)
    max_batch: int = Field(default=1000, ge=1, le=100_000)
    timeout_seconds: float = Field(default=30.0, gt=0, le=3600)
    secret_file: Path | None = None  # HMAC key for the POST's X-S3Sync-Signature

    @field_validator("command")
    @classmethod
    def _argv(cls, v: tuple[str, ...]) -> tuple[str, ...]:
        if v and not v[0].strip():
            raise ValueError("the program (first element) is empty")
        return v

    @field_validator("url")
    @classmethod
    def _http(cls, v: str) -> str:
        if v and not re.fullmatch(r"https?://[^\s/?#]+(?:[/?#]\S*)?", v):
            raise ValueError(f"{v!r} is not an http(s) URL")
        return v

    @field_validator("secret_file", mode="before")
    @classmethod
    def _empty_path(cls, v: Any) -> Any:
        return None if v == "" else v

    @property
    def enabled(self) -> bool:
        return bool(self.command or self.url)


class LogSettings(BaseModel):
    """Logging."""

    model_config = _section

    level: Literal["DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL"] = "INFO"
    format: Literal["auto", "json", "console"] = "auto"
    file: Path | None = None

    @field_validator("level", mode="before")
    @classmethod
    def _upper(cls, v: Any) -> Any:
        return v.upper() if isinstance(v, str) else v

    @field_validator("file", mode="before")
    @classmethod
    def _empty_file(cls, v: Any) -> Any:
        return None if v == "" else v
