"""ListObjectsV2 responses → ObjectMeta, for both paths.

The lean path parses the XML itself (ElementTree, C-fast) into the dict shape
botocore gives the aioboto3 path, so one :func:`meta_from_listing` serves both.
"""

from __future__ import annotations

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
    )
