"""The aioboto3 path: botocore's full pipeline, for whatever the lean path does not do.

It always serves HEAD object (rare: reconcile never HEADs) and, with
``s3.fast_get = false``, listing and GETs too. It also owns the credential
chain, which the lean path borrows: plain env keys are read directly (no
botocore import for a one-shot sync), anything else goes through botocore's
providers (profiles, SSO, instance roles).

Every botocore call runs inside :func:`~s3sync.s3.errors.map_errors`, the one
place where its exceptions become s3sync's.
"""

from __future__ import annotations

import asyncio
import dataclasses
import os
from collections.abc import AsyncIterator
from contextlib import AsyncExitStack
from typing import Any, NamedTuple

from s3sync.config.sections import S3Settings
from s3sync.errors import FatalError, NotFoundError
from s3sync.model import ObjectMeta, normalize_etag
from s3sync.s3.endpoints import configured_endpoint_url
from s3sync.s3.errors import classify, head_bucket_error, map_errors
from s3sync.s3.extras import RequestExtras
from s3sync.s3.meta import meta_from_headers, timestamp
from s3sync.s3.result import GetResult
from s3sync.s3.versions import VersionsPage, page_from_boto


class StaticCredentials(NamedTuple):
    """Same fields as botocore's ReadOnlyCredentials, without importing botocore (~50 ms)."""

    access_key: str
    secret_key: str
    token: str | None


class _BotoBody:
    def __init__(self, stream: Any) -> None:
        self._stream = stream

    async def iter_chunks(self, size: int) -> AsyncIterator[bytes]:
        while True:
            with map_errors():  # read after get() returned: its errors leave s3/ classified too
                chunk = await self._stream.read(size)
            if not chunk:
                return
            yield chunk

    async def read(self) -> bytes:
        with map_errors():
            data: bytes = await self._stream.read()
        return data

    def close(self) -> None:
        self._stream.close()


def _status(exc: BaseException) -> int | None:
    status: int | None = getattr(exc, "response", {}).get("ResponseMetadata", {}).get("HTTPStatusCode")
    return status


class BotoPath:
    """One lazily created aioboto3 client for one bucket."""

    def __init__(self, settings: S3Settings, *, timeout: float, extras: RequestExtras | None = None) -> None:
        self.settings = settings
        self.extras = extras or RequestExtras()
        self.name = settings.bucket
        self._region = settings.region
        self._timeout = timeout
        self._stack = AsyncExitStack()
        self._client: Any = None
        self._session: Any = None
        self._client_lock = asyncio.Lock()
        self._static_creds: Any = None
        self._creds_provider: Any = None

    async def client(self) -> Any:
        """The aioboto3 client, created on first use.

        Importing and building it costs ~0.3 s, which a one-shot ``sync`` on the
        lean path never needs (listing and GETs go through :mod:`s3sync.s3.lean`).
        """
        if self._client is not None:
            return self._client
        with map_errors():  # building it raises botocore's own errors (a bad endpoint, a region)
            return await self._make_client()

    async def _make_client(self) -> Any:
        async with self._client_lock:
            if self._client is None:
                import aioboto3
                from aiobotocore.config import AioConfig

                from s3sync.s3 import boto_hooks

                self._session = self._session or aioboto3.Session(region_name=self.settings.region)
                boto_hooks.lenient_timestamps(self._session._session)
                # a custom endpoint (setting or AWS_ENDPOINT_URL[_S3]) is path-style, as on the lean path
                custom = configured_endpoint_url(self.settings.endpoint_url, os.environ)
                cfg = AioConfig(
                    max_pool_connections=self.settings.max_pool_connections,
                    connect_timeout=self.settings.connect_timeout_seconds,
                    read_timeout=self._timeout,
                    parameter_validation=False,
                    retries={"mode": "standard", "max_attempts": 3},
                    s3={"addressing_style": "path" if custom else "auto"},
                    tcp_keepalive=True,
                    http_session_cls=boto_hooks.NoRedirectSession,
                )
                client = await self._stack.enter_async_context(
                    self._session.client(
                        "s3",
                        endpoint_url=self.settings.endpoint_url,
                        region_name=self.settings.region,
                        config=cfg,
                    )
                )
                boto_hooks.install(client)  # 307s re-signed for their host; clock skew corrected
                self.extras.register(client.meta.events)  # requester pays, SSE-C
                self._client = client
        return self._client

    async def credentials(self) -> Any:
        """Frozen credentials: plain env keys directly, otherwise botocore's full chain."""
        if self._static_creds is not None:
            return self._static_creds
        with map_errors():  # the chain (profiles, IMDS, STS) raises botocore's own errors
            return await self._credentials()

    async def _credentials(self) -> Any:
        if self._creds_provider is None:
            env = os.environ
            if env.get("AWS_ACCESS_KEY_ID") and env.get("AWS_SECRET_ACCESS_KEY"):
                self._static_creds = StaticCredentials(
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

    async def close(self) -> None:
        await self._stack.aclose()

    async def list_page(
        self, prefix: str, token: str | None, start_after: str | None, limit: int
    ) -> dict[str, Any]:
        # RestoreStatus: archived objects not restored are skipped without a GET (s3.listing)
        kwargs: dict[str, Any] = {
            "Bucket": self.name,
            "MaxKeys": limit,
            "OptionalObjectAttributes": ["RestoreStatus"],
        }
        if prefix:
            kwargs["Prefix"] = prefix
        if token:
            kwargs["ContinuationToken"] = token
        elif start_after:
            kwargs["StartAfter"] = start_after
        with map_errors():
            page: dict[str, Any] = await (await self.client()).list_objects_v2(**kwargs)
        return page

    async def head(
        self, key: str, part_number: int | None = None, version_id: str | None = None
    ) -> ObjectMeta | None:
        # checksum mode: a HEAD is how the ranged path learns the object's additional checksum
        kwargs: dict[str, Any] = {"Bucket": self.name, "Key": key, "ChecksumMode": "ENABLED"}
        if part_number is not None:
            kwargs["PartNumber"] = part_number
        if version_id:
            kwargs["VersionId"] = version_id
        try:
            with map_errors():
                r = await (await self.client()).head_object(**kwargs)
        except NotFoundError:
            return None
        rh = {k.lower(): v for k, v in r.get("ResponseMetadata", {}).get("HTTPHeaders", {}).items()}
        meta = meta_from_headers(key, rh)
        return dataclasses.replace(
            meta,
            size=int(r.get("ContentLength", 0)),
            etag=normalize_etag(r.get("ETag")),
            last_modified=timestamp(r.get("LastModified")),
            version_id=r.get("VersionId"),
        )

    async def check(self) -> None:
        try:
            r = await (await self.client()).head_bucket(Bucket=self.name)
        except Exception as exc:
            mapped = classify(exc)
            status = _status(exc) or 0
            if isinstance(mapped, NotFoundError):
                status = 404
            actual = getattr(exc, "response", {}).get("ResponseMetadata", {}).get("HTTPHeaders", {})
            verdict = head_bucket_error(self.name, self._region, status, actual.get("x-amz-bucket-region"))
            if verdict is not None and status != 200:
                raise verdict from exc
            raise mapped from exc
        actual = r.get("BucketRegion") or r.get("ResponseMetadata", {}).get("HTTPHeaders", {}).get(
            "x-amz-bucket-region"
        )
        verdict = head_bucket_error(self.name, self._region, 200, actual)
        if verdict is not None:
            raise verdict

    async def list_versions_page(
        self, prefix: str, key_marker: str | None, version_marker: str | None, limit: int
    ) -> VersionsPage:
        kwargs: dict[str, Any] = {"Bucket": self.name, "MaxKeys": limit}
        if prefix:
            kwargs["Prefix"] = prefix
        if key_marker:
            kwargs["KeyMarker"] = key_marker
            if version_marker:
                kwargs["VersionIdMarker"] = version_marker
        with map_errors():
            page: dict[str, Any] = await (await self.client()).list_object_versions(**kwargs)
        return page_from_boto(page)

    async def get(self, key: str, headers: dict[str, str], version_id: str | None = None) -> GetResult:
        kwargs: dict[str, Any] = {"Bucket": self.name, "Key": key}
        if version_id:
            kwargs["VersionId"] = version_id
        if "If-None-Match" in headers:
            kwargs["IfNoneMatch"] = headers["If-None-Match"]
        if "If-Match" in headers:
            kwargs["IfMatch"] = headers["If-Match"]
        if "Range" in headers:
            kwargs["Range"] = headers["Range"]
        if "x-amz-checksum-mode" in headers:
            kwargs["ChecksumMode"] = "ENABLED"
        try:
            r = await (await self.client()).get_object(**kwargs)
        except Exception as exc:
            if _status(exc) == 304:
                return GetResult(304, {}, None, None)
            raise classify(exc) from exc
        rh = {k.lower(): v for k, v in r["ResponseMetadata"].get("HTTPHeaders", {}).items()}
        status = int(r["ResponseMetadata"].get("HTTPStatusCode", 200))
        return GetResult(status, rh, _BotoBody(r["Body"]), meta_from_headers(key, rh))
