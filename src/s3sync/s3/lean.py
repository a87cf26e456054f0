"""The lean path: GET, HEAD bucket and ListObjectsV2 signed by :mod:`s3sync.s3.sigv4` on our own pool.

botocore's full request pipeline costs ~2 ms of CPU per request, this path
~0.09 ms (docs/design.md, decision 6), which is what a cold sync of many
small objects is made of. It is an optimisation, never a behaviour: every S3
behaviour test runs on both paths. Credentials come from the aioboto3 path's
chain (see :class:`~s3sync.s3.boto.BotoPath`).
"""

from __future__ import annotations

import dataclasses
import ssl
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping
from typing import Any
from urllib.parse import quote, urlsplit

from s3sync.config.sections import S3Settings
from s3sync.errors import S3SyncError
from s3sync.model import ObjectMeta
from s3sync.s3.clock import CLOCK, MAX_SKEW_SECONDS
from s3sync.s3.endpoints import Endpoint, endpoint_from_url, resolve
from s3sync.s3.errors import MappedBody, classify_status, head_bucket_error, map_errors
from s3sync.s3.http import HttpPool
from s3sync.s3.listing import RESTORE_STATUS, parse_list_page, xml_field
from s3sync.s3.meta import meta_from_headers, rfc1123
from s3sync.s3.result import GetResult
from s3sync.s3.sigv4 import SigV4Signer
from s3sync.s3.versions import VersionsPage, parse_versions_page

CredentialsFn = Callable[[], Awaitable[Any]]
MAX_REDIRECTS = 2


class LeanPath:
    """Signed requests to the endpoint :mod:`s3sync.s3.endpoints` resolved (path- or virtual-hosted).

    Also follows a ``307 Temporary Redirect`` to the host it names (re-signed for
    it, a pool per origin) and corrects the signing clock from S3's ``Date`` on
    ``RequestTimeTooSkewed``, retrying once (:mod:`s3sync.s3.clock`).
    """

    def __init__(
        self,
        settings: S3Settings,
        credentials: CredentialsFn,
        *,
        timeout: float,
        endpoint: Endpoint | None = None,
        ssl_context: ssl.SSLContext | None = None,
        extra_headers: Mapping[str, str] | None = None,
    ) -> None:
        self.settings = settings
        self._extra = dict(extra_headers or {})  # on every request (requester pays)
        self.name = settings.bucket
        self._region = settings.region
        self._credentials = credentials
        self._signer: SigV4Signer | None = None
        self._timeout = timeout
        ep = endpoint or resolve(self.name, self._region, settings.endpoint_url)
        self._endpoint = ep
        self._signing_region = ep.signing_region
        self._host_header = ep.host_header
        self._base_path = ep.base_path
        if ep.secure and ssl_context is None:
            ssl_context = ssl.create_default_context()
        self._ssl = ssl_context
        self._pool = self._new_pool(ep.host, ep.port, ep.secure)
        self._redirect_pools: dict[str, HttpPool] = {}

    def _new_pool(self, host: str, port: int, secure: bool) -> HttpPool:
        return HttpPool(
            host,
            port,
            ssl_context=self._ssl if secure else None,
            limit=self.settings.max_pool_connections,
            connect_timeout=self.settings.connect_timeout_seconds,
            read_timeout=self._timeout,
        )

    async def close(self) -> None:
        await self._pool.close()
        for pool in self._redirect_pools.values():
            await pool.close()

    def _target(self, key: str | None, query: str = "") -> str:
        path = self._base_path + "/" + (quote(key, safe="/~") if key is not None else "")
        return path + (f"?{query}" if query else "")

    async def _signed(self, target: str, headers: dict[str, str], method: str = "GET") -> Any:
        """Sign and send; follow a 307 to the host it names; on clock skew, correct and retry once."""
        if self._extra:
            headers = {**self._extra, **headers}
        pool, host_header = self._pool, self._host_header
        resp = await self._send(pool, host_header, target, headers, method)
        hops, skew_retried = 0, False
        while True:
            location = resp.headers.get("location")
            if resp.status in (302, 307, 308) and location and hops < MAX_REDIRECTS:
                await _drain(resp)
                hops += 1
                pool, host_header, target = self._redirected(location)
                resp = await self._send(pool, host_header, target, headers, method)
                continue
            if resp.status == 403 and not skew_retried:
                resp = await _buffered(resp)
                if _skewed(resp) and CLOCK.learn(resp.headers.get("date"), _server_time(resp)):
                    skew_retried = True
                    resp = await self._send(pool, host_header, target, headers, method)
                    continue
            return resp

    def _redirected(self, location: str) -> tuple[HttpPool, str, str]:
        """(pool, Host header, request target) for a ``Location`` S3 sent; one pool per origin."""
        ep = endpoint_from_url(location, self._signing_region)
        pool = self._redirect_pools.get(ep.origin)
        if pool is None:
            pool = self._redirect_pools[ep.origin] = self._new_pool(ep.host, ep.port, ep.secure)
        parts = urlsplit(location)
        return pool, ep.host_header, (parts.path or "/") + (f"?{parts.query}" if parts.query else "")

    async def _send(
        self, pool: HttpPool, host_header: str, target: str, headers: dict[str, str], method: str
    ) -> Any:
        """Sign (fresh credentials each time: roles rotate) for ``host_header`` and send."""
        frozen = await self._credentials()
        signer = self._signer
        if signer is None or (signer.access_key, signer.secret_key, signer.token) != (
            frozen.access_key,
            frozen.secret_key,
            frozen.token,
        ):
            signer = self._signer = SigV4Signer(
                frozen.access_key, frozen.secret_key, self._signing_region, frozen.token
            )
        path, _, query = target.partition("?")
        signed = signer.sign(method, host_header, path, query, headers, now=CLOCK.now())
        lines = [f"{method} {target} HTTP/1.1", f"Host: {host_header}"]
        lines.extend(f"{k}: {v}" for k, v in signed.items())
        head = ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1")
        with map_errors():
            return await pool.request(head, no_body=method == "HEAD")

    async def _error(self, resp: Any, what: str) -> S3SyncError:
        try:
            text = (await resp.body.read())[:4096].decode("utf-8", "replace")
        except Exception:
            text = ""
        return classify_status(
            resp.status,
            xml_field(text, "Code"),
            xml_field(text, "Message") or what,
            bucket=self.name,
            region=resp.headers.get("x-amz-bucket-region") or xml_field(text, "Region"),
        )

    async def check(self) -> None:
        """HeadBucket (no botocore client needed for a one-shot sync)."""
        resp = await self._signed(self._target(None), {}, method="HEAD")
        status = resp.status
        actual = resp.headers.get("x-amz-bucket-region")
        verdict = head_bucket_error(self.name, self._region, status, actual)
        if verdict is not None:
            raise verdict
        if status == 200:
            return
        raise classify_status(status, "", f"HeadBucket {self.name}", bucket=self.name, region=actual or "")

    async def head(
        self,
        key: str,
        headers: dict[str, str],
        part_number: int | None = None,
        version_id: str | None = None,
    ) -> ObjectMeta | None:
        """HEAD object (checksum mode on), or None on 404; the size is the answer's Content-Length.

        On the lean path so that a pass needing one HEAD (a ranged download, a delete
        confirmation) does not load botocore for it (~0.5 s of CPU and ~35 MB).
        """
        params = {"partNumber": str(part_number)} if part_number is not None else {}
        if version_id:
            params["versionId"] = version_id
        query = "&".join(f"{k}={quote(v, safe='-_.~')}" for k, v in sorted(params.items()))
        resp = await self._signed(
            self._target(key, query), {**headers, "x-amz-checksum-mode": "ENABLED"}, method="HEAD"
        )
        if resp.status == 404:
            return None
        # AWS answers a part HEAD with 206 Partial Content (Content-Range, x-amz-mp-parts-count),
        # even for part 1 of a single-part object: aws-truth s3 TestS3::test_get_object_part
        # [head-object-part], [get-obj-no-multipart]
        ok = (200, 206) if part_number is not None else (200,)
        if resp.status not in ok:
            raise classify_status(
                resp.status,
                "",
                f"HEAD {key}",
                bucket=self.name,
                region=resp.headers.get("x-amz-bucket-region", ""),
            )
        meta = meta_from_headers(key, resp.headers)
        length = resp.headers.get("content-length", "")
        return dataclasses.replace(meta, size=int(length)) if length.isdigit() else meta

    async def get(self, key: str, headers: dict[str, str], version_id: str | None = None) -> GetResult:
        query = f"versionId={quote(version_id, safe='-_.~')}" if version_id else ""
        resp = await self._signed(self._target(key, query), headers)
        if resp.status == 304:
            resp.body.close()
            return GetResult(304, resp.headers, None, None)
        if resp.status not in (200, 206):
            raise await self._error(resp, f"GET {key}")
        # the body is read later, by the transfer: its errors leave s3/ classified too
        return GetResult(
            resp.status, resp.headers, MappedBody(resp.body), meta_from_headers(key, resp.headers)
        )

    async def list_page(
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
        resp = await self._signed(self._target(None, query), dict(RESTORE_STATUS))  # s3.listing
        if resp.status != 200:
            raise await self._error(resp, "ListObjectsV2")
        return parse_list_page(await resp.body.read())

    async def list_versions_page(
        self, prefix: str, key_marker: str | None, version_marker: str | None, limit: int
    ) -> VersionsPage:
        """One ListObjectVersions page (``--version-at``), parsed in S3's document order."""
        params = {"versions": "", "max-keys": str(limit), "encoding-type": "url"}
        if prefix:
            params["prefix"] = prefix
        if key_marker:
            params["key-marker"] = key_marker
            if version_marker:
                params["version-id-marker"] = version_marker
        query = "&".join(f"{k}={quote(v, safe='-_.~')}" for k, v in sorted(params.items()))
        resp = await self._signed(self._target(None, query), {})
        if resp.status != 200:
            raise await self._error(resp, "ListObjectVersions")
        return parse_versions_page(await resp.body.read())


class _Replay:
    """An answer whose (small, error) body was read already: it can be inspected and still read."""

    __slots__ = ("_data", "body", "headers", "status")

    def __init__(self, status: int, headers: dict[str, str], data: bytes) -> None:
        self.status, self.headers, self._data = status, headers, data
        self.body = self

    async def read(self) -> bytes:
        return self._data

    async def iter_chunks(self, size: int) -> AsyncIterator[bytes]:
        if self._data:
            yield self._data

    def close(self) -> None:
        pass


async def _buffered(resp: Any) -> _Replay:
    with map_errors():
        data = await resp.body.read()
    return _Replay(resp.status, resp.headers, data)


async def _drain(resp: Any) -> None:
    """Read a redirect's small body so its connection can be reused."""
    try:
        with map_errors():
            await resp.body.read()
    except S3SyncError:
        pass


def _skewed(resp: _Replay) -> bool:
    """RequestTimeTooSkewed — or, for a HEAD (no body to say so), a Date beyond S3's 15 minutes."""
    text = resp._data[:4096].decode("utf-8", "replace")
    if text:
        return xml_field(text, "Code") == "RequestTimeTooSkewed"
    server = rfc1123(resp.headers.get("date", ""))
    return bool(server) and abs(server - CLOCK.now().timestamp()) > MAX_SKEW_SECONDS


def _server_time(resp: _Replay) -> str | None:
    return xml_field(resp._data[:4096].decode("utf-8", "replace"), "ServerTime") or None
