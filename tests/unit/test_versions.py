"""--version-at: RFC 3339 parsing, ListObjectVersions pages, and the point-in-time walk."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from s3sync.errors import ConfigError
from s3sync.s3.versions import (
    VersionEntry,
    VersionsPage,
    at_instant,
    page_from_boto,
    parse_instant,
    parse_versions_page,
)

XML = b"""<?xml version="1.0" encoding="UTF-8"?>
<ListVersionsResult xmlns="http://s3.amazonaws.com/doc/2006-03-01/">
<IsTruncated>true</IsTruncated><EncodingType>url</EncodingType>
<NextKeyMarker>b%20c</NextKeyMarker><NextVersionIdMarker>v9</NextVersionIdMarker>
<Version><Key>a</Key><VersionId>v2</VersionId><IsLatest>true</IsLatest>
<LastModified>2026-01-01T00:00:10.000Z</LastModified><ETag>"e2"</ETag><Size>2</Size></Version>
<DeleteMarker><Key>a</Key><VersionId>m1</VersionId><IsLatest>false</IsLatest>
<LastModified>2026-01-01T00:00:05.000Z</LastModified></DeleteMarker>
<Version><Key>a</Key><VersionId>v1</VersionId><IsLatest>false</IsLatest>
<LastModified>2026-01-01T00:00:01.000Z</LastModified><ETag>"e1"</ETag><Size>1</Size></Version>
<Version><Key>b%20c</Key><VersionId>null</VersionId><IsLatest>true</IsLatest>
<LastModified>2026-01-01T00:00:01.000Z</LastModified><ETag>"e3"</ETag><Size>3</Size></Version>
</ListVersionsResult>"""

T0 = parse_instant("2026-01-01T00:00:00Z")


class TestParseInstant:
    """RFC 3339 with a zone; anything else names the flag."""

    @pytest.mark.parametrize(
        ("text", "offset"),
        [
            ("2026-01-01T00:00:00Z", 0),
            ("2026-01-01T00:00:00z", 0),
            ("2026-01-01T01:00:00+01:00", 0),
            ("2026-01-01T00:00:07.5Z", 7.5),
        ],
    )
    def test_valid(self, text: str, offset: float) -> None:
        assert parse_instant(text) == pytest.approx(T0 + offset)

    @pytest.mark.parametrize("text", ["2026-01-01", "2026-01-01T00:00:00", "yesterday", ""])
    def test_invalid_names_the_flag(self, text: str) -> None:
        with pytest.raises(ConfigError, match=r"^--version-at: "):
            parse_instant(text)


class TestPages:
    """Both parsers give entries in S3's order, keys decoded."""

    def test_xml(self) -> None:
        page = parse_versions_page(XML)
        assert [(e.key, e.version_id, e.delete_marker) for e in page.entries] == [
            ("a", "v2", False),
            ("a", "m1", True),
            ("a", "v1", False),
            ("b c", "null", False),
        ]
        assert (page.truncated, page.next_key_marker, page.next_version_marker) == (True, "b c", "v9")

    def test_boto_lists_are_merged(self) -> None:
        """botocore keeps versions and markers apart; the merge restores newest-first per key."""
        page = page_from_boto(
            {
                "Versions": [
                    {"Key": "a", "VersionId": "v2", "LastModified": T0 + 10, "ETag": '"e2"', "Size": 2},
                    {"Key": "a", "VersionId": "v1", "LastModified": T0 + 1, "ETag": '"e1"', "Size": 1},
                ],
                "DeleteMarkers": [{"Key": "a", "VersionId": "m1", "LastModified": T0 + 5}],
                "IsTruncated": False,
            }
        )
        assert [e.version_id for e in page.entries] == ["v2", "m1", "v1"]

    def test_same_second_tie_puts_the_latest_first(self) -> None:
        """A put and a delete in the same second (moto lists markers after versions)."""
        page = page_from_boto(
            {
                "Versions": [{"Key": "k", "VersionId": "v", "LastModified": T0, "IsLatest": False}],
                "DeleteMarkers": [{"Key": "k", "VersionId": "m", "LastModified": T0, "IsLatest": True}],
            }
        )
        assert [e.version_id for e in page.entries] == ["m", "v"]


async def _walk(pages: list[list[VersionEntry]], instant: float) -> list[tuple[str, str | None]]:
    calls: list[tuple[str | None, str | None]] = []

    async def fetch(key_marker: str | None, version_marker: str | None) -> VersionsPage:
        calls.append((key_marker, version_marker))
        i = len(calls) - 1
        more = i + 1 < len(pages)
        return VersionsPage(pages[i], more, f"k{i}" if more else None, f"v{i}" if more else None)

    out = [(m.key, m.version_id) async for m in at_instant(fetch, instant)]
    assert calls[0] == (None, None) and all(c[0] is not None for c in calls[1:])
    return out


def v(key: str, vid: str, t: float, marker: bool = False) -> VersionEntry:
    return VersionEntry(key, vid, T0 + t, marker, None if marker else f"e-{vid}", 1)


class TestAtInstant:
    """Each key's newest entry at or before the instant; a delete marker hides the key."""

    async def test_picks_the_version_current_at_the_instant(self) -> None:
        page = [v("a", "a3", 30), v("a", "a2", 20), v("a", "a1", 10), v("b", "b1", 25), v("c", "c1", 5)]
        assert await _walk([page], T0 + 22) == [("a", "a2"), ("c", "c1")]

    async def test_delete_marker_before_instant_hides_the_key(self) -> None:
        page = [v("a", "a2", 30), v("a", "m", 20, marker=True), v("a", "a1", 10), v("b", "b1", 1)]
        assert await _walk([page], T0 + 25) == [("b", "b1")]
        assert await _walk([page], T0 + 15) == [("a", "a1"), ("b", "b1")]

    async def test_a_decision_carries_across_pages(self) -> None:
        """A key decided by a marker at the end of one page stays decided on the next page."""
        pages = [[v("a", "a3", 30), v("a", "m", 20, marker=True)], [v("a", "a1", 10), v("b", "b1", 1)]]
        assert await _walk(pages, T0 + 25) == [("b", "b1")]

    @given(
        st.lists(
            st.tuples(st.sampled_from("abcd"), st.integers(0, 50), st.booleans()),
            max_size=30,
        ),
        st.integers(0, 50),
        st.integers(1, 5),
    )
    async def test_matches_a_brute_force_model(
        self, raw: list[tuple[str, int, bool]], at: int, page_size: int
    ) -> None:
        """However the history is paged, the walk equals "newest entry <= T per key, unless a marker"."""
        entries = sorted(
            (v(k, f"{k}{i}", t, m) for i, (k, t, m) in enumerate(raw)),
            key=lambda e: (e.key, -e.last_modified),
        )
        # one entry per (key, second): S3's order is then unambiguous
        unique: dict[tuple[str, float], VersionEntry] = {}
        for e in entries:
            unique.setdefault((e.key, e.last_modified), e)
        entries = list(unique.values())
        expected = []
        for key in sorted({e.key for e in entries}):
            older = [e for e in entries if e.key == key and e.last_modified <= T0 + at]
            if older and not older[0].delete_marker:
                expected.append((key, older[0].version_id))
        pages = [entries[i : i + page_size] for i in range(0, len(entries), page_size)] or [[]]
        assert await _walk(pages, T0 + at) == expected
