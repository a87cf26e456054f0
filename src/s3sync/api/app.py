"""The web application: middlewares, typed keys, routes — and nothing else.

:func:`build_app` is given the handles it serves (:class:`~s3sync.api.handles.Handles`:
engine, jobs, stats, health) and puts them behind typed ``web.AppKey``s
(:mod:`s3sync.api.keys`); it starts nothing. The daemon's composition root
(:func:`s3sync.daemon.app.create_app`) builds the supervisor that owns those
resources and installs its cleanup contexts; the middlewares live in
:mod:`s3sync.api.middleware`, and the process around the app (signals, systemd,
TLS) in :mod:`s3sync.daemon.serve`.
"""

from __future__ import annotations

from aiohttp import web

from s3sync.api import freshness as f
from s3sync.api import handlers as h
from s3sync.api import keys as K
from s3sync.api import statuspage
from s3sync.api.auth import FailureLimiter
from s3sync.api.handles import Handles
from s3sync.api.metrics import make_registry
from s3sync.api.middleware import (
    NOTIFICATION_PATH,
    auth_middleware,
    context_middleware,
    error_middleware,
    query_middleware,
)
from s3sync.api.openapi import build_spec
from s3sync.config import Settings
from s3sync.stats import SyncStats


def build_app(settings: Settings, services: Handles, stats: SyncStats) -> web.Application:
    """Build the aiohttp application serving ``services`` (whose owner starts and stops them)."""
    app = web.Application(
        middlewares=[context_middleware, error_middleware, auth_middleware, query_middleware],
        client_max_size=settings.api.max_body_bytes,
    )
    app[K.SETTINGS] = settings
    app[K.STATS] = stats
    app[K.REGISTRY] = make_registry(stats)
    app[K.OPENAPI] = build_spec()
    app[K.LIMITER] = FailureLimiter(settings.api.auth_failures_per_minute)
    app[K.SERVICES] = services
    app[f.DEPARTURES] = departures = f.Departures()
    app.on_cleanup.append(departures.close)

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
