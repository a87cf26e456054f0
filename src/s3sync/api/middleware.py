"""Middlewares, outermost first: request context (request id in every log line), errors, auth, query.

The error middleware is the one place where an exception becomes a response:
:class:`~s3sync.api.errors.ApiError` as itself, aiohttp's HTTP errors as JSON,
:class:`~s3sync.errors.S3SyncError` as 502, anything else as a 500 with no trace.
"""

from __future__ import annotations

import asyncio
import time
import urllib.parse
import uuid
from collections.abc import Awaitable, Callable
from typing import Any

import structlog
from aiohttp import web
from aiohttp.http_exceptions import ContentEncodingError, HttpProcessingError
from aiohttp.web_protocol import RequestPayloadError

from s3sync.api import keys as K
from s3sync.api.auth import bearer_ok, hmac_problem
from s3sync.api.errors import ApiError, error_body
from s3sync.api.protocol import describe, note_body_error_logged
from s3sync.api.statuspage import wants_html
from s3sync.errors import S3SyncError

log = structlog.get_logger(__name__)

PUBLIC_PATHS = frozenset({"/ping", "/api/v1/health"})
# the /docs page and its two assets open without a token, so a browser can show them; every API
# call the page makes still needs the token (Swagger UI's "Authorize")
DOCS_PATHS = frozenset(
    {"/docs", "/docs/", "/docs/static/swagger-ui-bundle.js", "/docs/static/swagger-ui.css"}
)
NOTIFICATION_PATH = "/api/v1/s3-notification"


def _client(request: web.Request) -> str:
    return request.remote or "unknown"


@web.middleware
async def error_middleware(
    request: web.Request, handler: Callable[[web.Request], Awaitable[web.StreamResponse]]
) -> web.StreamResponse:
    try:
        return await handler(request)
    except ApiError as exc:
        return web.json_response(error_body(exc.code, exc.message), status=exc.status, headers=exc.headers)
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
        return web.json_response(error_body(code, msg), status=exc.status, headers=headers)
    except (RequestPayloadError, ContentEncodingError) as exc:
        # a body that does not decode as its Content-Encoding says (or is cut short): the
        # client's fault, answered like every other 4xx (issue 11), logged as one line
        cause = exc.__cause__ if isinstance(exc.__cause__, HttpProcessingError) else exc
        encoding = request.headers.get("Content-Encoding", "")[:40]
        if isinstance(cause, ContentEncodingError) or "content-encoding" in str(exc).lower():
            msg = f"request body does not decode as its Content-Encoding says ({encoding})"
        else:
            msg = f"request body could not be read: {describe(cause)}"
        log.warning("bad request body from a client", path=request.path, client=_client(request), reason=msg)
        note_body_error_logged(request)
        return web.json_response(error_body("invalid_body", msg), status=400)
    except ConnectionResetError:
        # the client went away mid-body: nobody to answer, nothing wrong on our side
        log.warning(
            "client disconnected before sending the whole body", path=request.path, client=_client(request)
        )
        return web.json_response(error_body("invalid_body", "connection lost mid-body"), status=400)
    except S3SyncError as exc:
        log.warning("request failed", path=request.path, error=str(exc))
        return web.json_response(error_body(exc.code, str(exc)), status=502)
    except asyncio.CancelledError:
        raise
    except Exception as exc:
        log.exception("unhandled error", path=request.path)
        return web.json_response(error_body("internal", f"internal error ({type(exc).__name__})"), status=500)


# what aiohttp decodes (br and zstd through the Brotli and backports.zstd dependencies)
CONTENT_ENCODINGS = frozenset({"", "identity", "gzip", "x-gzip", "deflate", "br", "zstd"})


def _refuse_body_early(request: web.Request) -> None:
    """Refuse from the head what reading the body could only refuse later.

    A declared ``Content-Length`` over ``api.max_body_bytes`` is a 413 before a byte of the body
    is read (aiohttp would read up to the limit first); a ``Content-Encoding`` aiohttp does not
    decode is a 415 (it used to pass the encoded bytes on as if they were JSON).
    """
    limit = request.app[K.SETTINGS].api.max_body_bytes
    problem: ApiError | None = None
    if request.content_length is not None and request.content_length > limit:
        problem = ApiError(413, "payload_too_large", f"request body exceeds the limit of {limit} bytes")
    elif request.body_exists or request.content_length:
        encoding = request.headers.get("Content-Encoding", "").strip().lower()
        if encoding not in CONTENT_ENCODINGS:
            problem = ApiError(
                415,
                "unsupported_encoding",
                f"Content-Encoding {encoding[:40]!r} is not supported (identity, gzip, deflate, br or zstd)",
            )
    if problem is not None:
        log.warning(
            "bad request body from a client",
            path=request.path,
            client=_client(request),
            reason=problem.message,
        )
        raise problem


@web.middleware
async def auth_middleware(
    request: web.Request, handler: Callable[[web.Request], Awaitable[web.StreamResponse]]
) -> web.StreamResponse:
    """Who may call what (docs/security.md has the full matrix).

    - ``/ping`` and ``/api/v1/health`` are always open (load balancers, systemd), and so are the
      pages for browsers: ``/`` asked for as HTML and ``/docs`` with its assets (``DOCS_PATHS``);
      the API calls they make need the token.
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
    # the status page's HTML holds no data (what it shows, it fetches with the token typed into it)
    page = (path == "/" and wants_html(request)) or path in DOCS_PATHS
    if path in PUBLIC_PATHS or page or (token is None and (secret is None or not is_notification)):
        return await handler(request)
    limiter = request.app[K.LIMITER]
    client = _client(request)
    wait = limiter.blocked_for(client)
    if wait:
        raise ApiError(
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
        raise ApiError(401, "unauthorized", problem, headers={"WWW-Authenticate": 'Bearer realm="s3sync"'})
    limiter.success(client)
    return await handler(request)


@web.middleware
async def context_middleware(
    request: web.Request, handler: Callable[[web.Request], Awaitable[web.StreamResponse]]
) -> web.StreamResponse:
    rid = request.headers.get("X-Request-Id", "")[:64] or uuid.uuid4().hex[:16]
    structlog.contextvars.bind_contextvars(request_id=rid)  # a streamed response reads it there too
    started = time.monotonic()
    try:
        resp = await handler(request)
        if not resp.prepared:
            resp.headers["X-Request-Id"] = rid
        return resp
    finally:
        log.debug(
            "request", method=request.method, path=request.path, duration=round(time.monotonic() - started, 4)
        )
        structlog.contextvars.unbind_contextvars("request_id")


def _query_names(spec: dict[str, Any], path: str, method: str) -> list[str] | None:
    """The query parameters the OpenAPI document declares for this route, or None if it has none."""
    item = spec.get("paths", {}).get(path)
    if item is None:
        return None
    op = item.get("get" if method == "head" else method)
    if op is None:
        return None
    return [p["name"] for p in op.get("parameters", []) if p.get("in") == "query"]


@web.middleware
async def query_middleware(
    request: web.Request, handler: Callable[[web.Request], Awaitable[web.StreamResponse]]
) -> web.StreamResponse:
    """Refuse what a handler would silently ignore: unknown query parameters and undecodable ones
    (and, first, a body the head already says is too big or in an unknown encoding).

    ``POST /api/v1/sync?dryrun=true`` (a typo) used to run a real sync; the accepted names come
    from the OpenAPI document, so the server and its description cannot drift apart. A value
    that is not UTF-8 (``prefix=%FF``) is refused instead of being read as U+FFFD. Routes the
    document does not describe (``/docs``) are not checked.
    """
    _refuse_body_early(request)  # here, after auth: a client without credentials learns nothing more
    raw = request.rel_url.raw_query_string
    if not raw:
        return await handler(request)
    try:
        pairs = urllib.parse.parse_qsl(raw, keep_blank_values=True, errors="strict")
    except UnicodeDecodeError:
        raise ApiError(400, "invalid_parameter", "query string: not valid UTF-8 after %-decoding") from None
    resource = request.match_info.route.resource
    path = resource.canonical if resource is not None else request.path
    accepted = _query_names(request.app[K.OPENAPI], path, request.method.lower())
    if accepted is None:
        return await handler(request)
    for name, _ in pairs:
        if name not in accepted:
            allowed = ", ".join(accepted) if accepted else "none"
            raise ApiError(
                400,
                "unknown_parameter",
                f"{name}: unknown query parameter for {request.method} {path} (accepted: {allowed})",
            )
    return await handler(request)
