"""S3's answers mapped onto the error tree, once, at the S3 boundary.

The status and error-code tables, the one wording of "wrong region", what a
HeadBucket answer means for a set-up, and :func:`classify` for anything raised
while talking to S3 (botocore's ``ClientError`` and transport errors, the lean
path's own, timeouts; an ``OSError`` is :mod:`s3sync.local.errors`' to name).
:func:`map_errors` wraps every call of both GET paths, and :class:`MappedBody`
the reads of a GET's body (they happen after the call returned), so what leaves
``s3/`` is an :class:`~s3sync.errors.S3SyncError` and the core catches typed
errors without classifying anything itself.
"""

from __future__ import annotations

import asyncio
import re
from collections.abc import AsyncIterator, Iterator
from contextlib import contextmanager

from s3sync.errors import (
    ArchivedError,
    ChangedDuringTransferError,
    FatalError,
    IntegrityError,
    NotFoundError,
    PermanentError,
    RetryableError,
    S3SyncError,
)
from s3sync.local.errors import classify_os_error
from s3sync.s3.result import Body

_RETRYABLE_CODES = frozenset(
    {
        "InternalError",
        "ServiceUnavailable",
        "SlowDown",
        "Throttling",
        "ThrottlingException",
        "RequestTimeout",
        "RequestTimeTooSkewed",
        "TooManyRequests",
        "503",
        "500",
        "502",
        "504",
    }
)
_FATAL_CODES = frozenset(
    {
        "InvalidAccessKeyId",
        "SignatureDoesNotMatch",
        "NoSuchBucket",
        "AccessDenied",
        "ExpiredToken",
        "InvalidToken",
        "AuthorizationHeaderMalformed",
        "PermanentRedirect",
    }
)


_WRONG_REGION = re.compile(r"region '([\w-]+)' is wrong; expecting '([\w-]+)'")


def wrong_region(bucket: str, actual: str, configured: str) -> FatalError:
    """The one message for every way S3 says "wrong region" (301, 400, HeadBucket's header)."""
    name = f"bucket {bucket!r}" if bucket else "the bucket"
    return FatalError(f"{name} is in region {actual!r}, not {configured!r} (set s3.region)")


def head_bucket_error(
    bucket: str, configured: str | None, status: int, actual: str | None
) -> FatalError | None:
    """What a HeadBucket answer means for a set-up, the same on both S3 paths; None when it is fine.

    ``actual`` is the ``x-amz-bucket-region`` header. A 200 from another region is still
    an error: the lean path signs with ``s3.region`` and would fail on every object.
    A status this does not decide (5xx, throttling, ...) is None too: classify it.
    """
    if status == 200:
        if actual and configured and configured != "auto" and actual != configured:
            return wrong_region(bucket, actual, configured)
        return None
    if status == 404:
        return FatalError(f"bucket {bucket!r} does not exist")
    if status in (301, 400) and actual and actual != configured:
        return wrong_region(bucket, actual, str(configured))
    if status == 403:
        return FatalError(f"access denied to bucket {bucket!r} (check credentials)")
    if status == 301:
        return FatalError(f"bucket {bucket!r} is in another region than {configured!r}")
    return None


def classify_status(
    status: int, code: str = "", message: str = "", *, bucket: str = "", region: str = ""
) -> S3SyncError:
    """Map an HTTP status (and S3 error code) to our error tree.

    ``bucket`` and ``region`` (S3's ``BucketName``/``Bucket``/``Region`` fields or the
    ``x-amz-bucket-region`` header) turn the two most common set-up mistakes into one
    actionable line instead of S3's generic text.
    """
    text = f"{status} {code} {message}".strip()
    if code == "NoSuchBucket":
        return FatalError(
            f"bucket {bucket!r} does not exist" if bucket else f"bucket does not exist ({text})"
        )
    if code in ("PermanentRedirect", "AuthorizationHeaderMalformed") or status == 301:
        m = _WRONG_REGION.search(message)
        if m:
            return wrong_region(bucket, m[2], m[1])
        if region:
            return FatalError(
                f"{f'bucket {bucket!r}' if bucket else 'the bucket'} is in region {region!r} (set s3.region)"
            )
    if status in (404,) or code in ("NoSuchKey", "NotFound"):
        return NotFoundError(text)
    if code == "InvalidObjectState":
        return ArchivedError(text)
    if status == 412 or code == "PreconditionFailed":
        return ChangedDuringTransferError(text)
    if status >= 500 or status == 429 or code in _RETRYABLE_CODES:
        return RetryableError(text)
    if code in _FATAL_CODES or status in (401, 403):
        return FatalError(text) if code in _FATAL_CODES else PermanentError(text)
    return PermanentError(text)


def classify(exc: BaseException) -> S3SyncError:
    """Classify any exception raised while talking to S3 or the disk."""
    if isinstance(exc, S3SyncError):
        return exc
    # botocore ClientError without importing botocore at module import time.
    response = getattr(exc, "response", None)
    if isinstance(response, dict):
        err = response.get("Error", {}) or {}
        meta = response.get("ResponseMetadata", {}) or {}
        status = int(meta.get("HTTPStatusCode") or 0)
        code = str(err.get("Code", ""))
        if not status and code.isdigit():
            status = int(code)
        headers = meta.get("HTTPHeaders", {}) or {}
        mapped = classify_status(
            status,
            code,
            str(err.get("Message", "")),
            bucket=str(err.get("BucketName") or err.get("Bucket") or ""),
            region=str(err.get("Region") or headers.get("x-amz-bucket-region") or ""),
        )
        mapped.__cause__ = exc
        return mapped
    if isinstance(exc, OSError):
        return classify_os_error(exc)
    if isinstance(exc, asyncio.TimeoutError | TimeoutError | ConnectionError):
        return RetryableError(str(exc) or type(exc).__name__)
    name = type(exc).__name__
    # aiohttp / botocore transport errors: all transient by nature.
    transient = (
        "ClientPayloadError",
        "ServerDisconnectedError",
        "ClientConnectorError",
        "ClientOSError",
        "EndpointConnectionError",
        "ConnectionClosedError",
        "ReadTimeoutError",
        "ConnectTimeoutError",
        "ResponseStreamingError",
        "IncompleteReadError",
        "ContentLengthError",
        "HTTPClientError",
        "ProxyConnectionError",
    )
    if name in transient or any(b.__name__ in transient for b in type(exc).__mro__):
        return RetryableError(f"{name}: {exc}")
    if name == "FlexibleChecksumError":
        # botocore checked an S3 additional checksum (ChecksumMode=ENABLED) and the body did not
        # match: a damaged transfer, retried like our own checksum mismatches.
        return IntegrityError(f"{name}: {exc}")
    if name == "NoCredentialsError" or name == "PartialCredentialsError":
        return FatalError(
            "no AWS credentials found (set AWS_ACCESS_KEY_ID/AWS_SECRET_ACCESS_KEY, "
            "a profile, or an instance role)"
        )
    return PermanentError(f"{name}: {exc}")


@contextmanager
def map_errors() -> Iterator[None]:
    """Re-raise anything as its classified :class:`S3SyncError`."""
    try:
        yield
    except S3SyncError:
        raise
    except asyncio.CancelledError:
        raise
    except Exception as exc:
        raise classify(exc) from exc


class MappedBody:
    """A GET's body whose reads raise classified errors, like the call that returned it.

    The body is read by the transfer after :func:`map_errors` has let go of the
    call, so a reset or a stall mid-body would otherwise leave ``s3/`` as the
    transport's own exception and the core would have to classify it.
    """

    __slots__ = ("_body",)

    def __init__(self, body: Body) -> None:
        self._body = body

    async def read(self) -> bytes:
        with map_errors():
            return await self._body.read()

    async def iter_chunks(self, size: int) -> AsyncIterator[bytes]:
        with map_errors():
            async for chunk in self._body.iter_chunks(size):
                yield chunk

    def close(self) -> None:
        self._body.close()


__all__ = ["MappedBody", "classify", "classify_status", "head_bucket_error", "map_errors", "wrong_region"]
