"""What the handlers are handed: the running engine, the jobs, the stats, health.

The daemon's supervisor (:mod:`s3sync.daemon.supervisor`) owns these and their
lifecycle; the handlers only use them. :class:`Handles` is the shape they use, typed
here, below both, so that ``api/`` imports nothing of ``daemon/`` nor the SQS
consumer or scheduler of ``sources/`` (the arrows point down), while the supervisor
stays free to start, retry and stop its resources as it sees fit. :class:`Jobs` lives
here too: it is the store the ``/api/v1/sync`` handlers create and read jobs in.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import uuid
from collections import OrderedDict
from collections.abc import Coroutine
from typing import Any, Protocol

from s3sync.api import schemas as s
from s3sync.config import Settings
from s3sync.local.mirror import Mirror
from s3sync.stats import SyncStats
from s3sync.sync.engine import Engine


class Jobs:
    """The last 100 background sync jobs, in memory."""

    def __init__(self, keep: int = 100) -> None:
        self.keep = keep
        self._jobs: OrderedDict[str, s.Job] = OrderedDict()

    def create(self, params: dict[str, Any]) -> s.Job:
        job = s.Job(
            job_id=uuid.uuid4().hex,
            status="queued",
            created_at=dt.datetime.now(dt.UTC).isoformat(),
            params=params,
        )
        self._jobs[job.job_id] = job
        while len(self._jobs) > self.keep:
            self._jobs.popitem(last=False)
        return job

    def get(self, job_id: str) -> s.Job | None:
        return self._jobs.get(job_id)


class Handles(Protocol):
    """The typed handles ``app[keys.SERVICES]`` gives a handler."""

    settings: Settings
    stats: SyncStats
    mirror: Mirror
    jobs: Jobs
    startup_error: str | None

    def engine_ready(self) -> bool:
        """True once the engine is open (S3 and the directory usable)."""
        ...

    def engine(self) -> Engine:
        """The running engine; an :class:`~s3sync.api.errors.ApiError` 503 while it is not."""
        ...

    async def health(self) -> s.Health:
        """The health report (cached for a moment)."""
        ...

    def refresh_gauges(self) -> None:
        """Bring the queue gauges of :attr:`stats` up to date before they are read."""
        ...

    def spawn(self, coro: Coroutine[Any, Any, Any]) -> asyncio.Task[Any]:
        """Run ``coro`` in the background; the supervisor cancels it at shutdown."""
        ...

    async def run_job(self, job: s.Job) -> None:
        """Run a background ``/api/v1/sync`` job to its end, recording the outcome on it."""
        ...

    async def confirm_subscription(self, url: str) -> None:
        """Confirm an SNS subscription (GET its host-checked SubscribeURL)."""
        ...


__all__ = ["Handles", "Jobs"]
