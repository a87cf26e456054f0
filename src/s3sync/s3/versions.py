"""Point in time (``--version-at``): the bucket as it was at an instant, from ListObjectVersions.

S3 lists versions in key order (UTF-8 bytes, as ListObjectsV2), and within a
key newest first, delete markers interleaved with versions in that same order.
For an instant T, a key's state is its newest entry with ``LastModified <= T``:
a version (then that version id is what we GET) or a delete marker (then the
key did not exist at T). Keys whose every entry is newer than T did not exist
either. :func:`at_instant` walks the pages once, keeping only the current key's
decision between pages (a key's versions may span pages), so memory is one
page however big the bucket's history is.

The lean path parses the XML here; botocore returns versions and delete
markers as two lists. Either way each page is put in S3's order by
:func:`_s3_order` (key, then newest first, the ``IsLatest`` entry first on a
same-second tie), which also copes with servers that do not interleave.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import re
import xml.etree.ElementTree as ET
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from typing import Any
from urllib.parse import unquote_plus

from s3sync.config.units import UnitParseError
from s3sync.errors import RetryableError
from s3sync.model import ObjectMeta, normalize_etag
from s3sync.s3.meta import timestamp


def parse_instant(text: str, flag: str = "--version-at") -> float:
    """RFC 3339 (``2026-11-30T12:00:00Z``, an offset, or fractional seconds) → unix seconds.

    A timestamp without a zone is refused rather than guessed: UTC and local
    time differ by hours, and rewinding to the wrong hour is silent.
    """
    raw = text.strip()
    try:
        parsed = dt.datetime.fromisoformat(raw.replace("z", "Z").replace("Z", "+00:00"))
    except ValueError:
        raise UnitParseError(
            flag, f"{text!r} is not an RFC 3339 timestamp (e.g. 2026-11-30T12:00:00Z)"
        ) from None
    if parsed.tzinfo is None or "T" not in raw.upper():
        raise UnitParseError(
            flag, f"{text!r} needs a date, a time and a zone (e.g. 2026-11-30T12:00:00Z or +01:00)"
        )
    return parsed.timestamp()


@dataclass(frozen=True, slots=True)
class VersionEntry:
    """One row of ListObjectVersions: a version or a delete marker."""

    key: str
    version_id: str | None
    last_modified: float
    delete_marker: bool = False
    etag: str | None = None
    size: int = 0
    is_latest: bool = False


@dataclass(frozen=True, slots=True)
class VersionsPage:
    entries: list[VersionEntry]
    truncated: bool
    next_key_marker: str | None
    next_version_marker: str | None


def _tag(el: ET.Element) -> str:
    return el.tag.rsplit("}", 1)[-1]


#: Control characters XML 1.0 cannot carry, and where :func:`_readable` parks them.
_XML_ILLEGAL = re.compile(rb"[\x00-\x08\x0b\x0c\x0e-\x1f]")
_PARK = 0xF700  # a private-use block: U+F700 + the byte


def _readable(body: bytes) -> tuple[bytes, bool]:
    """``body`` with raw control characters parked in private-use code points, if any.

    Both paths ask for ``encoding-type=url``, which AWS honours (keys come
    percent-encoded). A server that ignores it (moto) sends a key such as
    ``a\x01b`` raw, which no XML parser accepts; parking the byte lets the page
    parse, and :func:`_unpark` gives the key back exactly. Only done when the body
    holds no such code point already, so nothing real is mistaken for a parked byte.
    """
    if not _XML_ILLEGAL.search(body) or "\uf700".encode()[:2] in body:
        return body, False
    return _XML_ILLEGAL.sub(lambda m: chr(_PARK + m[0][0]).encode(), body), True


def _unpark(text: str) -> str:
    return re.sub("[\uf700-\uf71f]", lambda m: chr(ord(m[0]) - _PARK), text)


def parse_versions_page(body: bytes) -> VersionsPage:
    """ListVersionsResult XML → entries in document order (keys URL-decoded if encoded)."""
    body, parked = _readable(body)
    try:
        root = ET.fromstring(body)
    except ET.ParseError as exc:
        raise RetryableError(f"ListObjectVersions: malformed XML ({exc})") from exc
    entries: list[VersionEntry] = []
    fields: dict[str, str] = {}
    encoded = truncated = False
    for child in root:
        tag = _tag(child)
        if tag in ("Version", "DeleteMarker"):
            item = {_tag(f): f.text or "" for f in child}
            entries.append(
                VersionEntry(
                    key=item.get("Key", ""),
                    version_id=item.get("VersionId") or None,
                    last_modified=timestamp(item.get("LastModified")),
                    delete_marker=tag == "DeleteMarker",
                    etag=normalize_etag(item.get("ETag")),
                    size=int(item.get("Size") or 0),
                    is_latest=item.get("IsLatest", "").lower() == "true",
                )
            )
        elif tag == "IsTruncated":
            truncated = (child.text or "").strip().lower() == "true"
        elif tag == "EncodingType":
            encoded = (child.text or "").strip().lower() == "url"
        else:
            fields[tag] = child.text or ""
    if encoded:
        entries = [_decoded(e) for e in entries]
    elif parked:
        entries = [dataclasses.replace(e, key=_unpark(e.key)) for e in entries]
        fields = {name: _unpark(value) for name, value in fields.items()}
    _s3_order(entries)
    next_key = fields.get("NextKeyMarker") or None
    if encoded and next_key is not None:
        next_key = unquote_plus(next_key)
    return VersionsPage(entries, truncated, next_key, fields.get("NextVersionIdMarker") or None)


def _decoded(e: VersionEntry) -> VersionEntry:
    return VersionEntry(
        unquote_plus(e.key), e.version_id, e.last_modified, e.delete_marker, e.etag, e.size, e.is_latest
    )


def page_from_boto(page: dict[str, Any]) -> VersionsPage:
    """botocore's two lists → one list in S3's order (see the module docstring)."""
    entries = [
        VersionEntry(
            key=v["Key"],
            version_id=v.get("VersionId"),
            last_modified=timestamp(v.get("LastModified")),
            etag=normalize_etag(v.get("ETag")),
            size=int(v.get("Size") or 0),
            is_latest=bool(v.get("IsLatest")),
        )
        for v in page.get("Versions", ()) or ()
    ] + [
        VersionEntry(
            key=m["Key"],
            version_id=m.get("VersionId"),
            last_modified=timestamp(m.get("LastModified")),
            delete_marker=True,
            is_latest=bool(m.get("IsLatest")),
        )
        for m in page.get("DeleteMarkers", ()) or ()
    ]
    _s3_order(entries)
    return VersionsPage(
        entries,
        bool(page.get("IsTruncated")),
        page.get("NextKeyMarker") or None,
        page.get("NextVersionIdMarker") or None,
    )


def _s3_order(entries: list[VersionEntry]) -> None:
    """Keys by UTF-8 bytes, then newest first; on a same-second tie the ``IsLatest`` entry first.

    Stable, so document order decides what is left. Some servers (moto) list all
    versions before all delete markers instead of interleaving them, which a
    version and a marker written in the same second would otherwise get wrong.
    """
    entries.sort(key=lambda e: (e.key.encode("utf-8", "surrogatepass"), -e.last_modified, not e.is_latest))


PageFn = Callable[[str | None, str | None], Awaitable[VersionsPage]]


async def at_instant(fetch_page: PageFn, instant: float) -> AsyncIterator[ObjectMeta]:
    """The objects that existed at ``instant``, in key order, each pinned to its version id.

    ``fetch_page(key_marker, version_marker)`` returns the next page; the walk
    carries only "the key decided last" across pages.
    """
    decided: str | None = None  # the last key whose state at `instant` is known
    key_marker: str | None = None
    version_marker: str | None = None
    while True:
        page = await fetch_page(key_marker, version_marker)
        for e in page.entries:
            if e.key == decided or e.last_modified > instant:
                continue  # an older version of a decided key, or a version from after T
            decided = e.key
            if not e.delete_marker:  # a delete marker: the key did not exist at T
                yield ObjectMeta(e.key, e.size, e.etag, e.last_modified, version_id=e.version_id)
        if not page.truncated or page.next_key_marker is None:
            return
        key_marker, version_marker = page.next_key_marker, page.next_version_marker


__all__ = [
    "VersionEntry",
    "VersionsPage",
    "at_instant",
    "page_from_boto",
    "parse_instant",
    "parse_versions_page",
]
