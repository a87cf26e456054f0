"""The lean path: GET, HEAD bucket and ListObjectsV2 signed by :mod:`s3sync.s3.sigv4` on our own pool.

botocore's full request pipeline costs ~2 ms of CPU per request, this path
~0.09 ms (DESIGN.md, "The lean S3 path"), which is what a cold sync of many
small objects is made of. It is an optimisation, never a behaviour: every S3
behaviour test runs on both paths. Credentials come from the aioboto3 path's
chain (see :class:`~s3sync.s3.boto.BotoPath`).
"""

from __future__ import annotations

import ssl
from collections.abc import Awaitable, Callable
from typing import Any
from urllib.parse import quote, urlsplit

from s3sync.errors import FatalError, S3SyncError, classify_status, map_errors, wrong_region
from s3sync.s3.http import HttpPool
from s3sync.s3.listing import parse_list_page, xml_field
from s3sync.s3.meta import meta_from_headers
from s3sync.s3.result import GetResult
from s3sync.s3.sigv4 import SigV4Signer
from s3sync.sections import S3Settings

CredentialsFn = Callable[[], Awaitable[Any]]


class LeanPath:
    """Path-style URLs for custom endpoints and dotted names, virtual-hosted on AWS."""

    def __init__(self, settings: S3Settings, credentials: CredentialsFn, *, timeout: float) -> None:
        self.settings = settings
        self.name = settings.bucket
        self._region = settings.region
        self._credentials = credentials
        self._signer: SigV4Signer | None = None
        if settings.endpoint_url:
            base = settings.endpoint_url
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
        self._base_path = parts.path.rstrip("/")
        self._pool = HttpPool(
            host,
            port,
            ssl_context=ssl.create_default_context() if secure else None,
            limit=settings.max_pool_connections,
            connect_timeout=settings.connect_timeout_seconds,
            read_timeout=timeout,
        )

    async def close(self) -> None:
        await self._pool.close()

    def _target(self, key: str | None, query: str = "") -> str:
        path = self._base_path
        if self._path_style:
            path += "/" + quote(self.name, safe="")
        path += "/" + (quote(key, safe="/~") if key is not None else "")
        return path + (f"?{query}" if query else "")

    async def _signed(self, target: str, headers: dict[str, str], method: str = "GET") -> Any:
        """Sign (fresh credentials each time: roles rotate) and send."""
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
        with map_errors():
            return await self._pool.request(head, no_body=method == "HEAD")

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

    async def get(self, key: str, headers: dict[str, str]) -> GetResult:
        resp = await self._signed(self._target(key), headers)
        if resp.status == 304:
            resp.body.close()
            return GetResult(304, resp.headers, None, None)
        if resp.status not in (200, 206):
            raise await self._error(resp, f"GET {key}")
        return GetResult(resp.status, resp.headers, resp.body, meta_from_headers(key, resp.headers))

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
        resp = await self._signed(self._target(None, query), {})
        if resp.status != 200:
            raise await self._error(resp, "ListObjectsV2")
        return parse_list_page(await resp.body.read())
