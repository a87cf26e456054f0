"""The start-up check both entry points run: HEAD the bucket before anything else.

A set-up mistake (no such bucket, another region, a wrong ``--endpoint-url``)
is then one clear line and exit 2, not N failed objects (``s3sync sync``,
``verify``) or a daemon that retries forever (``serve``; README "exit codes").
One function for both, so the two say the same thing about the same mistake;
they differ only in what an unreachable S3 means (see :func:`preflight`).
"""

from __future__ import annotations

import asyncio

from s3sync.errors import FatalError, RetryableError
from s3sync.s3.bucket import Bucket


def refused(exc: BaseException) -> bool:
    """Whether a connection was refused somewhere down the chain (causes, retries' last)."""
    seen: set[int] = set()
    todo: list[BaseException | None] = [exc]
    while todo:
        e = todo.pop()
        if e is None or id(e) in seen:
            continue
        seen.add(id(e))
        if isinstance(e, ConnectionRefusedError):
            return True
        todo += [e.__cause__, e.__context__, getattr(e, "last", None)]
    return False


def looks_like_s3(endpoint: str, bucket: str) -> bool:
    """Whether ``endpoint`` answers a HEAD of the bucket like S3 (AWS, MinIO, Ceph, moto all
    send ``x-amz*`` headers, on a 404 too). Anything that cannot tell (a network error) counts
    as yes: only a clear "this is something else" changes the message."""
    import urllib.error
    import urllib.request
    from urllib.parse import quote

    req = urllib.request.Request(f"{endpoint.rstrip('/')}/{quote(bucket)}", method="HEAD")
    try:
        with urllib.request.urlopen(req, timeout=5) as resp:
            headers = resp.headers
    except urllib.error.HTTPError as exc:
        headers = exc.headers
    except (OSError, ValueError):
        return True
    return any(name.lower().startswith("x-amz") for name in headers)


async def preflight(bucket: Bucket, *, wait: float | None = None) -> None:
    """HEAD the bucket; raise :class:`FatalError` (exit 2) for a set-up mistake only.

    A definite answer from S3 (no such bucket, another region) always stops; a
    "does not exist" from an endpoint that does not answer like S3 says so. What
    an unreachable S3 means depends on the caller:

    - one-shot commands (``wait`` None): a refused connection stops too: no S3
      endpoint refuses connections, so that is a wrong ``--endpoint-url`` or a
      server that is not running. Any other transient answer (5xx, a reset) is
      left to the pass's own retries, which would have hit it anyway;
    - the daemon (``wait``: its bound in seconds): S3 unreachable or slow
      (retryable, refused included, or no answer within ``wait``) is left to it:
      it keeps trying and reports it in /health.
    """
    endpoint = bucket.settings.endpoint_url
    try:
        await (bucket.check() if wait is None else asyncio.wait_for(bucket.check(), wait))
    except FatalError as exc:
        # a wrong --endpoint-url (the s3sync API itself, a web server) 404s every bucket
        if (
            endpoint
            and "does not exist" in str(exc)
            and not await asyncio.to_thread(looks_like_s3, endpoint, bucket.name)
        ):
            raise FatalError(
                f"{exc}, and {endpoint} does not answer like an S3 endpoint (no x-amz-* headers): "
                "is s3.endpoint_url / --endpoint-url the S3 API?"
            ) from None
        raise
    except RetryableError as exc:
        if wait is None and refused(exc):
            where = endpoint or f"S3 in {bucket.settings.region}"
            raise FatalError(
                f"cannot connect to {where}: connection refused (is s3.endpoint_url / "
                "--endpoint-url right, and is the server running?)"
            ) from None
    except TimeoutError:
        if wait is None:
            raise


__all__ = ["looks_like_s3", "preflight", "refused"]
