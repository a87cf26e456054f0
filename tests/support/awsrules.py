"""What AWS S3 answers, as pure functions: the rules behind :mod:`support.awsproxy`.

Each function takes moto's answer (headers, listing XML) and one key's
:class:`ObjectRule` and gives AWS's: opaque KMS ETags, encryption, storage
class and restore headers, checksum values, the errors AWS returns before it
reads a byte (SSE-C, archived objects). No I/O here, so the proxy's own logic
stays a thin loop around them.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import threading
import xml.etree.ElementTree as ET
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
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

    @property
    def opaque_etag(self) -> bool:
        return self.encryption in ("aws:kms", "aws:kms:dsse") or self.sse_c_key is not None

    @property
    def archived(self) -> bool:
        """True while a GET must fail with InvalidObjectState."""
        cold = self.storage_class in ARCHIVE_CLASSES or self.archive_status is not None
        return cold and self.restore != "done"


# ----------------------------------------------------------------------------- checksums


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


def s3_checksum(algorithm: str, data: bytes, *, part_size: int | None = None) -> str:
    """The header value: base64 of the full-object checksum, or composite ``<b64>-N``."""
    if part_size is None:
        return base64.b64encode(checksum_of(algorithm, data)).decode()
    parts = [data[i : i + part_size] for i in range(0, len(data), part_size)] or [b""]
    joined = b"".join(checksum_of(algorithm, p) for p in parts)
    return f"{base64.b64encode(checksum_of(algorithm, joined)).decode()}-{len(parts)}"


def rule_checksum(rule: ObjectRule, data: bytes) -> str:
    """The value the proxy announces for ``rule`` (deliberately wrong when asked)."""
    assert rule.checksum is not None
    body = data + b"!" if rule.wrong_checksum else data
    return s3_checksum(rule.checksum, body, part_size=rule.part_size)


# ----------------------------------------------------------------------------- ETags


def opaque_etag(real: str) -> str:
    """A KMS-style ETag: same shape as ``real`` (``-N`` kept), not an MD5 of the body."""
    digest = hashlib.md5(b"kms-opaque:" + real.encode()).hexdigest()
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
        fake = opaque_etag(real)
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
            return 403, "AccessDenied", "Access Denied", {}
    if op != "HEAD" and rule.archived:
        extra = {"StorageClass": rule.storage_class or "GLACIER"}
        if rule.archive_status:
            extra["AccessTier"] = rule.archive_status
        return 403, "InvalidObjectState", "The operation is not valid for the object's storage class", extra
    return None


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


def rewrite_listing(
    xml: bytes, headers: Mapping[str, str], rule_for: Callable[[str], ObjectRule | None], etags: Etags
) -> bytes:
    """Dress the ``<Contents>`` of configured keys: ETag, StorageClass, checksum, restore status."""
    ET.register_namespace("", NS)
    root = ET.fromstring(xml)
    ns = root.tag[: root.tag.index("}") + 1] if root.tag.startswith("{") else ""
    encoded = (root.findtext(f"{ns}EncodingType") or "").lower() == "url"
    restore_status = "restorestatus" in headers.get("x-amz-optional-object-attributes", "").lower()
    for item in root.iter(f"{ns}Contents"):
        raw_key = item.findtext(f"{ns}Key") or ""
        rule = rule_for(unquote_plus(raw_key) if encoded else raw_key)
        if rule is None:
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
