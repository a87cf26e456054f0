"""The composition root: builds every service, wires them, owns their lifecycle — and nothing else.

Each resource gets one cleanup context, declared in dependency order; aiohttp
unwinds them in reverse, even after a partial start. Handlers reach services
only through typed ``web.AppKey``s (:mod:`s3sync.api.keys`); the services
container lives in :mod:`s3sync.api.services`, the middlewares in
:mod:`s3sync.api.middleware`, and the process around the app (signals,
systemd, TLS) in :mod:`s3sync.daemon`.
"""

from __future__ import annotations

from collections.abc import AsyncIterator

from aiohttp import web

from s3sync.api import freshness as f
from s3sync.api import handlers as h
from s3sync.api import keys as K
from s3sync.api import statuspage
from s3sync.api.auth import FailureLimiter
from s3sync.api.metrics import make_registry
from s3sync.api.middleware import (
    NOTIFICATION_PATH,
    auth_middleware,
    context_middleware,
    error_middleware,
    query_middleware,
)
from s3sync.api.openapi import build_spec
from s3sync.api.services import Services
from s3sync.config import Settings
from s3sync.stats import SyncStats
from s3sync.systemd import Notifier


def create_app(settings: Settings, *, notifier: Notifier | None = None) -> web.Application:
    """Build the aiohttp application; services start with the app and stop with it."""
    app = web.Application(
        middlewares=[context_middleware, error_middleware, auth_middleware, query_middleware],
        client_max_size=settings.api.max_body_bytes,
    )
    stats = SyncStats()
    app[K.SETTINGS] = settings
    app[K.STATS] = stats
    app[K.REGISTRY] = make_registry(stats)
    app[K.OPENAPI] = build_spec()
    app[K.LIMITER] = FailureLimiter(settings.api.auth_failures_per_minute)
    services = Services(settings, stats, notifier)
    app[K.SERVICES] = services
    app[f.DEPARTURES] = departures = f.Departures()
    app.on_cleanup.append(departures.close)

    async def services_ctx(app: web.Application) -> AsyncIterator[None]:
        await services.start()
        yield
        await services.stop()

    app.cleanup_ctx.append(services_ctx)

    r = app.router
    r.add_get("/", statuspage.index)  # a status page for browsers, the JSON service info otherwise
    r.add_get("/ping", h.ping)
    r.add_get("/api/v1/health", h.health)
    r.add_get("/api/v1/config", h.config)
    r.add_get("/api/v1/stats", h.stats)
    r.add_get("/api/v1/freshness", f.freshness)
    r.add_get("/api/v1/wait", f.wait)
    r.add_get("/metrics", h.metrics)
    r.add_post("/api/v1/sync", h.sync)
    r.add_get("/api/v1/sync/{job_id}", h.sync_job)
    r.add_post(NOTIFICATION_PATH, h.notification)
    r.add_get("/api/v1/files", h.files)
    r.add_get("/api/v1/download/{key:.+}", h.download)
    r.add_get("/api/v1/openapi.json", h.openapi)
    r.add_get("/docs", h.docs)
    r.add_get("/docs/", h.docs)
    # one flat directory of Swagger UI assets; a handler (not add_static) so that a missing
    # asset is a JSON 404 like every other 4xx (add_static answers an empty octet-stream 404)
    r.add_get("/docs/static/{name}", h.docs_asset)
    return app
