"""The daemon's supervisor: the engine, the scheduler, the SQS consumer, hooks, jobs, SNS.

The engine is opened in the background: the API answers (health says 503 with
the reason) while S3 is unreachable, credentials are wrong or the bucket is
missing, and the daemon recovers by itself when S3 comes back. Each resource has
one aiohttp cleanup context, declared in dependency order (:meth:`Supervisor.install`),
so aiohttp unwinds them in reverse, a partial start included. The handlers see the
supervisor only as :class:`~s3sync.api.handles.Handles`, through ``app[keys.SERVICES]``.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import time
from collections.abc import AsyncIterator, Coroutine
from contextlib import AsyncExitStack
from typing import Any

import aiohttp
import structlog
from aiohttp import web

from s3sync.api import schemas as s
from s3sync.api.errors import ApiError
from s3sync.api.handles import Jobs
from s3sync.config import Settings
from s3sync.daemon.systemd import Notifier
from s3sync.local.mirror import Mirror
from s3sync.model import ChangeSource
from s3sync.retry import Backoff
from s3sync.sources.scheduler import Scheduler
from s3sync.sources.sqs import SqsConsumer
from s3sync.stats import SyncStats
from s3sync.sync.engine import Engine, open_engine
from s3sync.sync.hooks import Hooks

log = structlog.get_logger(__name__)

HEALTH_CACHE_SECONDS = 2.0


class Supervisor:
    """Owns the daemon's resources; :meth:`install` gives each its cleanup context."""

    def __init__(self, settings: Settings, stats: SyncStats, notifier: Notifier | None = None) -> None:
        self.settings = settings
        self.stats = stats
        self.mirror = Mirror(
            settings.sync.local_dir, fsync=settings.sync.fsync, backup_dir=settings.sync.backup_dir
        )
        self.jobs = Jobs()
        self.notifier = notifier or Notifier()
        self.scheduler: Scheduler | None = None
        self.sqs: SqsConsumer | None = None
        self._engine: Engine | None = None
        self._engine_ready = asyncio.Event()
        self._tasks: set[asyncio.Task[Any]] = set()
        self._stack = AsyncExitStack()  # holds the open engine (open_engine's context)
        self._runner: asyncio.Task[None] | None = None
        self._stop = asyncio.Event()
        self._health_at = 0.0
        self._health: s.Health | None = None
        self.startup_error: str | None = None
        self._http: aiohttp.ClientSession | None = None
        self.hooks = (
            Hooks(settings.hooks, settings.sync.resolved_state_path, stats)
            if settings.hooks.enabled
            else None
        )  # [hooks]: sync.hooks

    # -- engine lifecycle ---------------------------------------------------
    def engine_ready(self) -> bool:
        return self._engine is not None

    def engine(self) -> Engine:
        if self._engine is None:
            raise ApiError(
                503,
                "unavailable",
                f"not connected to S3 yet: {self.startup_error or 'starting'}",
                headers={"Retry-After": "5"},
            )
        return self._engine

    def install(self, app: web.Application) -> None:
        """One cleanup context per resource, in dependency order; aiohttp unwinds them in reverse.

        Stopping therefore goes: the engine runner, SQS intake (no new intake may race the
        engine's drain), the scheduler, background tasks, the engine (drained), hooks
        (what is not acknowledged stays in the outbox), the SNS confirmation client.
        """
        app.cleanup_ctx.extend(
            [
                self._http_ctx,
                self._hooks_ctx,
                self._engine_ctx,
                self._tasks_ctx,
                self._scheduler_ctx,
                self._sqs_ctx,
                self._runner_ctx,
            ]
        )

    async def _http_ctx(self, _app: web.Application) -> AsyncIterator[None]:
        yield
        if self._http is not None:
            await self._http.close()

    async def _hooks_ctx(self, _app: web.Application) -> AsyncIterator[None]:
        yield
        if self.hooks is not None:
            await self.hooks.close()

    async def _engine_ctx(self, _app: web.Application) -> AsyncIterator[None]:
        yield
        if self._engine is not None:
            self.notifier.stopping(f"draining {self._engine.queue.in_flight} transfers")
        # the stack holds the engine from the moment it opened, even if the runner was
        # cancelled before it was published as ready: closing it is the one way out
        await self._stack.aclose()
        self._engine = None

    async def _tasks_ctx(self, _app: web.Application) -> AsyncIterator[None]:
        yield
        for t in list(self._tasks):
            t.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)

    async def _scheduler_ctx(self, _app: web.Application) -> AsyncIterator[None]:
        yield
        if self.scheduler is not None:
            await self.scheduler.stop()

    async def _sqs_ctx(self, _app: web.Application) -> AsyncIterator[None]:
        yield
        if self.sqs is not None:
            await self.sqs.stop()
            self.sqs = None

    async def _runner_ctx(self, _app: web.Application) -> AsyncIterator[None]:
        """Try once in the foreground (usually ready with the app); keep trying in the background."""
        self._runner = asyncio.create_task(self._run_engine(), name="engine-runner")
        await asyncio.wait({self._runner}, timeout=self.settings.s3.connect_timeout_seconds + 5)
        yield
        self._stop.set()
        self._runner.cancel()
        await asyncio.gather(self._runner, return_exceptions=True)

    async def wait_ready(self, timeout: float) -> bool:  # noqa: ASYNC109 - callers poll readiness
        try:
            await asyncio.wait_for(self._engine_ready.wait(), timeout)
        except TimeoutError:
            return False
        return True

    async def _run_engine(self) -> None:
        """Open the engine, retrying with backoff until S3 and the directory are usable."""
        backoff = Backoff(base=0.5, cap=30.0)
        while not self._stop.is_set():
            try:
                engine = await self._stack.enter_async_context(
                    open_engine(self.settings, self.stats, self.mirror)
                )
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                self.startup_error = str(exc)
                delay = backoff.next_delay()
                log.error("cannot start the sync engine; retrying", error=str(exc), retry_in=round(delay, 2))
                self.notifier.status(f"degraded: {exc}")
                try:
                    await asyncio.wait_for(self._stop.wait(), delay)
                except TimeoutError:
                    pass
                continue
            if self.hooks is not None and self.hooks.engine is None:
                await self.hooks.attach(engine)  # before any intake: every applied change is recorded
            self._engine = engine
            self.spawn(self._first_check(engine))
            self.startup_error = None
            await engine.replay_journal()
            if self.settings.sync.periodic:
                self.scheduler = Scheduler(engine, self.settings.sync.interval_seconds)
                self.scheduler.start()
            if self.settings.sqs.queue_url:
                # After the journal replay: SQS intake lands behind the changes already accepted.
                self.sqs = SqsConsumer(self.settings, engine, self.stats, confirm=self.confirm_subscription)
                await self.sqs.start()
            self._engine_ready.set()
            self.notifier.status(f"mirroring s3://{self.settings.s3.bucket} into {self.mirror.root}")
            return

    async def _first_check(self, engine: Engine) -> None:
        ok, reason = await engine.check_s3()
        if not ok:
            log.error("S3 is not usable yet; will keep trying", reason=reason)

    def spawn(self, coro: Coroutine[Any, Any, Any]) -> asyncio.Task[Any]:
        task = asyncio.create_task(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)
        return task

    # -- jobs, health, misc -------------------------------------------------
    async def run_job(self, job: s.Job) -> None:
        job.status = "running"
        job.started_at = dt.datetime.now(dt.UTC).isoformat()
        try:
            report = await self.engine().reconcile(
                prefix=job.params.get("prefix") or None,
                delete=job.params.get("delete"),
                dry_run=bool(job.params.get("dry_run")),
                source=ChangeSource.MANUAL,
            )
            job.result = s.SyncResponse.model_validate(report.legacy())
            job.status = "completed" if report.ok else "failed"
        except Exception as exc:  # the job reports it; the daemon goes on
            job.status = "failed"
            job.error = str(exc)
        job.finished_at = dt.datetime.now(dt.UTC).isoformat()

    async def health(self) -> s.Health:
        now = time.monotonic()
        if self._health is not None and now - self._health_at < HEALTH_CACHE_SECONDS:
            return self._health
        writable = await asyncio.to_thread(self.mirror.is_writable)
        self.stats.health.directory_writable = writable
        reason: str | None = None
        s3_ok = False
        if self._engine is None:
            reason = self.startup_error or "starting"
        else:
            s3_ok, reason = await self._engine.check_s3()
        if not writable:
            reason = f"download directory {self.mirror.root} is not writable" + (
                f"; {reason}" if reason else ""
            )
        disk_error = self.stats.health.local_io_error if writable else None
        if disk_error:
            # e.g. disk full: the directory is writable in principle, but the last write failed
            reason = f"writing into the mirror failed: {disk_error}" + (f"; {reason}" if reason else "")
        guard = self.stats.health.delete_guard
        if guard:
            # reconciles keep failing on the delete guard until an operator decides
            reason = f"reconcile refused to delete: {guard}" + (f"; {reason}" if reason else "")
        status = (
            "healthy"
            if (s3_ok and writable and not disk_error and not guard)
            else ("unhealthy" if not writable and not s3_ok else "degraded")
        )
        report = s.Health(
            status=status,  # type: ignore[arg-type]
            message="S3 Sync Service is running and all connections are active"
            if status == "healthy"
            else f"S3 Sync Service is {status}: {reason}",
            s3_connection=s3_ok,
            download_directory=str(self.mirror.root),
            directory_writable=writable,
            timestamp=dt.datetime.now(dt.UTC).isoformat(),
            reason=reason,
        )
        self._health, self._health_at = report, now
        return report

    def refresh_gauges(self) -> None:
        if self._engine is not None:
            self._engine.pool.update_gauges()

    async def confirm_subscription(self, url: str) -> None:
        """GET a (host-checked) SNS SubscribeURL; never follow redirects."""
        if self._http is None:
            self._http = aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=10))
        try:
            async with self._http.get(url, allow_redirects=False) as resp:
                log.info("SNS subscription confirmation sent", status=resp.status)
        except Exception as exc:
            log.warning("SNS subscription confirmation failed", error=str(exc))
