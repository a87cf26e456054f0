"""Handlers for "Freshness you can see and wait for" (docs/freshness.md).

``GET /api/v1/freshness`` reads the watermarks the pool and the sources keep
(:mod:`s3sync.watermarks`); ``GET /api/v1/wait`` parks the request on the
engine's per-key waiters (:mod:`s3sync.sync.waiters`), which the apply step
wakes. Kept apart from :mod:`s3sync.api.handlers` so each stays one concern.

aiohttp does not cancel a handler when its client goes away (the daemon does
not turn ``handler_cancellation`` on for every endpoint), so a waiter of a
vanished client would linger until its timeout. :class:`Departures` notices
those with one sweep every few seconds over the open waits, and only while
there are any: the waiter is cancelled and leaves nothing behind.
"""

from __future__ import annotations

import asyncio
import math
from typing import Any

from aiohttp import web

from s3sync.api import keys as K
from s3sync.api.errors import ApiError
from s3sync.errors import UnsafeKeyError
from s3sync.model import normalize_etag
from s3sync.sync.engine import Engine
from s3sync.sync.waiters import Held, WaitTimeout, Want

DEFAULT_TIMEOUT = 30.0
MAX_TIMEOUT = 300.0
SWEEP_SECONDS = 2.0


class Departures:
    """Cancels the waits whose client disconnected (see the module docstring)."""

    def __init__(self, every: float = SWEEP_SECONDS) -> None:
        self.every = every
        self._open: dict[asyncio.Task[Any], web.Request] = {}
        self._sweeper: asyncio.Task[None] | None = None

    def add(self, request: web.Request) -> asyncio.Task[Any] | None:
        task = asyncio.current_task()
        if task is not None:
            self._open[task] = request
            if self._sweeper is None or self._sweeper.done():
                self._sweeper = asyncio.get_running_loop().create_task(self._sweep())
        return task

    def discard(self, task: asyncio.Task[Any] | None) -> None:
        if task is not None:
            self._open.pop(task, None)

    async def close(self, _app: web.Application | None = None) -> None:
        """Stop the sweep (app cleanup): the open waits themselves end with their handlers."""
        if self._sweeper is not None:
            self._sweeper.cancel()
            await asyncio.gather(self._sweeper, return_exceptions=True)
            self._sweeper = None

    async def _sweep(self) -> None:
        while self._open:
            await asyncio.sleep(self.every)
            for task, request in list(self._open.items()):
                transport = request.transport
                if transport is None or transport.is_closing():
                    self._open.pop(task, None)
                    task.cancel()


DEPARTURES = web.AppKey("wait_departures", Departures)


async def freshness(request: web.Request) -> web.Response:
    return web.json_response(request.app[K.STATS].freshness.snapshot())


def _timeout(raw: str | None) -> float:
    if raw is None or raw == "":
        return DEFAULT_TIMEOUT
    try:
        value = float(raw)
    except ValueError:
        raise ApiError(400, "invalid_parameter", f"timeout: expected seconds, got {raw!r}") from None
    if not math.isfinite(value) or value < 0 or value > MAX_TIMEOUT:
        raise ApiError(400, "invalid_parameter", f"timeout: must be between 0 and {MAX_TIMEOUT:g} seconds")
    return value


def _want(request: web.Request) -> Want | None:
    """The target named in the query; None when the caller named none (ask S3)."""
    q = request.query
    etag, version = q.get("etag"), q.get("version_id")
    raw_absent = q.get("absent", "")
    if raw_absent.lower() not in ("", "1", "true", "yes", "on", "0", "false", "no", "off"):
        raise ApiError(400, "invalid_parameter", f"absent: expected true or false, got {raw_absent!r}")
    absent = raw_absent.lower() in ("1", "true", "yes", "on")
    named = [n for n, v in (("etag", etag), ("version_id", version), ("absent", absent)) if v]
    if len(named) > 1:
        raise ApiError(400, "invalid_parameter", f"at most one of etag, version_id, absent (got {named})")
    if etag is not None and not normalize_etag(etag):
        raise ApiError(400, "invalid_parameter", "etag: empty")
    if version is not None and not version.strip():
        raise ApiError(400, "invalid_parameter", "version_id: empty")
    if not named:
        return None
    return Want(etag=etag, version_id=version, absent=absent)


def not_mirrored(engine: Engine, key: str) -> str | None:
    """Why the mirror will never hold ``key`` (prefix, filters, shard), or None."""
    sel = engine.applier.filter
    if not key.startswith(engine.prefix):
        return f"outside s3.prefix {engine.prefix!r}"
    if not sel.shard.owns(key):
        return f"another shard owns it (sync.shard {sel.shard.spec!r})"
    if not sel.objects.wants_key(key):
        return "not listed in sync.files_from"
    if not sel.wants(key):
        return "excluded by sync.include / sync.exclude"
    return None


def _body(engine: Engine, held: Held) -> dict[str, Any]:
    return {
        "key": held.key,
        "status": "present" if held.present else "absent",
        "etag": held.etag,
        "size": held.size,
        "path": "/".join(engine.mirror.mapper.parts(held.key)),
    }


async def wait(request: web.Request) -> web.Response:
    """``GET /api/v1/wait``: 200 once the mirror matches, 504 with its state when the timeout passes."""
    key = request.query.get("key", "")
    if not key:
        raise ApiError(400, "invalid_parameter", "key: required")
    want = _want(request)
    timeout = _timeout(request.query.get("timeout"))
    engine = request.app[K.SERVICES].engine()
    try:
        engine.mirror.mapper.check(key)
    except UnsafeKeyError as exc:
        raise ApiError(400, "unsafe_key", f"the mirror can never hold this key: {exc}") from None
    if (why := not_mirrored(engine, key)) is not None:
        raise ApiError(400, "not_mirrored", f"the mirror does not hold this key: {why}")
    if want is None:  # neither: whatever S3 has now
        meta = await engine.bucket.head(key)
        if meta is None:
            want = Want(absent=True)
        else:
            classes = {c.upper() for c in engine.sync.exclude_storage_classes}
            if (meta.storage_class or "STANDARD").upper() in classes:
                raise ApiError(400, "not_mirrored", f"storage class {meta.storage_class} is excluded")
            if engine.applier.filter.too_large(meta.size):
                raise ApiError(400, "not_mirrored", "larger than sync.max_file_size_mb")
            if (why := engine.applier.filter.rejects(meta)) is not None:
                raise ApiError(400, "not_mirrored", f"filtered out: {why}")
            want = Want(etag=meta.etag)
    departures = request.app[DEPARTURES]
    task = departures.add(request)
    try:
        held = await engine.waiters.wait(key, want, timeout)
    except WaitTimeout as exc:
        body = _body(engine, exc.held) | {
            "error": "wait_timeout",
            "message": f"the mirror did not reach the wanted state of {key!r} within {timeout:g} s",
        }
        return web.json_response(body, status=504)
    finally:
        departures.discard(task)
    return web.json_response(_body(engine, held))
