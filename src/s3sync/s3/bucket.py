"""The bucket: everything s3sync asks of S3, for one bucket — the only S3 type sync/ imports.

A facade over two paths that must behave the same (every S3 behaviour test
runs on both):

- :class:`~s3sync.s3.lean.LeanPath` (``s3.fast_get = true``, the default):
  GETs, HEAD bucket and ListObjectsV2 signed by :mod:`s3sync.s3.sigv4` and sent
  on the keep-alive pool of :mod:`s3sync.s3.http` — the hot path is CPU;
- :class:`~s3sync.s3.boto.BotoPath`: aioboto3, for HEAD object, for everything
  when ``fast_get = false``, and for the credential chain.

Listing is an async iterator over ``ListObjectsV2`` pages (S3 returns keys in
UTF-8 byte order, which the reconcile merge relies on), one page prefetched.
"""

from __future__ import annotations

import asyncio
import builtins
import os
from collections.abc import AsyncIterator
from typing import Any

from s3sync.config.sections import S3Settings
from s3sync.errors import PermanentError, RetriesExceededError
from s3sync.model import ObjectMeta
from s3sync.retry import RetryPolicy
from s3sync.s3.boto import BotoPath
from s3sync.s3.endpoints import Route, configured_endpoint_url, resolve, route
from s3sync.s3.errors import classify
from s3sync.s3.extras import RequestExtras
from s3sync.s3.lean import LeanPath
from s3sync.s3.listing import RestoreStatusReader, meta_from_listing
from s3sync.s3.meta import UNKNOWN_SIZE
from s3sync.s3.result import Body, GetResult
from s3sync.s3.versions import VersionsPage, at_instant

#: A reconcile aborts on a listing error and deletes nothing, so one throttled page must
#: not cost a whole pass: the lean path retries a page as often as botocore's standard
#: mode retries the aioboto3 path's (3 attempts).
LIST_RETRY = RetryPolicy(attempts=3, base=0.2, cap=2.0, classify=classify)

#: Part HEADs in flight at once while reading a multipart object's layout (:meth:`Bucket.part_sizes`).
PART_HEADS = 8


class Bucket:
    """Everything s3sync asks of S3, for one bucket."""

    def __init__(self, settings: S3Settings, *, fast_get: bool = True, timeout: float = 300.0) -> None:
        self.settings = settings
        self.name = settings.bucket
        self.fast_get = fast_get
        self.extras = RequestExtras.from_settings(settings)  # requester pays, SSE-C (read once)
        self._boto = BotoPath(settings, timeout=timeout, extras=self.extras)
        self._timeout = timeout
        self._lean: LeanPath | None = None
        self.route: Route | None = None  # set for fast_get: whether the lean path took the endpoint
        # whether a listing's silence on RestoreStatus means "not restored" (AWS; see s3.listing)
        aws = configured_endpoint_url(settings.endpoint_url, os.environ) is None
        self._restores = RestoreStatusReader(trusted=aws)

    async def __aenter__(self) -> Bucket:
        if self.fast_get:
            # decided once: what the lean path does not implement (a proxy, say) goes to aioboto3
            r = self.route = route(resolve(self.name, self.settings.region, self.settings.endpoint_url))
            if not r.lean:
                import structlog

                structlog.get_logger(__name__).info(
                    "lean S3 path declined, using aioboto3", reason=r.reason, endpoint=r.endpoint.origin
                )
            if r.lean:
                self._lean = LeanPath(
                    self.settings,
                    self._boto.credentials,
                    timeout=self._timeout,
                    endpoint=r.endpoint,
                    ssl_context=r.ssl_context(),
                    extra_headers=self.extras.every,
                )
                return self
        await self._boto.client()
        return self

    async def __aexit__(self, *exc: object) -> None:
        if self._lean is not None:
            await self._lean.close()
            self._lean = None
        await self._boto.close()

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
                    yield meta_from_listing(item)
                if page.get("IsTruncated") and not token:
                    # never the end of the listing: a pass that saw half the bucket must delete nothing
                    raise PermanentError(
                        "ListObjectsV2 answered IsTruncated=true without a NextContinuationToken:"
                        " the listing cannot be completed"
                    )
        finally:
            if pending is not None and not pending.done():
                pending.cancel()
                await asyncio.gather(pending, return_exceptions=True)

    async def list_page(
        self, prefix: str, start_after: str | None, limit: int
    ) -> tuple[builtins.list[ObjectMeta], bool]:
        """One page for the ``/api/v1/files`` cursor API: (objects, more)."""
        page = await self._list_page(prefix, None, start_after, limit)
        return [meta_from_listing(i) for i in page.get("Contents", ()) or ()], bool(page.get("IsTruncated"))

    async def _list_page(
        self, prefix: str, token: str | None, start_after: str | None, limit: int
    ) -> dict[str, Any]:
        lean = self._lean
        if lean is None:
            return self._restores.read(await self._boto.list_page(prefix, token, start_after, limit))
        try:
            page = await LIST_RETRY.run(lambda: lean.list_page(prefix, token, start_after, limit))
        except RetriesExceededError as exc:
            raise exc.last from exc
        return self._restores.read(page)

    # -- single object -----------------------------------------------------
    async def head(
        self, key: str, part_number: int | None = None, version_id: str | None = None
    ) -> ObjectMeta | None:
        """The object's metadata (checksum, encryption, storage class too), or None when S3 says 404."""
        if self._lean is not None:
            return await self._lean.head(key, dict(self.extras.objects), part_number, version_id)
        return await self._boto.head(key, part_number, version_id)

    async def part_sizes(
        self, key: str, parts: int, version_id: str | None = None, *, known: dict[int, int] | None = None
    ) -> builtins.list[int] | None:
        """Each part's size, in order, for a multipart object of ``parts`` parts; None when unknown.

        Costly for a big upload (a 5 GiB ``aws s3 cp`` has 640 parts), so a download
        asks it only when hashing as equal parts did not match
        (:mod:`s3sync.sync.transfer.verifier`).
        One ``HEAD ?partNumber=N`` per part not in ``known`` (AWS answers them 206,
        which both paths accept), at most :data:`PART_HEADS` at a time. S3's
        GetObjectAttributes ``ObjectParts`` would list them in fewer requests, but
        AWS returns part sizes there only for objects uploaded with additional
        checksums, and moto not at all; a part HEAD works for every object.
        None when a part is missing (the object was replaced meanwhile).
        """
        sizes = dict(known or {})
        gate = asyncio.Semaphore(PART_HEADS)

        async def one(n: int) -> None:
            async with gate:
                meta = await self.head(key, part_number=n, version_id=version_id)
            if meta is not None:
                sizes[n] = meta.size

        await asyncio.gather(*(one(n) for n in range(1, parts + 1) if n not in sizes))
        if any(n not in sizes for n in range(1, parts + 1)):
            return None
        return [sizes[n] for n in range(1, parts + 1)]

    async def check(self) -> None:
        """HEAD the bucket: raises FatalError/RetryableError with a usable reason.

        botocore quietly follows S3's region redirect for its own calls, but the lean path
        signs with ``s3.region`` and would then fail on every object; so a bucket whose
        ``x-amz-bucket-region`` differs from ``s3.region`` is reported here, once.
        """
        if self._lean is not None:
            await self._lean.check()
        else:
            await self._boto.check()

    async def get(
        self,
        key: str,
        *,
        if_none_match: str | None = None,
        if_match: str | None = None,
        byte_range: tuple[int, int] | None = None,
        checksum_mode: bool = True,
        version_id: str | None = None,
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
        if self._lean is not None:
            headers.update(self.extras.objects)  # the aioboto3 path adds them in a before-sign hook
            return await self._lean.get(key, headers, version_id)
        return await self._boto.get(key, headers, version_id)

    # -- point in time -------------------------------------------------------
    def list_at(self, prefix: str, instant: float) -> AsyncIterator[ObjectMeta]:
        """The objects under ``prefix`` as they were at ``instant`` (``--version-at``), in key order.

        Each carries the ``version_id`` to GET; see :mod:`s3sync.s3.versions`.
        """
        lean = self._lean

        async def page(key_marker: str | None, version_marker: str | None) -> VersionsPage:
            if lean is None:
                return await self._boto.list_versions_page(prefix, key_marker, version_marker, 1000)
            try:
                return await LIST_RETRY.run(
                    lambda: lean.list_versions_page(prefix, key_marker, version_marker, 1000)
                )
            except RetriesExceededError as exc:
                raise exc.last from exc

        return at_instant(page, instant)


__all__ = ["UNKNOWN_SIZE", "Body", "Bucket", "GetResult"]
