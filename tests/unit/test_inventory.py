"""The S3 Inventory reader and its external sort, against reports built as AWS lays them out.

The "bucket" here is a dict served through the two callables the reader takes
(list keys in order, stream an object's bytes): the same stand-in S3 for every
test, so what is judged is only the reader.
"""

from __future__ import annotations

import datetime as dt
import gzip
import hashlib
import json
import random
import sys
from collections.abc import AsyncIterator
from pathlib import Path
from urllib.parse import quote_plus, unquote_plus

import pytest
from hypothesis import given
from hypothesis import strategies as st
from support.inventorykit import VERSIONED_SCHEMA, Obj, Report, build_report

from s3sync.model import ObjectMeta
from s3sync.s3.extsort import ExternalSorter
from s3sync.s3.inventory import InventoryError, InventoryReader, parse_location
from s3sync.s3.inventory_formats import KeyDecoder

T0 = dt.datetime(2026, 11, 30, 0, 0, tzinfo=dt.UTC)
SRC = "photos-src"


class DictS3:
    """Objects by (bucket, key); lists in UTF-8 byte order, streams in small chunks."""

    def __init__(self) -> None:
        self.objects: dict[tuple[str, str], bytes] = {}
        self.listed: list[str] = []
        self.got: list[str] = []

    def put(self, bucket: str, report: Report) -> None:
        for key, body in report.objects.items():
            self.objects[(bucket, key)] = body

    async def list_keys(self, bucket: str, prefix: str) -> AsyncIterator[str]:
        for b, k in sorted(self.objects, key=lambda bk: bk[1].encode()):
            if b == bucket and k.startswith(prefix):
                self.listed.append(k)
                yield k

    async def get_object(self, bucket: str, key: str) -> AsyncIterator[bytes]:
        self.got.append(key)
        body = self.objects[(bucket, key)]
        for i in range(0, len(body), 777):
            yield body[i : i + 777]

    def reader(self, location: str, **kw: object) -> InventoryReader:
        return InventoryReader(location, self.list_keys, self.get_object, **kw)  # type: ignore[arg-type]


def obj(key: str, size: int = 10, ts: float = 1_764_000_000.0, **kw: object) -> Obj:
    return Obj(key, size, hashlib.md5(key.encode()).hexdigest(), ts, **kw)  # type: ignore[arg-type]


async def collect(reader: InventoryReader) -> list[ObjectMeta]:
    return [m async for m in reader.objects()]


TRICKY = ["a b/with space.txt", "plus+sign", "100%/done", "ünïcode/ключ/文件.txt", "emoji/🎉", "z"]


class TestExternalSorter:
    """Bounded memory, same answer as sorted(): runs spill and merge, in levels when over fan_in."""

    def test_matches_sorted_with_many_levels(self, tmp_path: Path) -> None:
        rng = random.Random(5)
        items = [(f"k{rng.randrange(10**6):07d}", i) for i in range(5000)]
        with ExternalSorter(tmp_path, run_size=37, fan_in=3, chunk=5) as s:
            s.extend(items)
            assert s.runs == 5000 // 37
            out = list(s.sorted())
        assert out == sorted(items)
        assert list(tmp_path.iterdir()) == []  # temp dir removed

    def test_in_memory_when_small(self, tmp_path: Path) -> None:
        with ExternalSorter(tmp_path, run_size=100) as s:
            s.extend([("b", 1), ("a", 2)])
            assert list(s.sorted()) == [("a", 2), ("b", 1)]
            assert s.runs == 0

    def test_rows_sort_in_utf8_byte_order_of_their_keys(self, tmp_path: Path) -> None:
        """NUL-joined rows (key first) sort as their keys do, even when one key prefixes another."""
        keys = ["é", "z", "\U0001f389", "a/b", "a", "a b", "\uffff", "~", "a0"]
        with ExternalSorter(tmp_path, run_size=2, fan_in=2) as s:
            s.extend(f"{k}\0{len(keys) - i}\0etag" for i, k in enumerate(keys))
            out = [row.split("\0")[0] for row in s.sorted()]
        assert out == sorted(keys, key=lambda k: k.encode("utf-8"))


class TestReport:
    """The newest report is found, every data file read, keys decoded, order restored."""

    async def test_newest_of_several_reports_in_key_order(self) -> None:
        s3 = DictS3()
        old = build_report("inv", "reports", SRC, "daily", T0 - dt.timedelta(days=1), [[obj("old-only")]])
        rng = random.Random(1)
        keys = [f"d{rng.randrange(30)}/f{i}" for i in range(900)] + TRICKY
        rng.shuffle(keys)
        files = [[obj(k) for k in keys[i::3]] for i in range(3)]
        new = build_report("inv", "reports", SRC, "daily", T0, files)
        s3.put("inv", old)
        s3.put("inv", new)
        reader = s3.reader(new.location, run_size=100, source_bucket=SRC)
        got = await collect(reader)
        assert [m.key for m in got] == sorted(keys, key=lambda k: k.encode())
        assert reader.manifest is not None and reader.manifest.report == "2026-11-30T00-00Z"
        assert reader.manifest.created == T0.timestamp()
        assert reader.stats["data_files"] == 3 and reader.stats["runs"] > 3
        m = next(x for x in got if x.key == "plus+sign")
        assert (m.size, m.etag, m.last_modified) == (
            10,
            hashlib.md5(b"plus+sign").hexdigest(),
            1_764_000_000.0,
        )
        # listing stops at the first data/ key: the dated folders are all it needs
        assert sum("/data/" in k for k in s3.listed) == 1
        assert not any("/hive/" in k for k in s3.listed)
        assert not any(k in s3.got for k in old.data_keys)

    async def test_keys_encoded_with_slash_kept(self) -> None:
        s3 = DictS3()
        rep = build_report("inv", "", SRC, "cfg", T0, [[obj(k) for k in TRICKY]], slash_safe=True)
        s3.put("inv", rep)
        assert [m.key for m in await collect(s3.reader(rep.location))] == sorted(TRICKY, key=str.encode)

    async def test_location_may_name_the_manifest(self) -> None:
        s3 = DictS3()
        old = build_report("inv", "p", SRC, "cfg", T0 - dt.timedelta(days=7), [[obj("older")]])
        s3.put("inv", old)
        s3.put("inv", build_report("inv", "p", SRC, "cfg", T0, [[obj("newer")]]))
        got = await collect(s3.reader(f"s3://inv/{old.manifest_key}"))
        assert [m.key for m in got] == ["older"]

    async def test_versioned_report_keeps_latest_live_versions(self) -> None:
        s3 = DictS3()
        rows = [
            obj("kept", version_id="v2", is_latest=True, checksum_algorithm="SHA256"),
            obj("kept", size=99, version_id="v1", is_latest=False),
            obj("gone", version_id="v3", is_latest=True, is_delete_marker=True),
            obj("gone", version_id="v2", is_latest=False),
        ]
        rep = build_report("inv", "x", SRC, "all", T0, [rows], schema=VERSIONED_SCHEMA)
        s3.put("inv", rep)
        entries = [e async for e in s3.reader(rep.location).entries()]
        assert [(e.meta.key, e.meta.size, e.version_id) for e in entries] == [("kept", 10, "v2")]
        assert entries[0].meta.checksum_algorithm == "SHA256" and entries[0].storage_class == "STANDARD"
        assert entries[0].meta.version_id is None  # GETs fetch the current object, not a day-old version

    async def test_prefix_and_accept_filter_before_sorting(self) -> None:
        s3 = DictS3()
        keys = ["a/1", "a/2", "b/1", "a/3"]
        rep = build_report("inv", "x", SRC, "c", T0, [[obj(k) for k in keys]])
        s3.put("inv", rep)
        reader = s3.reader(rep.location, prefix="a/", accept=lambda k: k != "a/2")
        assert [m.key for m in await collect(reader)] == ["a/1", "a/3"]
        assert reader.stats["kept"] == 2 and reader.stats["rows"] == 4

    async def test_duplicate_key_newest_wins(self) -> None:
        s3 = DictS3()
        rep = build_report("inv", "x", SRC, "c", T0, [[obj("k", 1, ts=100.0)], [obj("k", 2, ts=200.0)]])
        s3.put("inv", rep)
        assert [(m.key, m.size) for m in await collect(s3.reader(rep.location))] == [("k", 2)]

    @pytest.mark.parametrize("fmt", ["Parquet", "ORC"])
    async def test_columnar_formats(self, fmt: str) -> None:
        pytest.importorskip("pyarrow")
        s3 = DictS3()
        keys = ["b", "with space", "plus+sign", "ünï/ключ", "a"]
        rep = build_report(
            "inv",
            "x",
            SRC,
            "c",
            T0,
            [[obj(k) for k in keys[:2]], [obj(k) for k in keys[2:]]],
            file_format=fmt,
        )
        s3.put("inv", rep)
        got = await collect(s3.reader(rep.location))
        assert [m.key for m in got] == sorted(keys, key=str.encode)
        assert got[0].last_modified == 1_764_000_000.0 and got[0].etag == hashlib.md5(b"a").hexdigest()

    async def test_columnar_without_pyarrow_says_how_to_install(
        self, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        pytest.importorskip("pyarrow")
        s3 = DictS3()
        rep = build_report("inv", "x", SRC, "c", T0, [[obj("a")]], file_format="Parquet")
        s3.put("inv", rep)
        monkeypatch.setitem(sys.modules, "pyarrow.parquet", None)  # what an absent extra looks like to import
        with pytest.raises(InventoryError, match=r"s3sync\[inventory\]"):
            await collect(s3.reader(rep.location))


class TestBrokenReports:
    """A report that cannot be trusted fails the pass before a single object is yielded."""

    @staticmethod
    def _report(s3: DictS3) -> Report:
        rep = build_report("inv", "x", SRC, "c", T0, [[obj("a"), obj("b")], [obj("c")]])
        s3.put("inv", rep)
        return rep

    async def _fails(self, s3: DictS3, rep: Report, match: str, **kw: object) -> None:
        yielded: list[str] = []
        with pytest.raises(InventoryError, match=match):
            async for m in s3.reader(rep.location, **kw).objects():
                yielded.append(m.key)
        assert yielded == []

    async def test_corrupt_data_file(self) -> None:
        s3 = DictS3()
        rep = self._report(s3)
        key = rep.data_keys[1]
        body = bytearray(s3.objects[("inv", key)])
        body[len(body) // 2] ^= 0xFF
        s3.objects[("inv", key)] = bytes(body)
        await self._fails(s3, rep, "does not match the manifest's MD5checksum")

    async def test_truncated_gzip_with_matching_md5(self) -> None:
        s3 = DictS3()
        rep = build_report("inv", "x", SRC, "c", T0, [[obj(f"k{i}") for i in range(200)]])
        key = rep.data_keys[0]
        cut = rep.objects[key][:-20]
        rep.objects[key] = cut
        doc = json.loads(rep.objects[rep.manifest_key])
        doc["files"][0]["MD5checksum"] = hashlib.md5(cut).hexdigest()
        rep.objects[rep.manifest_key] = json.dumps(doc).encode()
        rep.objects[rep.manifest_key.replace(".json", ".checksum")] = (
            hashlib.md5(rep.objects[rep.manifest_key]).hexdigest().encode()
        )
        s3.put("inv", rep)
        await self._fails(s3, rep, "ends early")

    async def test_manifest_checksum_mismatch(self) -> None:
        s3 = DictS3()
        rep = self._report(s3)
        s3.objects[("inv", rep.manifest_key.replace(".json", ".checksum"))] = b"0" * 32
        await self._fails(s3, rep, "manifest.checksum")

    async def test_report_of_another_bucket(self) -> None:
        s3 = DictS3()
        rep = self._report(s3)
        await self._fails(s3, rep, "report of bucket 'photos-src', not of 'other'", source_bucket="other")

    async def test_no_report(self) -> None:
        s3 = DictS3()
        rep = self._report(s3)
        for k in list(s3.objects):
            if k[1].endswith("manifest.json"):
                del s3.objects[k]
        await self._fails(s3, rep, "no inventory report")

    async def test_missing_required_column(self) -> None:
        s3 = DictS3()
        rep = build_report("inv", "x", SRC, "c", T0, [[obj("a")]], schema=("Bucket", "Key", "Size", "ETag"))
        s3.put("inv", rep)
        await self._fails(s3, rep, "lacks required column.*lastmodifieddate")

    async def test_row_width_differs_from_schema(self) -> None:
        s3 = DictS3()
        rep = self._report(s3)
        body = gzip.compress(b'"photos-src","a","1"\n')
        s3.objects[("inv", rep.data_keys[0])] = body
        doc = json.loads(s3.objects[("inv", rep.manifest_key)])
        doc["files"][0]["MD5checksum"] = hashlib.md5(body).hexdigest()
        s3.objects[("inv", rep.manifest_key)] = json.dumps(doc).encode()
        del s3.objects[("inv", rep.manifest_key.replace(".json", ".checksum"))]
        await self._fails(s3, rep, "line 1 has 3 fields")

    @pytest.mark.parametrize("uri", ["inv/x/", "s3:///x/", "https://inv/x"])
    def test_bad_location(self, uri: str) -> None:
        with pytest.raises(InventoryError):
            parse_location(uri)

    def test_location_gets_trailing_slash(self) -> None:
        assert parse_location("s3://inv/a/src/cfg") == ("inv", "a/src/cfg/")
        assert parse_location("s3://inv") == ("inv", "")


class TestKeyDecoder:
    """The memoised decoder gives exactly ``unquote_plus``, whatever the key."""

    @given(st.text(max_size=60))
    def test_same_as_unquote_plus(self, key: str) -> None:
        decode = KeyDecoder(limit=4)
        for encoded in (quote_plus(key, safe=""), quote_plus(key, safe="/"), quote_plus(f"d/{key}", safe="")):
            assert decode(encoded) == unquote_plus(encoded)
            assert decode(encoded) == unquote_plus(encoded)  # second time from the memo
