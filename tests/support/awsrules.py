"""What AWS S3 answers, as pure functions: the rules behind :mod:`support.aws`, the proxy's AWS behaviour.

Each function takes moto's answer (headers, listing XML) and one key's
:class:`ObjectRule` and gives AWS's: opaque KMS ETags, encryption, storage
class and restore headers, checksum values, the errors AWS returns before it
reads a byte (SSE-C, archived objects). No I/O here, so the proxy's own logic
stays a thin loop around them.

AWS truth, not belief: every rule is marked with :func:`reproduces`, naming the
entries of the recorded corpus (``tests/data/aws-truth``, cited as in its
README) it reproduces, or saying what the corpus did *not* record (the rule then
keeps what AWS documents). ``tests/realism/test_corpus_rules.py`` checks each
rule's output against the entries it names.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import threading
import xml.etree.ElementTree as ET
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any, TypeVar
from urllib.parse import unquote_plus

NS = "http://s3.amazonaws.com/doc/2006-03-01/"
SSE_C_HEADERS = (
    "x-amz-server-side-encryption-customer-algorithm",
    "x-amz-server-side-encryption-customer-key",
    "x-amz-server-side-encryption-customer-key-md5",
)
ARCHIVE_CLASSES = frozenset({"GLACIER", "DEEP_ARCHIVE"})
EXPIRY = "Fri, 21 Dec 2035 00:00:00 GMT"
EXPIRY_ISO = "2035-12-21T00:00:00.000Z"
KMS_KEY_ARN = "arn:aws:kms:us-east-1:111122223333:key/awsproxy"
#: aws-truth s3 TestS3SSECEncryption::test_object_retrieval_sse_c [get-obj-sse-c-wrong-key]
SSE_C_WRONG_KEY = (
    "Requests specifying Server Side Encryption with Customer provided keys "
    + "must provide the correct secret key."
)

F = TypeVar("F", bound=Callable[..., Any])


def reproduces(*entries: str, not_recorded: str | None = None) -> Callable[[F], F]:
    """Mark a rule with the corpus entries it reproduces and what the corpus did not record."""

    def mark(fn: F) -> F:
        fn.corpus = entries  # type: ignore[attr-defined]
        fn.not_recorded = not_recorded  # type: ignore[attr-defined]
        return fn

    return mark


@reproduces(not_recorded="routing only: which operation a path-style request is, no AWS answer")
def classify(method: str, path: str, query: Mapping[str, str], headers: Mapping[str, str]) -> str:
    """GET, RANGE, HEAD, LIST, HEAD_BUCKET, PUT or OTHER, for a path-style request."""
    parts = [p for p in path.split("/") if p]
    if len(parts) < 2:
        if method == "HEAD":
            return "HEAD_BUCKET"
        return "LIST" if method == "GET" and "list-type" in query else "OTHER"
    if method == "HEAD":
        return "HEAD"
    if method == "GET":
        return "RANGE" if "range" in headers else "GET"
    return "PUT" if method == "PUT" else "OTHER"


@reproduces(
    "s3 TestS3::test_get_object_part [part-doesnt-exist]",
    "api TestS3ObjectCRUD::test_delete_object_versioned [get-delete-marker]",
    not_recorded="the raw XML (the corpus holds parsed fields): the layout is the documented <Error> body",
)
def error_xml(code: str, message: str, **extra: str) -> bytes:
    fields = "".join(f"<{k}>{v}</{k}>" for k, v in extra.items())
    return (
        f'<?xml version="1.0" encoding="UTF-8"?>\n<Error><Code>{code}</Code><Message>{message}</Message>'
        f"{fields}<RequestId>awsproxy</RequestId><HostId>awsproxy</HostId></Error>"
    ).encode()


@dataclass
class Seen:
    """One request as it arrived (header names lower-cased) and the status it got."""

    method: str
    op: str
    key: str
    query: dict[str, str]
    headers: dict[str, str]
    status: int = 0
    bucket: str = ""

    def header(self, name: str) -> str | None:
        return self.headers.get(name.lower())


@dataclass
class ObjectRule:
    """How the proxy dresses one key. Fields left at their defaults change nothing."""

    encryption: str | None = None  # "aws:kms", "aws:kms:dsse", "AES256"
    checksum: str | None = None  # "CRC64NVME", "CRC32", "CRC32C", "SHA1", "SHA256"
    checksum_type: str = "FULL_OBJECT"  # or "COMPOSITE"
    part_size: int | None = None  # COMPOSITE: the upload's part size
    wrong_checksum: bool = False
    storage_class: str | None = None  # "GLACIER", "DEEP_ARCHIVE", "INTELLIGENT_TIERING", ...
    archive_status: str | None = None  # INTELLIGENT_TIERING: "ARCHIVE_ACCESS" / "DEEP_ARCHIVE_ACCESS"
    restore: str | None = None  # None (never asked), "ongoing", "done"
    sse_c_key: bytes | None = None
    replacements: list[tuple[bytes, bool]] = field(default_factory=list)  # (new body, force 412)
    generation: int = 0  # opaque ETags: one more for every PUT of the same bytes (Aws.reput)

    @property
    def opaque_etag(self) -> bool:
        return self.encryption in ("aws:kms", "aws:kms:dsse") or self.sse_c_key is not None

    @property
    def archived(self) -> bool:
        """True while a GET must fail with InvalidObjectState."""
        cold = self.storage_class in ARCHIVE_CLASSES or self.archive_status is not None
        return cold and self.restore != "done"


# ----------------------------------------------------------------------------- checksums


@reproduces(
    "s3 TestS3PutObjectChecksum::test_s3_get_object_checksum[CRC32] [get-object-with-checksum]",
    "s3 TestS3PutObjectChecksum::test_s3_get_object_checksum[CRC32C] [get-object-with-checksum]",
    "s3 TestS3PutObjectChecksum::test_s3_get_object_checksum[SHA1] [get-object-with-checksum]",
    "s3 TestS3PutObjectChecksum::test_s3_get_object_checksum[SHA256] [get-object-with-checksum]",
    "s3 TestS3PutObjectChecksum::test_s3_get_object_checksum[CRC64NVME] [get-object-with-checksum]",
    "s3 TestS3PutObjectChecksum::test_s3_checksum_no_automatic_sdk_calculation [head-obj-no-checksum]",
)
def checksum_of(algorithm: str, data: bytes) -> bytes:
    """The raw (big-endian) checksum S3 would store for ``data``."""
    from awscrt import checksums

    algorithm = algorithm.upper()
    if algorithm == "CRC64NVME":
        return checksums.crc64nvme(data).to_bytes(8, "big")
    if algorithm == "CRC32C":
        return checksums.crc32c(data).to_bytes(4, "big")
    if algorithm == "CRC32":
        return binascii.crc32(data).to_bytes(4, "big")
    return hashlib.new(algorithm.lower(), data).digest()


@reproduces(
    "s3 TestS3MultipartUploadChecksum::test_complete_multipart_parts_checksum_composite[CRC32] "
    "[complete-multipart-checksum]",
    "s3 TestS3MultipartUploadChecksum::test_complete_multipart_parts_checksum_composite[CRC32] "
    "[get-object-part-checksum]",
)
def s3_checksum(algorithm: str, data: bytes, *, part_size: int | None = None) -> str:
    """The header value: base64 of the full-object checksum, or composite ``<b64>-N``."""
    if part_size is None:
        return base64.b64encode(checksum_of(algorithm, data)).decode()
    parts = [data[i : i + part_size] for i in range(0, len(data), part_size)] or [b""]
    joined = b"".join(checksum_of(algorithm, p) for p in parts)
    return f"{base64.b64encode(checksum_of(algorithm, joined)).decode()}-{len(parts)}"


@reproduces(not_recorded="a deliberately wrong checksum is a fault we inject, not an AWS answer")
def rule_checksum(rule: ObjectRule, data: bytes) -> str:
    """The value the proxy announces for ``rule`` (deliberately wrong when asked)."""
    assert rule.checksum is not None
    body = data + b"!" if rule.wrong_checksum else data
    return s3_checksum(rule.checksum, body, part_size=rule.part_size)


# ----------------------------------------------------------------------------- ETags


@reproduces(
    "api TestS3BucketEncryption::test_s3_bucket_encryption_sse_kms [put-object-encrypted]",
    "api TestS3BucketEncryption::test_s3_bucket_encryption_sse_kms "
    "[put-object-encrypted-bucket-key-disabled]",
    "s3 TestS3SSECEncryption::test_object_retrieval_sse_c [put-obj-sse-c]",
    "s3 TestS3::test_s3_multipart_upload_sse [multi-sse-compete-multipart]",
    "s3 TestS3SSECEncryption::test_multipart_upload_sse_c [complete-multipart-checksum]",
)
def opaque_etag(real: str, generation: int = 0) -> str:
    """A KMS/SSE-C ETag: same shape as ``real`` (``-N`` kept), not an MD5 of the body.

    AWS gives a new one on every PUT, even of the same bytes: ``generation``
    counts the PUTs the proxy was told about (:meth:`Aws.reput`).
    """
    salt = b"kms-opaque:" if generation == 0 else f"kms-opaque-{generation}:".encode()
    digest = hashlib.md5(salt + real.encode()).hexdigest()
    _, dash, parts = real.partition("-")
    return f"{digest}{dash}{parts}"


class Etags:
    """The opaque ETags handed out, so conditional requests can be translated back."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._fake_to_real: dict[str, str] = {}

    def for_client(self, real: str, rule: ObjectRule) -> str:
        if not rule.opaque_etag:
            return real
        fake = opaque_etag(real, rule.generation)
        with self._lock:
            self._fake_to_real[fake] = real
        return fake

    def for_moto(self, value: str, opaque: bool) -> str:
        """An ``If-Match`` list back to moto's ETags; for an opaque key the MD5 must not match."""
        with self._lock:
            mapping = dict(self._fake_to_real)
        out = []
        for tag in value.split(","):
            bare = tag.strip().strip('"')
            if bare == "*":
                out.append(bare)
            elif bare in mapping:
                out.append(f'"{mapping[bare]}"')
            else:
                out.append(f'"{"unknown-" if opaque else ""}{bare}"')
        return ", ".join(out)


# ----------------------------------------------------------------------------- answers


@reproduces(
    "s3 TestS3SSECEncryption::test_object_retrieval_sse_c [get-obj-no-sse-c]",
    "s3 TestS3SSECEncryption::test_object_retrieval_sse_c [get-obj-sse-c-wrong-key]",
    "s3 TestS3::test_put_object_storage_class[GLACIER-False] [get-object]",
    "s3 TestS3::test_put_object_storage_class[DEEP_ARCHIVE-False] [get-object]",
    not_recorded=(
        "a key-MD5 header that does not match the key (400 InvalidArgument, as documented); "
        "Intelligent-Tiering archive tiers (403 InvalidObjectState with AccessTier, as documented); "
        "a HEAD of an unrestored archived object (answered 200, as documented)"
    ),
)
def refusal(
    rule: ObjectRule, op: str, headers: Mapping[str, str]
) -> tuple[int, str, str, dict[str, str]] | None:
    """(status, code, message, extra XML fields) when AWS refuses before reading: SSE-C, archive."""
    if rule.sse_c_key is not None:
        given = [headers.get(n) for n in SSE_C_HEADERS]
        if not all(given):
            return (
                400,
                "InvalidRequest",
                (
                    "The object was stored using a form of Server Side Encryption. "
                    "The correct parameters must be provided to retrieve the object."
                ),
                {},
            )
        try:
            raw = base64.b64decode(given[1] or "", validate=True)
        except binascii.Error:
            return 400, "InvalidArgument", "Invalid base64 customer key", {}
        if base64.b64encode(hashlib.md5(raw).digest()).decode() != given[2]:
            return (
                400,
                "InvalidArgument",
                ("The calculated MD5 hash of the key did not match the hash that was provided."),
                {},
            )
        if given[0] != "AES256" or raw != rule.sse_c_key:
            return 403, "AccessDenied", SSE_C_WRONG_KEY, {}
    if op != "HEAD" and rule.archived:
        extra = {"StorageClass": rule.storage_class or "GLACIER"}
        if rule.archive_status:
            extra["AccessTier"] = rule.archive_status
        return 403, "InvalidObjectState", "The operation is not valid for the object's storage class", extra
    return None


@reproduces(
    "api TestS3BucketEncryption::test_s3_bucket_encryption_sse_kms [put-object-encrypted]",
    "s3 TestS3SSECEncryption::test_put_object_lifecycle_with_sse_c [head-obj-sse-c]",
    "s3 TestS3::test_put_object_storage_class[STANDARD-True] [get-object]",
    "s3 TestS3::test_put_object_storage_class[GLACIER_IR-True] [get-object]",
    "s3 TestS3::test_s3_copy_object_storage_class [head-object]",
    not_recorded=(
        'the x-amz-restore value beyond ongoing-request="false" (asserted only), the in-progress form '
        'ongoing-request="true", and x-amz-archive-status: kept as AWS documents them'
    ),
)
def dress(out: dict[str, str], rule: ObjectRule, status: int, etags: Etags) -> str:
    """Turn moto's GET/HEAD headers for a configured key into AWS's; returns moto's ETag.

    Checksum headers are removed (the proxy owns them for configured keys and
    adds its own only when checksum mode was asked for).
    """
    for name in list(out):
        low = name.lower()
        if low.startswith("x-amz-checksum-") or low == "x-amz-sdk-checksum-algorithm":
            del out[name]
    etag_name = next((k for k in out if k.lower() == "etag"), "ETag")
    real = out.get(etag_name, "").strip('"')
    if real:
        out[etag_name] = f'"{etags.for_client(real, rule)}"'
    if status == 412:
        return real
    if rule.encryption:
        out["x-amz-server-side-encryption"] = rule.encryption
        if rule.encryption.startswith("aws:kms"):
            out["x-amz-server-side-encryption-aws-kms-key-id"] = KMS_KEY_ARN
    if rule.sse_c_key is not None:
        out["x-amz-server-side-encryption-customer-algorithm"] = "AES256"
        out["x-amz-server-side-encryption-customer-key-md5"] = base64.b64encode(
            hashlib.md5(rule.sse_c_key).digest()
        ).decode()
    if rule.storage_class and rule.storage_class != "STANDARD":
        out["x-amz-storage-class"] = rule.storage_class
    if rule.archive_status and rule.restore != "done":
        out["x-amz-archive-status"] = rule.archive_status
    if rule.restore == "ongoing":
        out["x-amz-restore"] = 'ongoing-request="true"'
    elif rule.restore == "done":
        out["x-amz-restore"] = f'ongoing-request="false", expiry-date="{EXPIRY}"'
    return real


@reproduces(
    "list TestS3ListObjectsV2::test_list_objects_v2_with_prefix [list-objects-v2-1]",
    not_recorded="OptionalObjectAttributes=RestoreStatus: the RestoreStatus element is as AWS documents it",
)
def rewrite_listing(
    xml: bytes,
    headers: Mapping[str, str],
    rule_for: Callable[[str], ObjectRule | None],
    etags: Etags,
    *,
    assign: bool = False,
) -> bytes:
    """Dress the ``<Contents>`` of configured keys: ETag, StorageClass, checksum, restore status.

    With ``assign``, an unconfigured key listed without a checksum gets S3's
    default CRC64NVME FULL_OBJECT (see :func:`support.awsparts.assigned_rule`).
    """
    ET.register_namespace("", NS)
    root = ET.fromstring(xml)
    ns = root.tag[: root.tag.index("}") + 1] if root.tag.startswith("{") else ""
    encoded = (root.findtext(f"{ns}EncodingType") or "").lower() == "url"
    restore_status = "restorestatus" in headers.get("x-amz-optional-object-attributes", "").lower()
    for item in root.iter(f"{ns}Contents"):
        raw_key = item.findtext(f"{ns}Key") or ""
        rule = rule_for(unquote_plus(raw_key) if encoded else raw_key)
        if rule is None:
            if assign and item.find(f"{ns}ChecksumAlgorithm") is None:
                ET.SubElement(item, f"{ns}ChecksumAlgorithm").text = "CRC64NVME"
                ET.SubElement(item, f"{ns}ChecksumType").text = "FULL_OBJECT"
            continue
        etag_el = item.find(f"{ns}ETag")
        if etag_el is not None and etag_el.text:
            etag_el.text = f'"{etags.for_client(etag_el.text.strip(chr(34)), rule)}"'
        for name in ("ChecksumAlgorithm", "ChecksumType"):
            for el in item.findall(f"{ns}{name}"):
                item.remove(el)
        if rule.checksum:
            ET.SubElement(item, f"{ns}ChecksumAlgorithm").text = rule.checksum
            ET.SubElement(item, f"{ns}ChecksumType").text = rule.checksum_type
        if rule.storage_class:
            sc = item.find(f"{ns}StorageClass")
            if sc is None:
                sc = ET.SubElement(item, f"{ns}StorageClass")
            sc.text = rule.storage_class
        if restore_status and rule.restore is not None:
            rs = ET.SubElement(item, f"{ns}RestoreStatus")
            ET.SubElement(rs, f"{ns}IsRestoreInProgress").text = str(rule.restore == "ongoing").lower()
            if rule.restore == "done":
                ET.SubElement(rs, f"{ns}RestoreExpiryDate").text = EXPIRY_ISO
    return b'<?xml version="1.0" encoding="UTF-8"?>\n' + ET.tostring(root)
