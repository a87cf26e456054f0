"""The bucket: one shared aioboto3 client for listing/HEAD/checks, and a lean GET path.

Listing is an async iterator over ``ListObjectsV2`` pages (S3 returns keys in
UTF-8 byte order, which the reconcile merge relies on). GETs are the hot path:
botocore's full request pipeline costs ~2 ms of CPU per request (aiohttp's
client ~0.25 ms), so by default GETs, HEAD bucket and ListObjectsV2 pages are
signed with :mod:`s3sync.s3.sigv4` (checked against botocore's signer in the
tests) and sent on a minimal keep-alive HTTP/1.1 pool (:mod:`s3sync.s3.http`)
— ``s3.fast_get = true``. The aioboto3 path
stays available (``fast_get = false``) and both are tested.
"""

from __future__ import annotations

import asyncio
import builtins
import calendar
import datetime as dt
import os
import re
import ssl
import xml.etree.ElementTree as ET
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping
from contextlib import AsyncExitStack
from dataclasses import dataclass
from typing import Any, NamedTuple, Protocol, TypeVar
from urllib.parse import quote, unquote_plus, urlsplit

from s3sync.config import S3Settings
from s3sync.errors import (
    FatalError,
    NotFoundError,
    RetryableError,
    S3SyncError,
    classify,
    classify_status,
    wrong_region,
)
from s3sync.s3.http import HttpPool
from s3sync.model import ObjectMeta, normalize_etag
from s3sync.s3.sigv4 import SigV4Signer

_XML_ILLEGAL = re.compile(rb"[\x00-\x08\x0b\x0c\x0e-\x1f]")


class Body(Protocol):
    """What a transfer needs from a GET response body."""

    def iter_chunks(self, size: int) -> AsyncIterator[bytes]: ...

    async def read(self) -> bytes: ...

    def close(self) -> None: ...


@dataclass(slots=True)
class GetResult:
    """A GET in progress: status 200/206 with a body, or 304 (not modified)."""

    status: int
    headers: Mapping[str, str]  # lower-case names
    body: Body | None
    meta: ObjectMeta | None

    def close(self) -> None:
        if self.body is not None:
            self.body.close()


def _ts(value: Any) -> float:
    """LastModified as unix seconds, from a datetime, ISO 8601 (listings) or RFC 1123 (headers)."""
    if isinstance(value, dt.datetime):
        return value.timestamp()
    if isinstance(value, (int, float)):
        return float(value)
    if isinstance(value, str) and value:
        try:
            if value[:1].isdigit():
                parsed = dt.datetime.fromisoformat(value.replace("Z", "+00:00"))
            else:
                return _rfc1123(value)
        except ValueError:
            return 0.0
        if parsed.tzinfo is None:
            parsed = parsed.replace(tzinfo=dt.UTC)
        return parsed.timestamp()
    return 0.0


class _BotoBody:
    def __init__(self, stream: Any) -> None:
        self._stream = stream

    async def iter_chunks(self, size: int) -> AsyncIterator[bytes]:
        while True:
            chunk = await self._stream.read(size)
            if not chunk:
                return
            yield chunk

    async def read(self) -> bytes:
        data: bytes = await self._stream.read()
        return data

    def close(self) -> None:
        self._stream.close()


class _StaticCredentials(NamedTuple):
    """Same fields as botocore's ReadOnlyCredentials, without importing botocore (~50 ms)."""

    access_key: str
    secret_key: str
    token: str | None


class Bucket:
    """Everything s3sync asks of S3, for one bucket."""

    def __init__(self, settings: S3Settings, *, fast_get: bool = True, timeout: float = 300.0) -> None:
        self.settings = settings
        self.name = settings.bucket
        self.fast_get = fast_get
        self._timeout = timeout
        self._stack = AsyncExitStack()
        self._client: Any = None
        self._session: Any = None
        self._pool: HttpPool | None = None
        self._endpoint: str = ""
        self._host_header = ""
        self._path_style = True
        self._region = settings.region
        self._signer: SigV4Signer | None = None
        self._client_lock = asyncio.Lock()
        self._static_creds: Any = None
        self._creds_provider: Any = None

    async def __aenter__(self) -> Bucket:
        if self.fast_get:
            self._setup_fast_path()
        else:
            await self._boto()
        return self

    async def _boto(self) -> Any:
        """The aioboto3 client, created on first use.

        Importing and building it costs ~0.3 s, which a one-shot ``sync`` on the
        fast path never needs (listing and GETs go through :mod:`s3sync.s3.http`).
        """
        if self._client is not None:
            return self._client
        async with self._client_lock:
            if self._client is None:
                import aioboto3
                from aiobotocore.config import AioConfig

                self._session = self._session or aioboto3.Session(region_name=self.settings.region)
                cfg = AioConfig(
                    max_pool_connections=self.settings.max_pool_connections,
                    connect_timeout=self.settings.connect_timeout_seconds,
                    read_timeout=self._timeout,
                    parameter_validation=False,
                    retries={"mode": "standard", "max_attempts": 3},
                    s3={"addressing_style": "path" if self.settings.endpoint_url else "auto"},
                    tcp_keepalive=True,
                )
                self._client = await self._stack.enter_async_context(
                    self._session.client(
                        "s3",
                        endpoint_url=self.settings.endpoint_url,
                        region_name=self.settings.region,
                        config=cfg,
                    )
                )
        return self._client

    async def _credentials(self) -> Any:
        """Frozen credentials: plain env keys directly, otherwise botocore's full chain."""
        if self._static_creds is not None:
            return self._static_creds
        if self._creds_provider is None:
            env = os.environ
            if env.get("AWS_ACCESS_KEY_ID") and env.get("AWS_SECRET_ACCESS_KEY"):
                self._static_creds = _StaticCredentials(
                    env["AWS_ACCESS_KEY_ID"], env["AWS_SECRET_ACCESS_KEY"], env.get("AWS_SESSION_TOKEN")
                )
                return self._static_creds
            if self._session is None:
                import aioboto3

                self._session = aioboto3.Session(region_name=self.settings.region)
            self._creds_provider = await self._session.get_credentials()
            if self._creds_provider is None:
                raise FatalError(
                    "no AWS credentials found (set AWS_ACCESS_KEY_ID/AWS_SECRET_ACCESS_KEY, "
                    "a profile, or an instance role)"
                )
        return await self._creds_provider.get_frozen_credentials()

    def _setup_fast_path(self) -> None:
        """Path-style URLs for custom endpoints and dotted names, virtual-hosted on AWS."""
        if self.settings.endpoint_url:
            base = self.settings.endpoint_url
            self._path_style = True
        else:
            self._path_style = "." in self.name
            region = self._region or "us-east-1"
            host = f"s3.{region}.amazonaws.com"
            base = f"https://{host}" if self._path_style else f"https://{self.name}.{host}"
        parts = urlsplit(base)
        secure = parts.scheme == "https"
        port = parts.port or (443 if secure else 80)
        host = parts.hostname or "127.0.0.1"
        self._host_header = host if port == (443 if secure else 80) else f"{host}:{port}"
        self._endpoint = f"{parts.scheme}://{self._host_header}"
        self._base_path = parts.path.rstrip("/")
        self._pool = HttpPool(
            host,
            port,
            ssl_context=ssl.create_default_context() if secure else None,
            limit=self.settings.max_pool_connections,
            connect_timeout=self.settings.connect_timeout_seconds,
            read_timeout=self._timeout,
        )

    async def __aexit__(self, *exc: object) -> None:
        if self._pool is not None:
            await self._pool.close()
            self._pool = None
        await self._stack.aclose()

    # -- listing -----------------------------------------------------------
    async def list(self, prefix: str = "", start_after: str | None = None) -> AsyncIterator[ObjectMeta]:
        """Every object under ``prefix`` in key order, at most two pages in memory.

        The next page is requested as soon as the current one is parsed, so the
        server's listing latency overlaps the caller's work on the current page.
        """
        pending: asyncio.Task[dict[str, Any]] | None = asyncio.ensure_future(
            self._list_page(prefix, None, start_after, 1000)
        )
        try:
            while pending is not None:
                page = await pending
                pending = None
                token = page.get("NextContinuationToken")
                if page.get("IsTruncated") and token:
                    pending = asyncio.ensure_future(self._list_page(prefix, token, None, 1000))
                for item in page.get("Contents", ()) or ():
                    yield _meta_from_listing(item)
        finally:
            if pending is not None and not pending.done():
                pending.cancel()
                await asyncio.gather(pending, return_exceptions=True)

    async def list_page(
        self, prefix: str, start_after: str | None, limit: int
    ) -> tuple[builtins.list[ObjectMeta], bool]:
        """One page for the ``/api/v1/files`` cursor API: (objects, more)."""
        page = await self._list_page(prefix, None, start_after, limit)
        return [_meta_from_listing(i) for i in page.get("Contents", ()) or ()], bool(page.get("IsTruncated"))

    async def _list_page(
        self, prefix: str, token: str | None, start_after: str | None, limit: int
    ) -> dict[str, Any]:
        if self._pool is not None:
            return await _retrying(lambda: self._fast_list_page(prefix, token, start_after, limit))
        kwargs: dict[str, Any] = {"Bucket": self.name, "MaxKeys": limit}
        if prefix:
            kwargs["Prefix"] = prefix
        if token:
            kwargs["ContinuationToken"] = token
        elif start_after:
            kwargs["StartAfter"] = start_after
        try:
            page: dict[str, Any] = await (await self._boto()).list_objects_v2(**kwargs)
        except Exception as exc:
            raise classify(exc) from exc
        return page

    # -- single object -----------------------------------------------------
    async def head(self, key: str, part_number: int | None = None) -> ObjectMeta | None:
        """The object's metadata, or None when S3 says 404."""
        kwargs: dict[str, Any] = {"Bucket": self.name, "Key": key}
        if part_number is not None:
            kwargs["PartNumber"] = part_number
        try:
            r = await (await self._boto()).head_object(**kwargs)
        except Exception as exc:
            mapped = classify(exc)
            if isinstance(mapped, NotFoundError):
                return None
            raise mapped from exc
        return ObjectMeta(
            key=key,
            size=int(r.get("ContentLength", 0)),
            etag=normalize_etag(r.get("ETag")),
            last_modified=_ts(r.get("LastModified")),
            version_id=r.get("VersionId"),
        )

    async def check(self) -> None:
        """HEAD the bucket: raises FatalError/RetryableError with a usable reason.

        botocore quietly follows S3's region redirect for its own calls, but the fast GET path
        signs with ``s3.region`` and would then fail on every object; so a bucket whose
        ``x-amz-bucket-region`` differs from ``s3.region`` is reported here, once.
        """
        if self._pool is not None:
            await self._fast_check()
            return
        try:
            r = await (await self._boto()).head_bucket(Bucket=self.name)
        except Exception as exc:
            mapped = classify(exc)
            status = getattr(exc, "response", {}).get("ResponseMetadata", {}).get("HTTPStatusCode")
            if status == 404 or isinstance(mapped, NotFoundError):
                raise FatalError(f"bucket {self.name!r} does not exist") from exc
            if status == 403:
                raise FatalError(f"access denied to bucket {self.name!r} (check credentials)") from exc
            actual = (
                getattr(exc, "response", {})
                .get("ResponseMetadata", {})
                .get("HTTPHeaders", {})
                .get("x-amz-bucket-region")
            )
            if status in (301, 400) and actual and actual != self._region:
                raise wrong_region(self.name, actual, str(self._region)) from exc
            if status == 301:
                raise FatalError(f"bucket {self.name!r} is in another region than {self._region!r}") from exc
            raise mapped from exc
        actual = r.get("BucketRegion") or r.get("ResponseMetadata", {}).get("HTTPHeaders", {}).get(
            "x-amz-bucket-region"
        )
        if actual and self._region and self._region != "auto" and actual != self._region:
            raise wrong_region(self.name, actual, self._region)

    async def get(
        self,
        key: str,
        *,
        if_none_match: str | None = None,
        if_match: str | None = None,
        byte_range: tuple[int, int] | None = None,
        checksum_mode: bool = True,
    ) -> GetResult:
        """GET ``key``; 304 when ``if_none_match`` still matches. Errors are classified."""
        headers: dict[str, str] = {}
        if if_none_match:
            headers["If-None-Match"] = f'"{if_none_match}"'
        if if_match:
            headers["If-Match"] = f'"{if_match}"'
        if byte_range is not None:
            headers["Range"] = f"bytes={byte_range[0]}-{byte_range[1]}"
        if checksum_mode and byte_range is None:
            headers["x-amz-checksum-mode"] = "ENABLED"
        if self._pool is not None:
            return await self._fast_get(key, headers)
        return await self._boto_get(key, headers)

    def _target(self, key: str | None, query: str = "") -> str:
        path = self._base_path
        if self._path_style:
            path += "/" + quote(self.name, safe="")
        path += "/" + (quote(key, safe="/~") if key is not None else "")
        return path + (f"?{query}" if query else "")

    async def _fast_check(self) -> None:
        """HeadBucket on the fast path (no botocore client needed for a one-shot sync)."""
        resp = await self._signed(self._target(None), {}, method="HEAD")
        status = resp.status
        actual = resp.headers.get("x-amz-bucket-region")
        if status == 200:
            if actual and self._region and self._region != "auto" and actual != self._region:
                raise wrong_region(self.name, actual, self._region)
            return
        if status == 404:
            raise FatalError(f"bucket {self.name!r} does not exist")
        if status in (301, 400) and actual and actual != self._region:
            raise wrong_region(self.name, actual, str(self._region))
        if status == 403:
            raise FatalError(f"access denied to bucket {self.name!r} (check credentials)")
        if status == 301:
            raise FatalError(f"bucket {self.name!r} is in another region than {self._region!r}")
        raise classify_status(status, "", f"HeadBucket {self.name}", bucket=self.name, region=actual or "")

    async def _signed(self, target: str, headers: dict[str, str], method: str = "GET") -> Any:
        """Sign with botocore's SigV4 (fresh credentials each time: roles rotate) and send."""
        assert self._pool is not None
        frozen = await self._credentials()
        signer = self._signer
        if signer is None or (signer.access_key, signer.secret_key, signer.token) != (
            frozen.access_key,
            frozen.secret_key,
            frozen.token,
        ):
            signer = self._signer = SigV4Signer(
                frozen.access_key, frozen.secret_key, self._region or "us-east-1", frozen.token
            )
        path, _, query = target.partition("?")
        signed = signer.sign(method, self._host_header, path, query, headers)
        lines = [f"{method} {target} HTTP/1.1", f"Host: {self._host_header}"]
        lines.extend(f"{k}: {v}" for k, v in signed.items())
        head = ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1")
        try:
            return await self._pool.request(head, no_body=method == "HEAD")
        except Exception as exc:
            raise classify(exc) from exc

    async def _error(self, resp: Any, what: str) -> S3SyncError:
        try:
            text = (await resp.body.read())[:4096].decode("utf-8", "replace")
        except Exception:
            text = ""
        return classify_status(
            resp.status,
            _xml_field(text, "Code"),
            _xml_field(text, "Message") or what,
            bucket=self.name,
            region=resp.headers.get("x-amz-bucket-region") or _xml_field(text, "Region"),
        )

    async def _fast_get(self, key: str, headers: dict[str, str]) -> GetResult:
        resp = await self._signed(self._target(key), headers)
        if resp.status == 304:
            resp.body.close()
            return GetResult(304, resp.headers, None, None)
        if resp.status not in (200, 206):
            raise await self._error(resp, f"GET {key}")
        return GetResult(resp.status, resp.headers, resp.body, _meta_from_headers(key, resp.headers))

    async def _fast_list_page(
        self, prefix: str, token: str | None, start_after: str | None, limit: int
    ) -> dict[str, Any]:
        params = {"list-type": "2", "max-keys": str(limit), "encoding-type": "url"}
        if prefix:
            params["prefix"] = prefix
        if token:
            params["continuation-token"] = token
        elif start_after:
            params["start-after"] = start_after
        query = "&".join(f"{k}={quote(v, safe='-_.~')}" for k, v in sorted(params.items()))
        resp = await self._signed(self._target(None, query), {})
        if resp.status != 200:
            raise await self._error(resp, "ListObjectsV2")
        body = await resp.body.read()
        try:
            return _parse_list_xml(body)
        except ET.ParseError:
            pass
        # Keys and prefixes come URL-encoded (encoding-type=url), but some servers (moto) echo
        # StartAfter raw: a control character there is not legal XML 1.0. Drop such characters
        # (none can occur in an encoded key) and parse again.
        try:
            return _parse_list_xml(_XML_ILLEGAL.sub(b"", body))
        except ET.ParseError as exc:
            raise RetryableError(f"ListObjectsV2: malformed XML ({exc})") from exc

    async def _boto_get(self, key: str, headers: dict[str, str]) -> GetResult:
        kwargs: dict[str, Any] = {"Bucket": self.name, "Key": key}
        if "If-None-Match" in headers:
            kwargs["IfNoneMatch"] = headers["If-None-Match"]
        if "If-Match" in headers:
            kwargs["IfMatch"] = headers["If-Match"]
        if "Range" in headers:
            kwargs["Range"] = headers["Range"]
        if "x-amz-checksum-mode" in headers:
            kwargs["ChecksumMode"] = "ENABLED"
        try:
            r = await (await self._boto()).get_object(**kwargs)
        except Exception as exc:
            status = getattr(exc, "response", {}).get("ResponseMetadata", {}).get("HTTPStatusCode")
            if status == 304:
                return GetResult(304, {}, None, None)
            raise classify(exc) from exc
        rh = {k.lower(): v for k, v in r["ResponseMetadata"].get("HTTPHeaders", {}).items()}
        status = int(r["ResponseMetadata"].get("HTTPStatusCode", 200))
        return GetResult(status, rh, _BotoBody(r["Body"]), _meta_from_headers(key, rh))


_MONTHS = {
    m: i
    for i, m in enumerate(
        ("Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec"), start=1
    )
}


def _rfc1123(value: str) -> float:
    """'Tue, 24 Nov 2026 16:34:14 GMT' → unix seconds (strptime is 10x slower per GET)."""
    try:
        _, day, mon, year, hms, *_ = value.split()
        h, m, sec = hms.split(":")
        return float(calendar.timegm((int(year), _MONTHS[mon], int(day), int(h), int(m), int(sec))))
    except (ValueError, KeyError):
        return 0.0


def _strip_ns(tag: str) -> str:
    return tag.rsplit("}", 1)[-1]


def _parse_list_xml(body: bytes) -> dict[str, Any]:
    """ListObjectsV2 XML → the dict shape botocore would give (only the fields we use).

    Keys are URL-decoded the way botocore decodes ``EncodingType=url`` listings.
    """
    root = ET.fromstring(body)
    out: dict[str, Any] = {"Contents": []}
    encoded = False
    for child in root:
        tag = _strip_ns(child.tag)
        if tag == "Contents":
            item: dict[str, Any] = {}
            for f in child:
                ftag = _strip_ns(f.tag)
                if ftag in ("Key", "ETag", "LastModified", "Size", "ChecksumAlgorithm"):
                    item[ftag] = f.text or ""
            out["Contents"].append(item)
        elif tag == "IsTruncated":
            out["IsTruncated"] = (child.text or "").strip().lower() == "true"
        elif tag == "NextContinuationToken":
            out["NextContinuationToken"] = child.text or ""
        elif tag == "EncodingType":
            encoded = (child.text or "").strip().lower() == "url"
    for item in out["Contents"]:
        if encoded:
            item["Key"] = unquote_plus(item.get("Key", ""))
        item["Size"] = int(item.get("Size") or 0)
        if item.get("ChecksumAlgorithm"):
            item["ChecksumAlgorithm"] = [item["ChecksumAlgorithm"]]
    return out


def _xml_field(text: str, name: str) -> str:
    start = text.find(f"<{name}>")
    end = text.find(f"</{name}>")
    if start < 0 or end < 0:
        return ""
    return text[start + len(name) + 2 : end]


def _meta_from_listing(item: Mapping[str, Any]) -> ObjectMeta:
    return ObjectMeta(
        key=item["Key"],
        size=int(item.get("Size", 0)),
        etag=normalize_etag(item.get("ETag")),
        last_modified=_ts(item.get("LastModified")),
        checksum_algorithm=(item.get("ChecksumAlgorithm") or [None])[0],
    )


def _meta_from_headers(key: str, h: Mapping[str, str]) -> ObjectMeta:
    size = h.get("content-length")
    crange = h.get("content-range")
    total: int | None = None
    if crange and "/" in crange:
        tail = crange.rsplit("/", 1)[1]
        total = int(tail) if tail.isdigit() else None
    return ObjectMeta(
        key=key,
        size=total if total is not None else int(size or 0),
        etag=normalize_etag(h.get("etag")),
        last_modified=_ts(h.get("last-modified")),
        version_id=h.get("x-amz-version-id"),
    )


_T = TypeVar("_T")
LIST_ATTEMPTS = 3  # what botocore's standard retry mode gives the aioboto3 path


async def _retrying(fn: Callable[[], Awaitable[_T]]) -> _T:
    """Retry a listing page on transient errors (5xx, SlowDown, resets) with full-jitter backoff.

    A reconcile aborts on a listing error and deletes nothing, so one throttled
    page must not cost a whole pass; GETs have their own policy in the transfer.
    """
    import asyncio
    import random

    for attempt in range(LIST_ATTEMPTS):
        try:
            return await fn()
        except RetryableError:
            if attempt + 1 == LIST_ATTEMPTS:
                raise
            await asyncio.sleep(random.random() * min(2.0, 0.2 * 2**attempt))
    raise AssertionError("unreachable")
