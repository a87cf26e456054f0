"""Serving one mirror file from an open fd, with single ``Range`` support.

Why not ``web.FileResponse``: it opens its path itself, later, following links.
The download endpoint opens the file at directory fds without following any
link (:meth:`~s3sync.local.mirror.Mirror.open_read`) and serves *that* open
file, so a symlink swapped into the mirror between the check and the read can
never leak what it points at. Reads are ``pread``\\s in a worker thread.
"""

from __future__ import annotations

import asyncio
import os
from email.utils import formatdate

import structlog
from aiohttp import web

from s3sync.api.errors import ApiError

CHUNK = 256 * 1024


def _byte_range(request: web.Request, size: int) -> tuple[int, int] | None:
    """(start, stop) of a satisfiable single range; None for the whole file; 416 otherwise."""
    if "Range" not in request.headers:
        return None
    try:
        rng = request.http_range
    except ValueError:
        return None  # a malformed Range header is ignored, as RFC 9110 allows
    start, stop = rng.start, rng.stop
    if start is None and stop is None:
        return None
    if start is not None and start < 0:  # suffix: the last -start bytes
        start, stop = max(0, size + start), size
    start = start or 0
    stop = size if stop is None else min(stop, size)
    if start >= size or start >= stop:
        raise ApiError(
            416,
            "range_not_satisfiable",
            f"range not satisfiable for a {size}-byte file",
            headers={"Content-Range": f"bytes */{size}"},  # RFC 9110 15.5.17: the current length
        )
    return start, stop


async def serve_fd(request: web.Request, fd: int) -> web.StreamResponse:
    """Send the file behind ``fd`` (the caller closes it afterwards)."""
    st = os.fstat(fd)
    size = st.st_size
    span = _byte_range(request, size)
    start, stop = span if span is not None else (0, size)
    resp = web.StreamResponse(status=206 if span is not None else 200)
    resp.headers["Content-Type"] = "application/octet-stream"
    resp.headers["Accept-Ranges"] = "bytes"
    resp.headers["Last-Modified"] = formatdate(st.st_mtime, usegmt=True)
    if span is not None:
        resp.headers["Content-Range"] = f"bytes {start}-{stop - 1}/{size}"
    resp.content_length = stop - start
    if rid := structlog.contextvars.get_contextvars().get("request_id"):
        resp.headers["X-Request-Id"] = rid  # set before prepare: the middleware is too late for a stream
    await resp.prepare(request)
    if request.method != "HEAD":
        off = start
        while off < stop:
            data = await asyncio.to_thread(os.pread, fd, min(CHUNK, stop - off), off)
            if not data:
                break  # truncated behind our back: the client sees a short body
            await resp.write(data)
            off += len(data)
    await resp.write_eof()
    return resp


__all__ = ["serve_fd"]
