"""Handlers for "Freshness you can see and wait for" (INTERFACE, version 3).

``GET /api/v1/freshness`` reads the watermarks the pool and the sources keep
(:mod:`s3sync.watermarks`); ``GET /api/v1/wait`` parks the request on the
engine's per-key waiters (:mod:`s3sync.sync.waiters`). Kept apart from
:mod:`s3sync.api.handlers` so each stays one screenful of concerns.
"""

from __future__ import annotations

from aiohttp import web

from s3sync.api import keys as K


async def freshness(request: web.Request) -> web.Response:
    return web.json_response(request.app[K.STATS].freshness.snapshot())
