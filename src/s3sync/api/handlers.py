"""Thin request handlers: validate input, call a service, shape the response."""

from __future__ import annotations

import asyncio
import base64
import datetime as dt
import os
import re
import time
from typing import Any

import structlog
from aiohttp import web
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

from s3sync import __version__
from s3sync.api import keys as K
from s3sync.api import schemas as s
from s3sync.api.download import serve_fd
from s3sync.api.errors import ApiError
from s3sync.api.openapi import SWAGGER_UI_DIR, docs_html
from s3sync.errors import S3SyncError, UnsafeKeyError
from s3sync.local.keys import check_key
from s3sync.model import ChangeSource
from s3sync.sources.events import EventParseError, parse_body

log = structlog.get_logger(__name__)


def _json(model: Any, status: int = 200) -> web.Response:
    data = model.model_dump(mode="json") if hasattr(model, "model_dump") else model
    return web.json_response(data, status=status)


def _iso(ts: float | None) -> str | None:
    return None if ts is None else dt.datetime.fromtimestamp(ts, dt.UTC).isoformat()


_TRUE, _FALSE = ("true", "1", "yes", "on"), ("false", "0", "no", "off")
BOOL_VALUES = (*_TRUE, *_FALSE)  # the OpenAPI enum (api/openapi.py) lists exactly these


def _bool(request: web.Request, name: str, default: bool | None) -> bool | None:
    """A boolean query parameter: absent is ``default``; anything outside ``BOOL_VALUES`` is a 400.

    An empty value (``delete=``) is refused too: it used to mean "the default", which is not
    what someone who typed ``delete=`` expected either way.
    """
    raw = request.query.get(name)
    if raw is None:
        return default
    if raw in _TRUE:
        return True
    if raw in _FALSE:
        return False
    raise ApiError(400, "invalid_parameter", f"{name}: expected one of {', '.join(BOOL_VALUES)}; got {raw!r}")


# -- service info ----------------------------------------------------------
async def index(request: web.Request) -> web.Response:
    stats = request.app[K.STATS]
    return _json(
        s.ServiceInfo(
            service="s3sync", version=__version__, uptime_seconds=round(time.time() - stats.started_at, 3)
        )
    )


async def ping(request: web.Request) -> web.Response:
    return _json(s.Ping())


async def health(request: web.Request) -> web.Response:
    services = request.app[K.SERVICES]
    report = await services.health()
    return _json(report, status=200 if report.status == "healthy" else 503)


async def config(request: web.Request) -> web.Response:
    return web.json_response(request.app[K.SETTINGS].public_dict())


async def stats(request: web.Request) -> web.Response:
    services = request.app[K.SERVICES]
    services.refresh_gauges()
    return web.json_response(request.app[K.STATS].snapshot())


async def metrics(request: web.Request) -> web.Response:
    request.app[K.SERVICES].refresh_gauges()
    body = generate_latest(request.app[K.REGISTRY])
    resp = web.Response(body=body)
    resp.content_type = CONTENT_TYPE_LATEST.split(";")[0]
    resp.charset = "utf-8"
    return resp


# -- sync ------------------------------------------------------------------
async def sync(request: web.Request) -> web.Response:
    services = request.app[K.SERVICES]
    prefix = request.query.get("prefix", "")
    if prefix:
        try:
            check_key(prefix.rstrip("/") or "x")
        except UnsafeKeyError as exc:
            raise ApiError(400, "invalid_parameter", f"prefix: {exc}") from None
    # each parameter parsed once (the query middleware checks only the names), in this order
    delete = _bool(request, "delete", None)
    dry_run = bool(_bool(request, "dry_run", False))
    if _bool(request, "background", False):
        job = services.jobs.create({"prefix": prefix, "delete": delete, "dry_run": dry_run})
        services.spawn(services.run_job(job))
        return _json(s.JobAccepted(job_id=job.job_id), status=202)
    report = await services.engine().reconcile(
        prefix=prefix, delete=delete, dry_run=dry_run, source=ChangeSource.MANUAL
    )
    return web.json_response(report.legacy())


async def sync_job(request: web.Request) -> web.Response:
    job = request.app[K.SERVICES].jobs.get(request.match_info["job_id"])
    if job is None:
        raise ApiError(404, "not_found", "no such sync job (jobs are kept in memory, the last 100)")
    return _json(job)


# -- notifications -----------------------------------------------------------
async def notification(request: web.Request) -> web.Response:
    services = request.app[K.SERVICES]
    st = request.app[K.STATS]
    if not services.engine_ready() or not services.engine().accepting:
        raise ApiError(
            503,
            "unavailable",
            "not accepting events right now (starting or stopping)",
            headers={"Retry-After": "5"},
        )
    settings = request.app[K.SETTINGS]
    if st.journal_pending >= settings.sync.journal_high_water:
        st.events["notification", "rejected"] += 1
        raise ApiError(
            429, "backpressure", "too many changes pending; retry later", headers={"Retry-After": "5"}
        )
    body = await request.read()
    received = time.time()
    try:
        parsed = parse_body(body, ChangeSource.NOTIFICATION, received, bucket=settings.s3.bucket)
    except EventParseError as exc:
        st.events["notification", "rejected"] += 1
        log.warning("notification refused", client=request.remote, reason=str(exc)[:200])
        raise ApiError(400, "invalid_event", str(exc)) from None
    accepted = await services.engine().intake(parsed.changes)
    ignored = parsed.ignored + len(parsed.changes) - accepted  # the rest: another shard's keys
    st.events["notification", "accepted"] += accepted
    st.events["notification", "ignored"] += ignored
    st.test_events += parsed.test_events
    if parsed.subscribe_url:
        services.spawn(services.confirm_subscription(parsed.subscribe_url))
    if parsed.untrusted_subscribe_url:
        log.warning("refused SNS SubscribeURL on an untrusted host")
    return _json(s.NotificationAccepted(accepted=accepted, ignored=ignored), status=202)


# -- files -----------------------------------------------------------------
_CURSOR = re.compile(s.CURSOR_PATTERN)  # what _cursor_encode makes; the OpenAPI document says the same


def _cursor_decode(raw: str | None) -> str | None:
    """The key a page starts after. Anything outside the pattern (a typo, ``%%%``) is a 400,
    never silently the first page; anything inside it is a position (bytes that are not UTF-8
    decode with U+FFFD: only a hand-made cursor gets there, and it still means "after this")."""
    if not raw:
        return None
    if not _CURSOR.fullmatch(raw):
        raise ApiError(400, "invalid_parameter", "cursor: not a cursor returned by this API")
    return base64.urlsafe_b64decode(raw + "=" * (-len(raw) % 4)).decode("utf-8", "replace")


def _cursor_encode(key: str) -> str:
    return base64.urlsafe_b64encode(key.encode("utf-8")).decode().rstrip("=")


async def files(request: web.Request) -> web.Response:
    services = request.app[K.SERVICES]
    source = request.query.get("source", "local")
    if source not in ("local", "s3"):
        raise ApiError(400, "invalid_parameter", f"source: expected 'local' or 's3', got {source!r}")
    prefix = request.query.get("prefix", "")
    raw_limit = request.query.get("limit", "100")
    try:
        limit = int(raw_limit)
    except ValueError:
        raise ApiError(400, "invalid_parameter", f"limit: expected an integer, got {raw_limit!r}") from None
    if not 1 <= limit <= 1000:
        raise ApiError(400, "invalid_parameter", "limit: must be between 1 and 1000")
    after = _cursor_decode(request.query.get("cursor"))
    entries: list[s.FileEntry] = []
    more = False
    if source == "s3":
        scope = services.settings.s3.prefix + prefix
        metas, more = await services.engine().bucket.list_page(scope, after, limit)
        entries = [
            s.FileEntry(key=m.key, size=m.size, etag=m.etag, last_modified=_iso(m.last_modified))
            for m in metas
        ]
    else:
        mirror = services.mirror

        def page() -> tuple[list[s.FileEntry], bool]:
            out: list[s.FileEntry] = []
            for key, st in mirror.walk_sorted(prefix, after):
                if len(out) == limit:
                    return out, True
                out.append(s.FileEntry(key=key, size=st.st_size, last_modified=_iso(st.st_mtime)))
            return out, False

        entries, more = await asyncio.to_thread(page)
        if services.engine_ready():  # the ETag the state recorded, while the file is what it wrote
            state = services.engine().state
            for i, e in enumerate(entries):
                row = await state.get(e.key)
                if row is not None and row.etag and row.size == e.size:
                    entries[i] = e.model_copy(update={"etag": row.etag})
    nxt = _cursor_encode(entries[-1].key) if more and entries else None
    return _json(
        s.FileList(
            source="s3" if source == "s3" else "local",
            prefix=prefix,
            count=len(entries),
            files=entries,
            next_cursor=nxt,
        )
    )


async def download(request: web.Request) -> web.StreamResponse:
    services = request.app[K.SERVICES]
    key = request.match_info["key"]
    try:
        services.mirror.mapper.parts(key)
    except UnsafeKeyError as exc:
        raise ApiError(400, "unsafe_key", f"{exc}") from None
    try:
        # opened at directory fds without following any link (a symlinked directory or
        # file in the mirror is "not found"), then served from that very open file
        fd = await asyncio.to_thread(services.mirror.open_read, key)
    except (OSError, UnsafeKeyError):
        raise ApiError(404, "not_found", "no such file in the mirror") from None
    try:
        return await serve_fd(request, fd)
    finally:
        os.close(fd)


# -- docs --------------------------------------------------------------------
async def openapi(request: web.Request) -> web.Response:
    return web.json_response(request.app[K.OPENAPI])


async def docs(request: web.Request) -> web.Response:
    return web.Response(text=docs_html(request.app[K.OPENAPI]), content_type="text/html")


DOCS_ASSETS = frozenset({"swagger-ui-bundle.js", "swagger-ui.css"})


async def docs_asset(request: web.Request) -> web.StreamResponse:
    """A vendored Swagger UI asset (s3sync/api/swagger_ui: /docs needs no network)."""
    name = request.match_info["name"]
    if name not in DOCS_ASSETS:
        raise ApiError(404, "not_found", f"no such documentation asset: {name!r}")
    return web.FileResponse(SWAGGER_UI_DIR / name)


__all__ = ["ApiError", "S3SyncError"]
