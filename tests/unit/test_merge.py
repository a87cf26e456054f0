"""The sorted merge (sync.reconcile.march) and its two users: plan (listing x state), verify (listing x walk).

All three walk two key-ordered streams once. The tests feed them keys where orders
could part ways (``a-b`` / ``a/b`` / ``a0``, U+E000.., astral characters that
UTF-16 would sort below U+E000), empty sides and prefix neighbours, and compare
the result with a brute-force oracle that uses sets and the filesystem, never a
merge. Local files are real files in a temp dir read through a real Mirror; the
bucket side is a plain in-memory listing in S3's order (UTF-8 bytes).
"""

from __future__ import annotations

import asyncio
import hashlib
import os
import tempfile
from collections.abc import AsyncIterator, Iterable
from pathlib import Path
from typing import Any, cast

from hypothesis import given, settings
from hypothesis import strategies as st

from s3sync.local.keys import KeyFilter
from s3sync.local.mirror import Mirror
from s3sync.model import ObjectMeta
from s3sync.s3.bucket import Bucket
from s3sync.state.store import StateRow
from s3sync.sync.reconcile.march import march
from s3sync.sync.reconcile.plan import Adopt, Fetch, PlanItem, Skip, plan
from s3sync.sync.verify import verify

LM = 1_700_000_000.0
SEG_CHARS = ["a", "b", "-", ".", "0", "é", "\ue000", "\uffff", "\U00010000", "\U0010fffd"]
SEG = st.text(st.sampled_from(SEG_CHARS), min_size=1, max_size=2).filter(lambda s: s not in (".", ".."))
KEY = st.lists(SEG, min_size=1, max_size=2).map("/".join)  # always mappable: no dot segments


def s3_sorted(keys: Iterable[str]) -> list[str]:
    return sorted(keys, key=lambda k: k.encode("utf-8"))


def meta(key: str, size: int = 1, etag: str | None = "e1", lm: float = LM) -> ObjectMeta:
    return ObjectMeta(key, size, etag, lm)


async def aiter(items: Iterable[Any]) -> AsyncIterator[Any]:
    for i in items:
        yield i


def put_local(root: Path, key: str, data: bytes, mtime: float = LM) -> bool:
    """Write the mirror file for ``key``; False when the tree cannot hold it (``a`` vs ``a/b``)."""
    path = root.joinpath(*key.split("/"))
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(data)
    except (FileExistsError, NotADirectoryError, IsADirectoryError):
        return False
    os.utime(path, (mtime, mtime))
    return True


def label(item: PlanItem) -> tuple[Any, ...]:
    if isinstance(item, Fetch):
        return ("fetch", item.meta.key, item.reason)
    if isinstance(item, Skip):
        return ("skip", item.key, item.reason, item.tracked)
    if isinstance(item, Adopt):
        return ("adopt", item.meta.key)
    return (type(item).__name__.lower(), item.key)


async def run_plan(
    listing: list[ObjectMeta], rows: list[StateRow], root: Path, filt: KeyFilter | None = None, **kw: Any
) -> list[tuple[Any, ...]]:
    listing = sorted(listing, key=lambda m: m.key.encode())
    rows = sorted(rows, key=lambda r: r.key.encode())
    mirror = Mirror(root, fsync=False)
    items = [i async for i in plan(aiter(listing), aiter(rows), filt or KeyFilter(), mirror.stat_many, **kw)]
    return [label(i) for i in items]


def oracle_plan(
    listing: list[ObjectMeta], rows: list[StateRow], root: Path, prefix: str
) -> list[tuple[Any, ...]]:
    """Set-based reference: classify each key on its own, no ordering involved."""
    listed = {m.key: m for m in listing if m.key.startswith(prefix)}
    tracked = {r.key: r for r in rows if r.key.startswith(prefix)}
    out: list[tuple[Any, ...]] = [("remove", k) for k in tracked.keys() - listed.keys()]
    for k, m in listed.items():
        r = tracked.get(k)
        if any(o.key.startswith(k + "/") for o in listing):
            out.append(("skip", k, "key_conflict", r is not None))
            continue
        path = root.joinpath(*k.split("/"))
        st_ = os.lstat(path) if path.is_file() and not path.is_symlink() else None
        local_ok = st_ is not None and st_.st_size == m.size and abs(st_.st_mtime - m.last_modified) < 1
        same = r is not None and r.size == m.size and (r.etag == m.etag if r.etag and m.etag else True)
        if same:
            out.append(
                ("unchanged", k) if local_ok else ("fetch", k, "local_changed" if st_ else "local_missing")
            )
        elif r is None and local_ok:
            out.append(("adopt", k))
        else:
            out.append(("fetch", k, "new" if r is None else "changed"))
    return out


class TestMarch:
    """march pairs two key-ordered streams: (a, None) src_only, (None, b) dst_only, (a, b) match."""

    async def test_empty_sides(self) -> None:
        """Either side empty yields the other side alone; both empty yields nothing."""
        assert [p async for p in march(aiter([]), aiter([]), str, str)] == []
        assert [p async for p in march(aiter(["a", "b"]), aiter([]), str, str)] == [("a", None), ("b", None)]
        assert [p async for p in march(aiter([]), aiter(["a"]), str, str)] == [(None, "a")]

    async def test_slash_neighbours_and_astral_keys(self) -> None:
        """``a-b`` < ``a/b`` < ``a0`` and U+E000 < U+10000 pair up across sides as S3 orders them."""
        left = s3_sorted(["a-b", "a/b", "a0", "\ue000", "\U00010000"])
        right = s3_sorted(["a/b", "\ue000", "\U00010000", "\uffff"])
        got = [p async for p in march(aiter(left), aiter(right), str, str)]
        assert got == [
            ("a-b", None),
            ("a/b", "a/b"),
            ("a0", None),
            ("\ue000", "\ue000"),
            (None, "\uffff"),
            ("\U00010000", "\U00010000"),
        ]

    @settings(max_examples=100, deadline=None)
    @given(st.sets(KEY, max_size=20), st.sets(KEY, max_size=20))
    def test_matches_set_oracle(self, left: set[str], right: set[str]) -> None:
        """Every key of either side appears exactly once, paired when both have it, in UTF-8 order."""

        async def run() -> list[tuple[str | None, str | None]]:
            return [p async for p in march(aiter(s3_sorted(left)), aiter(s3_sorted(right)), str, str)]

        got = asyncio.run(run())
        expected = [(k if k in left else None, k if k in right else None) for k in s3_sorted(left | right)]
        assert got == expected


class TestPlanClasses:
    """src_only / dst_only / match: every key gets exactly one verdict."""

    async def test_empty_sides(self, tmp_path: Path) -> None:
        """Nothing vs nothing is nothing; listing-only is all new; state-only is all removes."""
        assert await run_plan([], [], tmp_path) == []
        assert await run_plan([meta("a"), meta("b")], [], tmp_path) == [
            ("fetch", "a", "new"),
            ("fetch", "b", "new"),
        ]
        rows = [StateRow("a", "e1", 1, LM), StateRow("b", "e1", 1, LM)]
        assert await run_plan([], rows, tmp_path) == [("remove", "a"), ("remove", "b")]

    async def test_match_classes(self, tmp_path: Path) -> None:
        """Same object + good local file is unchanged; each kind of difference has its reason."""
        for k in ("same", "adopt"):
            put_local(tmp_path, k, b"x")
        put_local(tmp_path, "edited", b"xx")
        rows = [StateRow(k, "e1", 1, LM) for k in ("same", "edited", "gone-local", "changed")]
        listing = [meta(k) for k in ("same", "edited", "gone-local", "adopt")] + [meta("changed", etag="e2")]
        got = sorted(await run_plan(listing, rows, tmp_path))
        assert got == [
            ("adopt", "adopt"),
            ("fetch", "changed", "changed"),
            ("fetch", "edited", "local_changed"),
            ("fetch", "gone-local", "local_missing"),
            ("unchanged", "same"),
        ]

    async def test_skip_existing_off_downloads_instead_of_adopting(self, tmp_path: Path) -> None:
        """With skip_existing=False a matching untracked file is fetched, not adopted."""
        put_local(tmp_path, "a", b"x")
        assert await run_plan([meta("a")], [], tmp_path, skip_existing=False) == [("fetch", "a", "new")]

    async def test_markers_unsafe_conflicts_and_too_large(self, tmp_path: Path) -> None:
        """Folder markers are dropped (removed if tracked); unsafe, conflicting, oversized keys are skips."""
        listing = [meta("d/"), meta("a"), meta("a/b"), meta("x//y"), meta("big", size=10)]
        rows = [StateRow("d/", None, 0, LM), StateRow("x//y", "e1", 1, LM)]
        got = sorted(await run_plan(listing, rows, tmp_path, KeyFilter(max_size=5)))
        assert got == [
            ("fetch", "a/b", "new"),
            ("remove", "d/"),
            ("skip", "a", "key_conflict", False),
            ("skip", "big", "too_large", False),
            ("skip", "x//y", "unsafe_key", True),
        ]

    async def test_prefix_boundaries(self, tmp_path: Path) -> None:
        """Rows and keys just outside the prefix (``a-x``, ``a0``, ``a``) are neither fetched nor removed."""
        filt = KeyFilter(prefix="a/")
        rows = [StateRow(k, "e1", 1, LM) for k in ("a", "a-x", "a/gone", "a0", "b")]
        listing = [meta(k) for k in ("a-y", "a/new", "a1")]
        assert sorted(await run_plan(listing, rows, tmp_path, filt)) == [
            ("fetch", "a/new", "new"),
            ("remove", "a/gone"),
        ]

    async def test_astral_and_private_use_keys_match_across_sides(self, tmp_path: Path) -> None:
        """Keys above U+FFFF and in U+E000.. match across sides, never removed and re-fetched."""
        keys = ["\ue000", "\uffff", "\U00010000", "z\U0010fffd", "é"]
        for k in keys:
            put_local(tmp_path, k, b"x")
        rows = [StateRow(k, "e1", 1, LM) for k in keys]
        got = await run_plan([meta(k) for k in keys], rows, tmp_path)
        assert sorted(got) == sorted(("unchanged", k) for k in keys)

    async def test_removes_interleave_with_batched_fetches(self, tmp_path: Path) -> None:
        """Across several stat batches every key still gets its one verdict."""
        listing = [meta(f"k{i:04d}") for i in range(0, 1200, 2)]
        rows = [StateRow(f"k{i:04d}", "e1", 1, LM) for i in range(1, 1200, 2)]
        got = await run_plan(listing, rows, tmp_path)
        assert sorted(got) == sorted(oracle_plan(listing, rows, tmp_path, ""))
        assert len(got) == 1200

    @settings(max_examples=40, deadline=None)
    @given(
        st.dictionaries(
            KEY, st.tuples(st.sampled_from([0, 1, 2]), st.sampled_from(["e1", "e2", None])), max_size=12
        ),
        st.dictionaries(
            KEY, st.tuples(st.sampled_from([0, 1, 2]), st.sampled_from(["e1", "e2", None])), max_size=12
        ),
        st.dictionaries(KEY, st.sampled_from([b"", b"x", b"xx"]), max_size=12),
        st.sampled_from(["", "a", "a/", "é", "\U00010000"]),
    )
    def test_plan_matches_oracle(
        self,
        bucket: dict[str, tuple[int, str | None]],
        state: dict[str, tuple[int, str | None]],
        local: dict[str, bytes],
        prefix: str,
    ) -> None:
        """For random bucket, state and local trees, the merge's verdicts equal the oracle's."""
        listing = [meta(k, size, etag) for k, (size, etag) in bucket.items()]
        rows = [StateRow(k, etag, size, LM) for k, (size, etag) in state.items()]
        with tempfile.TemporaryDirectory() as d:
            root = Path(d)
            for k, data in local.items():
                put_local(root, k, data)
            got = asyncio.run(run_plan(listing, rows, root, KeyFilter(prefix=prefix)))
            assert sorted(got) == sorted(oracle_plan(listing, rows, root, prefix))
            assert len({g[1] for g in got}) == len(got), "a key got two verdicts"


class Listing:
    """The bucket side for verify: a fixed listing served in S3's order (what Bucket.list yields)."""

    def __init__(self, objects: Iterable[ObjectMeta]) -> None:
        self.objects = sorted(objects, key=lambda m: m.key.encode("utf-8"))

    async def list(self, prefix: str = "", start_after: str | None = None) -> AsyncIterator[ObjectMeta]:
        for m in self.objects:
            if m.key.startswith(prefix):
                yield m

    async def head(self, key: str, **_: Any) -> ObjectMeta | None:
        """What a HEAD says (verify confirms a checksum mismatch with one)."""
        return next((m for m in self.objects if m.key == key), None)


def md5(data: bytes) -> str:
    return hashlib.md5(data, usedforsecurity=False).hexdigest()


async def run_verify(
    objects: Iterable[ObjectMeta], root: Path, filt: KeyFilter | None = None, **kw: Any
) -> Any:
    return await verify(cast(Bucket, Listing(objects)), Mirror(root, fsync=False), filt or KeyFilter(), **kw)


class TestVerify:
    """verify merges the listing with the local walk: missing, extra, size and checksum drift."""

    async def test_identical_mirror(self, tmp_path: Path) -> None:
        """Every key present with the right size and MD5 is no drift; all are counted as checked."""
        keys = ["a!", "a-b", "a/b", "a0", "\ue000", "\U00010000"]
        for k in keys:
            put_local(tmp_path, k, k.encode())
        report = await run_verify([meta(k, len(k.encode()), md5(k.encode())) for k in keys], tmp_path)
        assert (report.identical, report.checked, report.drift) == (True, 6, [])

    async def test_empty_sides(self, tmp_path: Path) -> None:
        """Empty vs empty is identical; bucket-only is all missing; local-only is all extra."""
        assert (await run_verify([], tmp_path)).identical
        r = await run_verify([meta("a"), meta("b")], tmp_path)
        assert [(d.key, d.kind) for d in r.drift] == [("a", "missing"), ("b", "missing")]
        put_local(tmp_path / "other", "x", b"1")
        r = await run_verify([], tmp_path / "other")
        assert [(d.key, d.kind) for d in r.drift] == [("x", "extra")]

    async def test_each_kind_of_drift(self, tmp_path: Path) -> None:
        """Missing, extra, size and checksum drift are told apart and sorted by key."""
        put_local(tmp_path, "extra", b"x")
        put_local(tmp_path, "short", b"x")
        put_local(tmp_path, "corrupt", b"bad")
        put_local(tmp_path, "multipart", b"xyz")
        objects = [
            meta("missing"),
            meta("short", 5),
            meta("corrupt", 3, md5(b"good")),
            meta("multipart", 3, "0123456789abcdef0123456789abcdef-2"),  # not an MD5: size only
        ]
        report = await run_verify(objects, tmp_path)
        assert [(d.key, d.kind) for d in report.drift] == [
            ("corrupt", "checksum"),
            ("extra", "extra"),
            ("missing", "missing"),
            ("short", "size"),
        ]

    async def test_checksum_off_compares_sizes_only(self, tmp_path: Path) -> None:
        """With checksum=False a same-size corrupt file is not drift."""
        put_local(tmp_path, "corrupt", b"bad")
        assert (await run_verify([meta("corrupt", 3, md5(b"good"))], tmp_path, checksum=False)).identical

    async def test_unsafe_and_conflicting_keys_are_counted_not_drift(self, tmp_path: Path) -> None:
        """Keys that cannot be mirrored are counted as skipped; folder markers are ignored."""
        put_local(tmp_path, "a/b", b"x")
        objects = [meta("a", 1, None), meta("a/b", 1, md5(b"x")), meta("x//y"), meta("dir/", 0, None)]
        report = await run_verify(objects, tmp_path)
        assert (report.identical, report.skipped_unsafe, report.checked) == (True, 2, 1)

    async def test_prefix_boundaries(self, tmp_path: Path) -> None:
        """Local files just outside the prefix (``a-x``, ``a0``) are not reported as extra."""
        for k in ("a-x", "a/in", "a0", "b"):
            put_local(tmp_path, k, b"x")
        report = await run_verify([meta("a/in", 1, md5(b"x"))], tmp_path, KeyFilter(prefix="a/"))
        assert (report.identical, report.checked) == (True, 1)

    async def test_local_copy_of_a_too_large_object_is_not_extra(self, tmp_path: Path) -> None:
        """An object over max_file_size is out of scope on both sides, never "not in bucket"."""
        put_local(tmp_path, "big", b"0123456789")
        put_local(tmp_path, "small", b"x")
        objects = [meta("big", 10, md5(b"0123456789")), meta("small", 1, md5(b"x"))]
        report = await run_verify(objects, tmp_path, KeyFilter(max_size=5))
        assert [(d.key, d.kind) for d in report.drift] == []

    @settings(max_examples=40, deadline=None)
    @given(
        st.dictionaries(KEY, st.sampled_from([b"", b"x", b"xx"]), max_size=12),
        st.dictionaries(KEY, st.sampled_from([b"", b"x", b"xx", b"yy"]), max_size=12),
        st.sampled_from(["", "a", "a/", "\ue000", "\U00010000"]),
    )
    def test_verify_matches_oracle(
        self, bucket: dict[str, bytes], local: dict[str, bytes], prefix: str
    ) -> None:
        """For random bucket and local trees, drift equals set differences plus per-key comparisons."""
        with tempfile.TemporaryDirectory() as d:
            root = Path(d)
            present = {k: v for k, v in local.items() if put_local(root, k, v)}
            conflicts = {k for k in bucket if any(o.startswith(k + "/") for o in bucket)}
            objects = [meta(k, len(v), md5(v)) for k, v in bucket.items()]
            report = asyncio.run(run_verify(objects, root, KeyFilter(prefix=prefix)))
        # a conflicting key is skipped on both sides: its local namesake is neither checked nor extra
        inb = {k: v for k, v in bucket.items() if k.startswith(prefix) and k not in conflicts}
        inl = {k: v for k, v in present.items() if k.startswith(prefix) and k not in conflicts}
        expected = [(k, "missing") for k in inb.keys() - inl.keys()]
        expected += [(k, "extra") for k in inl.keys() - inb.keys()]
        for k in inb.keys() & inl.keys():
            if len(inb[k]) != len(inl[k]):
                expected.append((k, "size"))
            elif inb[k] != inl[k]:
                expected.append((k, "checksum"))
        assert sorted((d.key, d.kind) for d in report.drift) == sorted(expected)
        assert report.checked == len(inb)
        assert [d.key for d in report.drift] == sorted(d.key for d in report.drift)
