"""The AWS behaviour of :class:`support.proxy.Proxy`: moto answers the way AWS S3 does.

moto is kind: every ETag is an MD5, nothing is archived, nobody pays. Plugged into
the proxy (``Proxy(moto, Aws())``, then ``proxy.aws``), it rewrites, for the keys
a test configured, the answer to what AWS documents:

* **encryption** (:meth:`Aws.kms`): ``x-amz-server-side-encryption:
  aws:kms`` / ``aws:kms:dsse`` with an ETag that is *not* the MD5 of the body
  (same shape: 32 hex digits, ``-N`` kept for multipart), on GET, HEAD and in
  ListObjectsV2; ``If-Match`` / ``If-None-Match`` carrying that ETag are
  translated back before moto sees them;
* **checksums** (:meth:`Aws.checksum`): ``x-amz-checksum-<algo>`` and
  ``x-amz-checksum-type`` only when the request carries ``x-amz-checksum-mode:
  ENABLED`` and is not ranged, computed from the stored body (full-object, or
  composite ``<b64>-N`` from a part size); ``ChecksumAlgorithm`` and
  ``ChecksumType`` in the listing; ``wrong=True`` sends a bad value;
* **storage classes** (:meth:`Aws.archive`): the listing's
  ``StorageClass``; GET answers 403 ``InvalidObjectState`` unless restored; a
  restored object carries ``x-amz-restore: ongoing-request="false",
  expiry-date=...``; Intelligent-Tiering archive tiers as ``x-amz-archive-status``;
* **requester pays** (:attr:`Aws.requester_pays`): every request without
  ``x-amz-request-payer: requester`` is 403 ``AccessDenied``;
* **SSE-C** (:meth:`Aws.sse_c`): GET/HEAD without the three
  ``x-amz-server-side-encryption-customer-*`` headers is 400, a key whose MD5
  header does not match is 400, a wrong key 403;
* **an object replaced between listing and GET** (:meth:`Aws.replace_on_get`):
  the proxy overwrites the object in moto just before forwarding the GET, so a
  GET pinned with the old ETag gets moto's own 412 (``force_412`` answers 412
  even to an unconditional GET);
* **KMS/SSE-C ETags change on every PUT** (:meth:`Aws.reput`): the same
  bytes PUT again get a new opaque ETag;
* **parts** (:mod:`support.awsparts`): a ``?partNumber=N`` answer carries the
  checksum AWS gives a part (the whole object's, the part's own, or none); a
  part past the last is 416 ``InvalidPartNumber``, with ``Range`` 400;
* **default checksums** (:attr:`Aws.assign_checksums`, on by default): an
  object moto stored without a checksum carries CRC64NVME FULL_OBJECT, in
  GET/HEAD answers and in the listing, as every object S3 stores since 2025;
  a whole-object COMPOSITE value keeps its ``-N``, and a multipart FULL_OBJECT
  value is the whole body's (moto answers neither form);
* **delete markers**: a GET of a marker's version is 405, a GET of a key whose
  latest version is a marker is 404 with ``x-amz-delete-marker``;
* **ListObjectVersions** with ``encoding-type=url`` has its keys percent-encoded.

Each rule names the recorded AWS answer it reproduces (``tests/data/aws-truth``).

The proxy records every request (:meth:`support.proxy.Proxy.requests`), so a
test asserts on what s3sync *sent* as well as on the mirror.
"""

from __future__ import annotations

import asyncio
import threading
from typing import Any

import aiohttp
from aiohttp import web
from support.awsparts import (
    composite_suffix,
    content_range,
    delete_marker_answer,
    encode_versions_listing,
    part_checksum,
    part_error,
    part_status,
    range_checksum,
    stored_rule,
)
from support.awsrules import (
    SSE_C_HEADERS,
    Etags,
    ObjectRule,
    Seen,
    dress,
    error_xml,
    opaque_etag,
    refusal,
    rewrite_listing,
    rule_checksum,
)
from support.proxy import Behaviour, Call, Proxy
from support.s3kit import AWS_ENV


class Aws(Behaviour):
    """See the module docstring. Configure it from any thread: ``proxy.aws.kms(key)``."""

    def __init__(self) -> None:
        self.requester_pays = False
        self.assign_checksums = True
        self._rules: dict[str, ObjectRule] = {}
        self._lock = threading.Lock()
        self._etags = Etags()
        self._bodies: dict[tuple[str, str, str], bytes] = {}
        self._stored: dict[tuple[str, str, str], tuple[str | None, str | None]] = {}
        self._s3: Any = None

    def attach(self, proxy: Proxy) -> None:
        import boto3
        from botocore.config import Config

        # the behaviour's own reads and writes of moto (checksums, replacements) go straight to it
        self._s3 = boto3.client(
            "s3",
            endpoint_url=proxy.upstream,
            region_name="us-east-1",
            aws_access_key_id=AWS_ENV["AWS_ACCESS_KEY_ID"],
            aws_secret_access_key=AWS_ENV["AWS_SECRET_ACCESS_KEY"],
            # moto's own stored checksums are not always right (a multipart FULL_OBJECT value is
            # neither form): the proxy reads the bytes as they are and computes AWS's values itself
            config=Config(response_checksum_validation="when_required"),
        )

    def configure(self, key: str, **fields: Any) -> ObjectRule:
        """Set fields of ``key``'s rule (created on first use)."""
        with self._lock:
            rule = self._rules.setdefault(key, ObjectRule())
            for name, value in fields.items():
                if not hasattr(rule, name):
                    raise TypeError(f"no rule field {name!r}")
                setattr(rule, name, value)
            return rule

    def kms(self, key: str, *, dsse: bool = False) -> ObjectRule:
        return self.configure(key, encryption="aws:kms:dsse" if dsse else "aws:kms")

    def checksum(
        self, key: str, algorithm: str, *, composite_part_size: int | None = None, wrong: bool = False
    ) -> ObjectRule:
        return self.configure(
            key,
            checksum=algorithm.upper(),
            checksum_type="COMPOSITE" if composite_part_size else "FULL_OBJECT",
            part_size=composite_part_size,
            wrong_checksum=wrong,
        )

    def archive(
        self,
        key: str,
        storage_class: str = "GLACIER",
        *,
        restore: str | None = None,
        tier: str | None = None,
    ) -> ObjectRule:
        return self.configure(key, storage_class=storage_class, restore=restore, archive_status=tier)

    def sse_c(self, key: str, customer_key: bytes) -> ObjectRule:
        return self.configure(key, sse_c_key=customer_key)

    def replace_on_get(self, key: str, new_body: bytes, *, force_412: bool = False) -> ObjectRule:
        """Overwrite ``key`` in moto right before its next GET reaches moto (once)."""
        with self._lock:
            rule = self._rules.setdefault(key, ObjectRule())
            rule.replacements.append((new_body, force_412))
            return rule

    def reput(self, key: str) -> ObjectRule:
        """``key`` was PUT again with the same bytes: an opaque (KMS, SSE-C) ETag changes."""
        with self._lock:
            rule = self._rules.setdefault(key, ObjectRule())
            rule.generation += 1
            return rule

    def etag_seen_by_clients(self, real: str, key: str) -> str:
        """The ETag clients see for a stored (real) ETag of ``key``."""
        rule = self._rule(key)
        return opaque_etag(real, rule.generation) if rule is not None and rule.opaque_etag else real

    def _rule(self, key: str) -> ObjectRule | None:
        with self._lock:
            return self._rules.get(key)

    # -- the hooks -------------------------------------------------------------
    async def before(self, call: Call) -> web.StreamResponse | None:
        request, seen, headers = call.request, call.seen, call.headers
        extra: dict[str, str] = {}
        call.state["aws_extra"] = extra
        if self.requester_pays:
            if headers.get("x-amz-request-payer") != "requester":
                return _error(request, 403, "AccessDenied", "Access Denied")
            extra["x-amz-request-charged"] = "requester"
        rule = self._rule(seen.key) if seen.op in ("GET", "RANGE", "HEAD") else None
        call.state["aws_rule"] = rule
        if rule is not None:
            refused = refusal(rule, seen.op, headers)
            if refused is not None:
                status, code, message, fields = refused
                return _error(request, status, code, message, **fields)
            for name in SSE_C_HEADERS:
                headers.pop(name, None)
            for name in ("if-match", "if-none-match"):
                if name in headers:
                    headers[name] = self._etags.for_moto(headers[name], rule.opaque_etag)
            if seen.op != "HEAD":
                forced = await self._maybe_replace(call.bucket, seen.key, rule)
                if forced:
                    return _error(
                        request,
                        412,
                        "PreconditionFailed",
                        "At least one of the pre-conditions you specified did not hold",
                        Condition="If-Match",
                    )
        part = _part_number(seen.query) if seen.op in ("GET", "RANGE", "HEAD") else None
        call.state["aws_part"] = part
        if part is not None and "range" in headers:
            status, code, message, fields = part_error(part, True, None) or (400, "", "", {})
            return _error(request, status, code, message, **fields)
        return None

    async def after(self, call: Call, up: aiohttp.ClientResponse) -> web.StreamResponse | None:
        request, seen, headers, bucket, out = call.request, call.seen, call.headers, call.bucket, call.out
        rule: ObjectRule | None = call.state["aws_rule"]
        part: int | None = call.state["aws_part"]
        out.update(call.state["aws_extra"])
        if seen.op == "LIST" and up.status == 200 and (self._has_rules() or self.assign_checksums):
            xml = rewrite_listing(
                await up.read(), headers, self._rule, self._etags, assign=self.assign_checksums
            )
            out.pop("Content-Length", None)
            return web.Response(status=200, body=xml, headers=out)
        if _versions_encoded(request.method, seen) and up.status == 200:
            out.pop("Content-Length", None)
            return web.Response(status=200, body=encode_versions_listing(await up.read()), headers=out)
        if seen.op in ("GET", "RANGE", "HEAD") and up.status in (404, 416):
            answer = await self._refined_error(request, seen, bucket, up.status, part)
            if answer is not None:
                return answer
        status = up.status
        if part is not None:
            status, added = part_status(status, {k.lower(): v for k, v in out.items()}, part)
            out.update(added)
        if rule is None and seen.op in ("GET", "RANGE", "HEAD"):
            rule = await self._assigned(bucket, seen.key, out, status)
        if rule is not None and status in (200, 206, 304, 412):
            real = dress(out, rule, status, self._etags)
            wants = headers.get("x-amz-checksum-mode", "").upper() == "ENABLED"
            if rule.checksum and wants and real:
                data = await self._body(bucket, seen.key, real)
                if seen.op == "RANGE":
                    crange = next((v for k, v in out.items() if k.lower() == "content-range"), None)
                    out.update(range_checksum(rule, data, crange))
                else:
                    out.update(self._checksum_headers(rule, data, part, status, out))
        elif status in (200, 206) and seen.op in ("GET", "HEAD") and part is None:
            low = {k.lower(): v for k, v in out.items()}
            out.update(composite_suffix(low, low.get("etag", "")))
        call.status = status
        return None

    @staticmethod
    def _checksum_headers(
        rule: ObjectRule, data: bytes, part: int | None, status: int, out: dict[str, str]
    ) -> dict[str, str]:
        if part is None:
            if status != 200:
                return {}
            value = rule_checksum(rule, data)
            assert rule.checksum is not None
            return {
                f"x-amz-checksum-{rule.checksum.lower()}": value,
                "x-amz-checksum-type": rule.checksum_type,
            }
        low = {k.lower(): v for k, v in out.items()}
        span = content_range(low.get("content-range"))
        if status != 206 or span is None:
            return {}
        count = low.get("x-amz-mp-parts-count")
        return part_checksum(rule, data, int(count) if count else None, span[0], span[1])

    async def _assigned(self, bucket: str, key: str, out: dict[str, str], status: int) -> ObjectRule | None:
        """The rule an unconfigured key needs so that its checksum is AWS's (None: moto's is)."""
        if status not in (200, 206, 304, 412):
            return None
        etag = next((v for k, v in out.items() if k.lower() == "etag"), "").strip('"')
        if not etag:
            return None
        stored = await self._stored_facts(bucket, key, etag)
        if stored is None or (stored[0] is None and not self.assign_checksums):
            return None
        return stored_rule(stored[0], stored[1], etag)

    async def _stored_facts(self, bucket: str, key: str, etag: str) -> tuple[str | None, str | None] | None:
        """(algorithm, type) of the checksum moto stored for this version of ``key``; None if gone."""
        from botocore.exceptions import ClientError

        cache_key = (bucket, key, etag)
        with self._lock:
            if cache_key in self._stored:
                return self._stored[cache_key]
        try:
            head = await asyncio.to_thread(
                self._s3.head_object, Bucket=bucket, Key=key, ChecksumMode="ENABLED"
            )
        except ClientError:
            return None
        algorithm = next(
            (
                name[len("Checksum") :]
                for name in head
                if name.startswith("Checksum") and name != "ChecksumType"
            ),
            None,
        )
        known = (algorithm, head.get("ChecksumType"))
        with self._lock:
            self._stored[cache_key] = known
        return known

    async def _refined_error(
        self, request: web.Request, seen: Seen, bucket: str, status: int, part: int | None
    ) -> web.Response | None:
        """AWS's 416 for a part past the last, and its 404/405 for delete markers (moto differs)."""
        from botocore.exceptions import ClientError

        if status == 416 and part is not None:
            try:
                head = await asyncio.to_thread(
                    self._s3.head_object, Bucket=bucket, Key=seen.key, PartNumber=1
                )
            except ClientError:
                return None
            refused = part_error(part, False, head.get("PartsCount"))
            if refused is None:
                return None
            code, message, fields = refused[1], refused[2], refused[3]
            return _error(request, refused[0], code, message, **fields)
        if status != 404 or request.method != "GET":
            return None
        version = seen.query.get("versionId")
        kwargs = {"Bucket": bucket, "Key": seen.key, **({"VersionId": version} if version else {})}
        try:
            await asyncio.to_thread(self._s3.head_object, **kwargs)
            return None
        except ClientError as exc:
            probe = {k.lower(): v for k, v in exc.response["ResponseMetadata"]["HTTPHeaders"].items()}
        answer = delete_marker_answer(request.method, version is not None, probe)
        if answer is None:
            return None
        status, code, message, fields, extra = answer
        resp = _error(request, status, code, message, **fields)
        resp.headers.update(extra)
        return resp

    async def _maybe_replace(self, bucket: str, key: str, rule: ObjectRule) -> bool:
        with self._lock:
            if not rule.replacements:
                return False
            new_body, force = rule.replacements.pop(0)
        await asyncio.to_thread(self._s3.put_object, Bucket=bucket, Key=key, Body=new_body)
        return force

    async def _body(self, bucket: str, key: str, real_etag: str) -> bytes:
        cache_key = (bucket, key, real_etag)
        with self._lock:
            cached = self._bodies.get(cache_key)
        if cached is None:
            got = await asyncio.to_thread(self._s3.get_object, Bucket=bucket, Key=key, IfMatch=real_etag)
            cached = got["Body"].read()
            with self._lock:
                self._bodies[cache_key] = cached
        return cached

    def _has_rules(self) -> bool:
        with self._lock:
            return bool(self._rules)


def _part_number(query: dict[str, str]) -> int | None:
    raw = query.get("partNumber")
    return int(raw) if raw is not None and raw.isdigit() else None


def _versions_encoded(method: str, seen: Seen) -> bool:
    """A ListObjectVersions request that asked for ``encoding-type=url``."""
    return (
        method == "GET"
        and not seen.key
        and "versions" in seen.query
        and seen.query.get("encoding-type", "").lower() == "url"
    )


def _error(request: web.Request, status: int, code: str, message: str, **extra: str) -> web.Response:
    return web.Response(
        status=status,
        body=b"" if request.method == "HEAD" else error_xml(code, message, **extra),
        headers={"Content-Type": "application/xml", "x-amz-request-id": "awsproxy"},
    )
