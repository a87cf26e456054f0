"""ListObjectsV2 responses → ObjectMeta, for both paths.

The lean path parses the XML itself (ElementTree, C-fast) into the dict shape
botocore gives the aioboto3 path, so one :func:`meta_from_listing` serves both.

Both paths ask for ``RestoreStatus`` (``x-amz-optional-object-attributes``): S3
then lists ``IsRestoreInProgress``/``RestoreExpiryDate`` for an object being or
having been restored, and nothing for one never restored. That silence means
"not restored" only where the server honours the attribute (AWS; a server that
listed a RestoreStatus at least once), so :class:`RestoreStatusReader` marks it
only there, and :func:`archived_unrestored` lets the plan skip such an archived
object without a GET. Elsewhere the GET decides, as before.
"""

from __future__ import annotations

import datetime as dt
import email.utils
import re
import xml.etree.ElementTree as ET
from collections.abc import Mapping
from typing import Any
from urllib.parse import unquote_plus

from s3sync.errors import RetryableError
from s3sync.model import ObjectMeta, normalize_etag
from s3sync.s3.meta import timestamp

_XML_ILLEGAL = re.compile(rb"[\x00-\x08\x0b\x0c\x0e-\x1f]")


#: The ``<Contents>`` fields we keep (StorageClass: archived objects; ChecksumType: composite or not).
_FIELDS = frozenset(
    {"Key", "ETag", "LastModified", "Size", "ChecksumAlgorithm", "ChecksumType", "StorageClass"}
)


_LOCAL_NAMES: dict[str, str] = {}  # '{ns}Key' -> 'Key': a page repeats a dozen tags thousands of times


def _strip_ns(tag: str) -> str:
    name = _LOCAL_NAMES.get(tag)
    if name is None:
        name = tag.rsplit("}", 1)[-1]
        if len(_LOCAL_NAMES) < 256:  # S3's tag set is small; a hostile server cannot grow this
            _LOCAL_NAMES[tag] = name
    return name


def parse_list_xml(body: bytes) -> dict[str, Any]:
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
                if ftag in _FIELDS:
                    item[ftag] = f.text or ""
                elif ftag == "RestoreStatus":
                    item[ftag] = {_strip_ns(g.tag): _restore_field(_strip_ns(g.tag), g.text) for g in f}
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


def parse_list_page(body: bytes) -> dict[str, Any]:
    """Parse one page, tolerating the control characters some servers echo raw.

    Keys and prefixes come URL-encoded (encoding-type=url), but some servers (moto) echo
    StartAfter raw: a control character there is not legal XML 1.0. Drop such characters
    (none can occur in an encoded key) and parse again.
    """
    try:
        return parse_list_xml(body)
    except ET.ParseError:
        pass
    try:
        return parse_list_xml(_XML_ILLEGAL.sub(b"", body))
    except ET.ParseError as exc:
        raise RetryableError(f"ListObjectsV2: malformed XML ({exc})") from exc


def _restore_field(tag: str, text: str | None) -> Any:
    value = (text or "").strip()
    return value.lower() == "true" if tag == "IsRestoreInProgress" else value


#: The classes whose objects must be restored before a GET (Intelligent-Tiering's archive tiers
#: are not in the listing's StorageClass: a GET still tells those).
ARCHIVED_CLASSES = frozenset({"GLACIER", "DEEP_ARCHIVE"})
#: The request header that asks ListObjectsV2 for restore status (the lean path sends it as is).
RESTORE_STATUS = {"x-amz-optional-object-attributes": "RestoreStatus"}
#: ``ObjectMeta.restore`` of a listed object the server says was never restored.
NOT_RESTORED = ""


class RestoreStatusReader:
    """Marks the archived objects of a page as not restored, where that silence can be trusted.

    ``trusted`` from the start for AWS endpoints; for others once any page has
    listed a ``RestoreStatus`` (the server honours the attribute).
    """

    def __init__(self, trusted: bool) -> None:
        self.trusted = trusted

    def read(self, page: dict[str, Any]) -> dict[str, Any]:
        items = page.get("Contents") or ()
        if not self.trusted and any("RestoreStatus" in i for i in items):
            self.trusted = True
        if self.trusted:
            for item in items:
                if (
                    "RestoreStatus" not in item
                    and (item.get("StorageClass") or "").upper() in ARCHIVED_CLASSES
                ):
                    item["RestoreStatus"] = {}
        return page


def restore_header(status: Mapping[str, Any] | None) -> str | None:
    """A listing's RestoreStatus in ``x-amz-restore`` form; :data:`NOT_RESTORED` for ``{}``."""
    if status is None:
        return None
    if not status:
        return NOT_RESTORED
    if status.get("IsRestoreInProgress"):
        return 'ongoing-request="true"'
    expiry = status.get("RestoreExpiryDate")
    if isinstance(expiry, str) and expiry:
        try:
            expiry = dt.datetime.fromisoformat(expiry.replace("Z", "+00:00"))
        except ValueError:
            expiry = None
    if isinstance(expiry, dt.datetime):
        when = expiry.astimezone(dt.UTC) if expiry.tzinfo else expiry.replace(tzinfo=dt.UTC)
        return f'ongoing-request="false", expiry-date="{email.utils.format_datetime(when, usegmt=True)}"'
    return 'ongoing-request="false"'


def archived_unrestored(meta: ObjectMeta) -> str | None:
    """Why a GET of this listed object can only be refused (archived, not restored), or None."""
    if (meta.storage_class or "").upper() not in ARCHIVED_CLASSES or meta.restore is None:
        return None
    if meta.restore == NOT_RESTORED:
        return f"archived ({meta.storage_class}), not restored (listed RestoreStatus): no GET"
    if 'ongoing-request="true"' in meta.restore:
        return f"archived ({meta.storage_class}), restore in progress (listed RestoreStatus): no GET"
    return None


def xml_field(text: str, name: str) -> str:
    """The text of the first ``<name>`` element of an S3 error body (no full parse needed)."""
    start = text.find(f"<{name}>")
    end = text.find(f"</{name}>")
    if start < 0 or end < 0:
        return ""
    return text[start + len(name) + 2 : end]


def meta_from_listing(item: Mapping[str, Any]) -> ObjectMeta:
    return ObjectMeta(
        key=item["Key"],
        size=int(item.get("Size", 0)),
        etag=normalize_etag(item.get("ETag")),
        last_modified=timestamp(item.get("LastModified")),
        checksum_algorithm=(item.get("ChecksumAlgorithm") or [None])[0],
        checksum_type=item.get("ChecksumType") or None,
        storage_class=item.get("StorageClass") or None,
        restore=restore_header(item.get("RestoreStatus")),
    )
