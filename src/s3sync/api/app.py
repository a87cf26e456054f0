"""The composition root: builds every service, wires them, owns their lifecycle.

Each resource gets one cleanup context, declared in dependency order; aiohttp
unwinds them in reverse, even after a partial start. Handlers reach services
only through typed ``web.AppKey``s.

The engine is opened in the background: the API answers (health says 503 with
the reason) while S3 is unreachable, credentials are wrong or the bucket is
missing, and the daemon recovers by itself when S3 comes back.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import signal
import ssl
import sys
import time
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable, Coroutine
from contextlib import AsyncExitStack
from typing import Any

import aiohttp
import structlog
from aiohttp import web

from s3sync import logs
from s3sync.api import handlers as h
from s3sync.api import keys as K
from s3sync.api import schemas as s
from s3sync.api.auth import FailureLimiter, bearer_ok, hmac_problem
from s3sync.api.openapi import build_spec
from s3sync.config import Settings
from s3sync.sync.engine import Engine
from s3sync.errors import ConfigError, S3SyncError
from s3sync.local.mirror import Mirror
from s3sync.runtime import open_engine
from s3sync.sources.scheduler import Scheduler
from s3sync.sources.sqs import SqsConsumer
from s3sync.stats import SyncStats, make_registry
from s3sync.systemd import Notifier, watchdog_loop

log = structlog.get_logger("s3sync.app")

PUBLIC_PATHS = frozenset({"/ping", "/api/v1/health"})
NOTIFICATION_PATH = "/api/v1/s3-notification"
HEALTH_CACHE_SECONDS = 2.0


class Services:
    """Everything the handlers need, started and stopped by :func:`create_app`."""

    def __init__(self, settings: Settings, stats: SyncStats, notifier: Notifier | None = None) -> None:
        self.settings = settings
        self.stats = stats
        self.mirror = Mirror(settings.sync.local_dir, fsync=settings.sync.fsync)
        self.jobs = h.Jobs()
        self.notifier = notifier or Notifier()
        self.scheduler: Scheduler | None = None
        self.sqs: SqsConsumer | None = None
        self._engine: Engine | None = None
        self._engine_ready = asyncio.Event()
        self._tasks: set[asyncio.Task[Any]] = set()
        self._stack = AsyncExitStack()
        self._runner: asyncio.Task[None] | None = None
        self._stop = asyncio.Event()
        self._health_at = 0.0
        self._health: s.Health | None = None
        self.startup_error: str | None = None
        self._http: aiohttp.ClientSession | None = None

    # -- engine lifecycle ---------------------------------------------------
    def engine_ready(self) -> bool:
        return self._engine is not None

    def engine(self) -> Engine:
        if self._engine is None:
            from s3sync.api.handlers import ApiError

            raise ApiError(
                503,
                "unavailable",
                f"not connected to S3 yet: {self.startup_error or 'starting'}",
                headers={"Retry-After": "5"},
            )
        return self._engine

    async def start(self) -> None:
        """Try once in the foreground (usually ready with the app); keep trying in the background."""
        self._runner = asyncio.create_task(self._run_engine(), name="engine-runner")
        await asyncio.wait({self._runner}, timeout=self.settings.s3.connect_timeout_seconds + 5)

    async def wait_ready(self, timeout: float) -> bool:  # noqa: ASYNC109 - callers poll readiness
        try:
            await asyncio.wait_for(self._engine_ready.wait(), timeout)
        except TimeoutError:
            return False
        return True

    async def _run_engine(self) -> None:
        """Open the engine, retrying with backoff until S3 and the directory are usable."""
        delay = 0.5
        while not self._stop.is_set():
            try:
                ctx = open_engine(self.settings, self.stats)
                engine = await ctx.__aenter__()
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                self.startup_error = str(exc)
                log.error("cannot start the sync engine; retrying", error=str(exc), retry_in=delay)
                self.notifier.status(f"degraded: {exc}")
                try:
                    await asyncio.wait_for(self._stop.wait(), delay)
                except TimeoutError:
                    pass
                delay = min(delay * 2, 30.0)
                continue
            self._engine = engine
            self.spawn(self._first_check(engine))
            self._engine_cm = ctx
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

    async def stop(self) -> None:
        self._stop.set()
        if self._runner is not None:
            self._runner.cancel()
            await asyncio.gather(self._runner, return_exceptions=True)
        if self.sqs is not None:
            # First: no new intake may race the engine's drain below.
            await self.sqs.stop()
            self.sqs = None
        if self.scheduler is not None:
            await self.scheduler.stop()
        for t in list(self._tasks):
            t.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        if self._engine is not None:
            self.notifier.stopping(f"draining {self._engine.queue.in_flight} transfers")
            await self._engine_cm.__aexit__(None, None, None)
            self._engine = None
        if self._http is not None:
            await self._http.close()

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
        self.stats.directory_writable = writable
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
        disk_error = self.stats.local_io_error if writable else None
        if disk_error:
            # e.g. disk full: the directory is writable in principle, but the last write failed
            reason = f"writing into the mirror failed: {disk_error}" + (f"; {reason}" if reason else "")
        status = (
            "healthy"
            if (s3_ok and writable and not disk_error)
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
            self.stats.queue_depth = self._engine.queue.depth
            self.stats.in_flight = self._engine.queue.in_flight

    async def confirm_subscription(self, url: str) -> None:
        """GET a (host-checked) SNS SubscribeURL; never follow redirects."""
        if self._http is None:
            self._http = aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=10))
        try:
            async with self._http.get(url, allow_redirects=False) as resp:
                log.info("SNS subscription confirmation sent", status=resp.status)
        except Exception as exc:
            log.warning("SNS subscription confirmation failed", error=str(exc))


# -- middlewares ----------------------------------------------------------
def _client(request: web.Request) -> str:
    return request.remote or "unknown"


@web.middleware
async def error_middleware(
    request: web.Request, handler: Callable[[web.Request], Awaitable[web.StreamResponse]]
) -> web.StreamResponse:
    try:
        return await handler(request)
    except h.ApiError as exc:
        return web.json_response(h.error_body(exc.code, exc.message), status=exc.status, headers=exc.headers)
    except web.HTTPException as exc:
        if exc.status < 400:
            raise
        code = {
            404: "not_found",
            405: "method_not_allowed",
            413: "payload_too_large",
            416: "range_not_satisfiable",
        }.get(exc.status, "http_error")
        msg = exc.reason
        if exc.status == 413:
            msg = f"request body exceeds the limit of {request.app[K.SETTINGS].api.max_body_bytes} bytes"
        kept = ("allow", "content-range", "retry-after")
        headers = {k: v for k, v in exc.headers.items() if k.lower() in kept}
        return web.json_response(h.error_body(code, msg), status=exc.status, headers=headers)
    except S3SyncError as exc:
        log.warning("request failed", path=request.path, error=str(exc))
        return web.json_response(h.error_body(exc.code, str(exc)), status=502)
    except asyncio.CancelledError:
        raise
    except Exception as exc:
        log.exception("unhandled error", path=request.path)
        return web.json_response(
            h.error_body("internal", f"internal error ({type(exc).__name__})"), status=500
        )


@web.middleware
async def auth_middleware(
    request: web.Request, handler: Callable[[web.Request], Awaitable[web.StreamResponse]]
) -> web.StreamResponse:
    """Who may call what (docs/security.md has the full matrix).

    - ``/ping`` and ``/api/v1/health`` are always open (load balancers, systemd).
    - ``api.token`` set: everything else needs ``Authorization: Bearer <token>``.
    - ``api.notification_secret`` set: the notification endpoint also accepts a
      fresh HMAC signature; when no token is set, the signature is the *only* way
      in there, and the other endpoints stay open (loopback-only, enforced by
      ``check_serving``).
    - A client with too many recent failures gets 429 before its credentials are
      even looked at; open endpoints never touch its failure count.
    """
    settings = request.app[K.SETTINGS].api
    path = request.path
    token, secret = settings.token, settings.notification_secret
    is_notification = path == NOTIFICATION_PATH
    if path in PUBLIC_PATHS or (token is None and (secret is None or not is_notification)):
        return await handler(request)
    limiter = request.app[LIMITER]
    client = _client(request)
    wait = limiter.blocked_for(client)
    if wait:
        raise h.ApiError(
            429,
            "too_many_attempts",
            f"too many failed authentication attempts from {client}; retry in {wait} s",
            headers={"Retry-After": str(wait)},
        )
    ok = token is not None and bearer_ok(request.headers.get("Authorization"), token)
    if token is None:
        problem = "missing X-S3Sync-Timestamp or X-S3Sync-Signature"
    elif is_notification and secret is not None:
        problem = "missing or invalid bearer token (or HMAC signature)"
    else:
        problem = "missing or invalid bearer token"
    if not ok and is_notification and secret is not None and "X-S3Sync-Signature" in request.headers:
        body = await request.read()  # bounded by client_max_size: 413 past api.max_body_bytes
        hp = hmac_problem(
            secret, request.headers.get("X-S3Sync-Timestamp"), request.headers.get("X-S3Sync-Signature"), body
        )
        ok = hp is None
        problem = hp or problem
    if not ok:
        limiter.failure(client)
        request.app[K.STATS].auth_failures += 1
        log.warning("authentication failed", path=path, client=client, reason=problem)
        raise h.ApiError(401, "unauthorized", problem, headers={"WWW-Authenticate": 'Bearer realm="s3sync"'})
    limiter.success(client)
    return await handler(request)


@web.middleware
async def context_middleware(
    request: web.Request, handler: Callable[[web.Request], Awaitable[web.StreamResponse]]
) -> web.StreamResponse:
    rid = request.headers.get("X-Request-Id", "")[:64] or uuid.uuid4().hex[:16]
    structlog.contextvars.bind_contextvars(request_id=rid)
    started = time.monotonic()
    try:
        resp = await handler(request)
        resp.headers["X-Request-Id"] = rid
        return resp
    finally:
        log.debug(
            "request", method=request.method, path=request.path, duration=round(time.monotonic() - started, 4)
        )
        structlog.contextvars.unbind_contextvars("request_id")


LIMITER = web.AppKey("limiter", FailureLimiter)


def create_app(settings: Settings, *, notifier: Notifier | None = None) -> web.Application:
    """Build the aiohttp application; services start with the app and stop with it."""
    app = web.Application(
        middlewares=[context_middleware, error_middleware, auth_middleware],
        client_max_size=settings.api.max_body_bytes,
    )
    stats = SyncStats()
    app[K.SETTINGS] = settings
    app[K.STATS] = stats
    app[K.REGISTRY] = make_registry(stats)
    app[K.OPENAPI] = build_spec()
    app[LIMITER] = FailureLimiter(settings.api.auth_failures_per_minute)
    services = Services(settings, stats, notifier)
    app[K.SERVICES] = services

    async def services_ctx(app: web.Application) -> AsyncIterator[None]:
        await services.start()
        yield
        await services.stop()

    app.cleanup_ctx.append(services_ctx)

    r = app.router
    r.add_get("/", h.index)
    r.add_get("/ping", h.ping)
    r.add_get("/api/v1/health", h.health)
    r.add_get("/api/v1/config", h.config)
    r.add_get("/api/v1/stats", h.stats)
    r.add_get("/metrics", h.metrics)
    r.add_post("/api/v1/sync", h.sync)
    r.add_get("/api/v1/sync/{job_id}", h.sync_job)
    r.add_post(NOTIFICATION_PATH, h.notification)
    r.add_get("/api/v1/files", h.files)
    r.add_get("/api/v1/download/{key:.+}", h.download)
    r.add_get("/api/v1/openapi.json", h.openapi)
    r.add_get("/docs", h.docs)
    try:
        from swagger_ui_bundle import swagger_ui_path

        r.add_static("/docs/static", swagger_ui_path)
    except ImportError:  # pragma: no cover - dependency
        pass
    return app


async def serve(settings: Settings, *, ready: Callable[[str], None] | None = None) -> int:
    """Run the daemon until SIGTERM/SIGINT, then drain and exit 0."""
    try:
        ssl_ctx = _tls_context(settings)
    except ConfigError as exc:
        print(f"s3sync: {exc}", flush=True)
        return 2
    notifier = Notifier.from_env()
    app = create_app(settings, notifier=notifier)
    runner = web.AppRunner(
        app,
        handle_signals=False,
        access_log=None,
        shutdown_timeout=5.0,
        # Bounded request line and header fields (aiohttp answers 400 past them, before any
        # handler runs); aiohttp also caps the number of header fields at 128.
        max_line_size=settings.api.max_header_bytes,
        max_field_size=settings.api.max_header_bytes,
    )
    await runner.setup()
    site = web.TCPSite(runner, settings.api.host, settings.api.port, ssl_context=ssl_ctx, reuse_address=True)
    try:
        await site.start()
    except OSError as exc:
        await runner.cleanup()
        print(
            f"s3sync: cannot listen on {settings.api.host}:{settings.api.port}: {exc.strerror} "
            f"(is another process using the port? set api.port)",
            file=sys.stderr,
            flush=True,
        )
        return 2
    scheme = "https" if ssl_ctx else "http"
    server = site._server
    sockets = getattr(server, "sockets", None) or ()
    addrs = [f"{scheme}://{a[0]}:{a[1]}" for a in (sock.getsockname() for sock in sockets)]
    url = addrs[0] if addrs else f"{scheme}://{settings.api.host}:{settings.api.port}"
    log.info("listening", url=url, bucket=settings.s3.bucket, mirror=str(settings.sync.local_dir))
    services = app[K.SERVICES]
    # READY as soon as the API answers; a degraded start says why in STATUS (systemd must not
    # kill-loop a daemon that is waiting for S3 to come back).
    notifier.ready(
        f"mirroring s3://{settings.s3.bucket}"
        if services.engine_ready()
        else f"degraded: {services.startup_error or 'starting'}"
    )
    if ready is not None:
        ready(url)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    loop.add_signal_handler(signal.SIGHUP, logs.reopen)
    watchdog = asyncio.create_task(watchdog_loop(notifier))
    status_task = asyncio.create_task(_status_loop(services, notifier))
    await stop.wait()
    log.info("stopping: draining in-flight transfers", timeout=settings.sync.drain_timeout_seconds)
    notifier.stopping("draining")
    if services.engine_ready():
        # Drain while the API still answers: intake is closed, so notifications get
        # 503 + Retry-After (the sender retries elsewhere or later) instead of a reset.
        drained = await services.engine().drain(settings.sync.drain_timeout_seconds)
        if not drained:
            log.warning("drain timeout reached; the rest stays in the journal for the next start")
    status_task.cancel()
    await runner.cleanup()
    watchdog.cancel()
    await asyncio.gather(watchdog, status_task, return_exceptions=True)
    notifier.close()
    log.info("stopped")
    return 0


def _tls_context(settings: Settings) -> ssl.SSLContext | None:
    """The server TLS context for ``api.tls_cert``/``api.tls_key``, or None for plain HTTP.

    Loaded before anything binds, so a bad path or a key that does not match the
    certificate is a config error (exit 2) naming the keys, not a traceback.
    TLS 1.2 is the floor; the cipher choice is OpenSSL's secure default.
    """
    api = settings.api
    if api.tls_cert is None or api.tls_key is None:
        return None
    ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    ctx.minimum_version = ssl.TLSVersion.TLSv1_2
    try:
        ctx.load_cert_chain(str(api.tls_cert), str(api.tls_key))
    except (OSError, ssl.SSLError) as exc:
        raise ConfigError(
            f"api.tls_cert/api.tls_key: cannot load {api.tls_cert} with {api.tls_key}: "
            f"{getattr(exc, 'strerror', None) or exc}"
        ) from None
    return ctx


async def _status_loop(services: Services, notifier: Notifier) -> None:
    while True:
        await asyncio.sleep(10)
        if services.engine_ready():
            services.refresh_gauges()
            st = services.stats
            notifier.status(
                f"queue={st.queue_depth} in_flight={st.in_flight} synced={sum(st.synced.values())}"
            )
