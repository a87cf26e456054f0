"""``s3sync serve``: the process around the app — TLS, the listening socket, signals, systemd, drain.

The application itself (the supervisor and the routes serving it) is built by
:func:`s3sync.daemon.app.create_app`; this module only runs it: SIGTERM/SIGINT
drain and exit 0, SIGHUP reopens the log file, READY/STATUS/WATCHDOG go to
systemd, and a port in use or an unloadable certificate is exit 2.
"""

from __future__ import annotations

import asyncio
import signal
import ssl
import sys
from collections.abc import Callable

import structlog

from s3sync import logs
from s3sync.api import keys as K
from s3sync.api.handles import Handles
from s3sync.api.limits import KEEPALIVE_SECONDS, ClientLimits
from s3sync.api.protocol import JsonErrorRunner
from s3sync.config import Settings
from s3sync.daemon.app import create_app
from s3sync.daemon.systemd import Notifier, watchdog_loop
from s3sync.errors import ConfigError, FatalError

log = structlog.get_logger(__name__)


async def serve(settings: Settings, *, ready: Callable[[str], None] | None = None) -> int:
    """Run the daemon until SIGTERM/SIGINT, then drain and exit 0."""
    try:
        ssl_ctx = _tls_context(settings)
    except ConfigError as exc:
        print(f"s3sync: {exc}", flush=True)
        return 2
    try:
        await _check_bucket(settings)  # missing bucket, wrong region: exit 2; unreachable: go on
    except FatalError as exc:
        print(f"s3sync: {exc}", file=sys.stderr, flush=True)
        return 2
    notifier = Notifier.from_env()
    app = create_app(settings, notifier=notifier)
    limits = ClientLimits(settings.api)
    app.middlewares.insert(0, limits.middleware)  # outermost: it sees each head as it completes
    runner = JsonErrorRunner(  # protocol errors answered in JSON, logged as one line
        app,
        handle_signals=False,
        access_log=None,
        shutdown_timeout=5.0,
        # Bounded request line and header fields (aiohttp answers 400 past them, before any
        # handler runs); aiohttp also caps the number of header fields at 128.
        max_line_size=settings.api.max_header_bytes,
        max_field_size=settings.api.max_header_bytes,
        keepalive_timeout=KEEPALIVE_SECONDS,
    )
    await runner.setup()
    assert runner.server is not None
    try:
        # not web.TCPSite: every connection goes through ClientLimits (cap, head and body timeouts)
        server = await asyncio.get_running_loop().create_server(
            limits.protocol_factory(runner.server),
            settings.api.host,
            settings.api.port,
            ssl=ssl_ctx,
            reuse_address=True,
            ssl_handshake_timeout=settings.api.header_timeout_seconds if ssl_ctx else None,
        )
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
    sockets = server.sockets or ()
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
    server.close()  # no new connections; runner.cleanup() then closes the open ones
    await runner.cleanup()
    watchdog.cancel()
    await asyncio.gather(watchdog, status_task, return_exceptions=True)
    notifier.close()
    log.info("stopped")
    return 0


async def _check_bucket(settings: Settings) -> None:
    """The start-up check (:func:`s3sync.s3.preflight.preflight`), bounded: S3 down is not exit 2."""
    from s3sync.s3.bucket import Bucket
    from s3sync.s3.preflight import preflight

    wait = settings.s3.connect_timeout_seconds + 5
    async with Bucket(settings.s3, fast_get=settings.s3.fast_get, timeout=wait) as bucket:
        await preflight(bucket, wait=wait)


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


async def _status_loop(services: Handles, notifier: Notifier) -> None:
    while True:
        await asyncio.sleep(10)
        if services.engine_ready():
            services.refresh_gauges()
            st = services.stats
            notifier.status(
                f"queue={st.queue_depth} in_flight={st.in_flight} synced={sum(st.synced.values())}"
            )
