"""The resume sidecar: ranges, strict validation, ETag checks and the start-up sweep."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from s3sync.local.keys import temp_name_for
from s3sync.local.sidecars import InvalidSidecar, ResumeRecord, ResumeStore, sync_and_save

MIB = 1024 * 1024
SIZE = 10 * MIB
PART = 4 * MIB


class Clock:
    def __init__(self) -> None:
        self.now = 1_700_000_000.0

    def __call__(self) -> float:
        return self.now


def make_temp(root: Path, key: str, size: int = SIZE, token: str = "ab12cd34") -> Path:
    final = root.joinpath(*key.split("/"))
    final.parent.mkdir(parents=True, exist_ok=True)
    temp = final.parent / temp_name_for(final.name, token)
    with open(temp, "wb") as fh:
        fh.truncate(size)
    return temp


def store(root: Path, clock: Clock | None = None, bucket: str = "bkt") -> ResumeStore:
    return ResumeStore(root, bucket, clock=clock or Clock(), max_age=86400)


class TestRanges:
    """Completed ranges merge; the missing ones come back cut at part boundaries."""

    def rec(self) -> ResumeRecord:
        return ResumeRecord("b", "k", "e", SIZE, PART, ".k.s3sync-tmp-00")

    def test_nothing_done_means_every_part(self) -> None:
        assert self.rec().missing() == [(0, PART - 1), (PART, 2 * PART - 1), (2 * PART, SIZE - 1)]

    def test_partial_parts_resume_from_their_frontier(self) -> None:
        r = self.rec()
        r.add(0, MIB)  # part 1 got 1 MiB in
        r.add(PART, 2 * PART)  # part 2 complete
        r.add(2 * PART, 2 * PART + 100)
        assert r.missing() == [(MIB, PART - 1), (2 * PART + 100, SIZE - 1)]
        assert r.completed == MIB + PART + 100

    def test_adjacent_and_overlapping_ranges_merge(self) -> None:
        r = self.rec()
        r.add(10, 20)
        r.add(20, 30)
        r.add(5, 12)
        assert r.done == [(5, 30)]

    def test_out_of_bounds_range_is_refused(self) -> None:
        with pytest.raises(ValueError):
            self.rec().add(0, SIZE + 1)

    @given(st.lists(st.tuples(st.integers(0, SIZE), st.integers(0, SIZE)), max_size=20))
    def test_done_and_missing_partition_the_object(self, pairs: list[tuple[int, int]]) -> None:
        """Whatever was recorded, done + missing cover every byte exactly once."""
        r = self.rec()
        for a, b in pairs:
            r.add(min(a, b), max(a, b))
        covered = [(lo, hi) for lo, hi in r.done] + [(lo, hi + 1) for lo, hi in r.missing()]
        covered.sort()
        pos = 0
        for lo, hi in covered:
            assert lo == pos
            pos = hi
        assert pos == SIZE
        assert all(hi - lo + 1 <= PART for lo, hi in r.missing())


class TestValidation:
    """A sidecar is trusted only if every field is what we wrote."""

    def good(self) -> dict[str, object]:
        r = ResumeRecord("b", "dir/k", "e", SIZE, PART, ".k.s3sync-tmp-00", "v1", [(0, 5)], 1.0)
        doc: dict[str, object] = json.loads(r.to_json())
        return doc

    def test_round_trip(self) -> None:
        r = ResumeRecord.from_json(json.dumps(self.good()).encode())
        assert (r.key, r.version_id, r.done, r.part_size) == ("dir/k", "v1", [(0, 5)], PART)

    @pytest.mark.parametrize(
        "change",
        [
            {"format": 2},
            {"size": -1},
            {"size": True},
            {"etag": ""},
            {"part_size": 0},
            {"done": [[0, 5], [3, 9]]},
            {"done": [[5, 9], [0, 2]]},
            {"done": [[0, SIZE + 1]]},
            {"done": [[0, 0]]},
            {"done": [[0, True]]},
            {"done": "all"},
            {"temp": "../../etc/passwd"},
            {"temp": "plain-name"},
            {"key": "../escape"},
            {"key": ".s3sync/state.db"},
            {"version_id": 7},
            {"updated_at": "yesterday"},
        ],
    )
    def test_bad_fields(self, change: dict[str, object]) -> None:
        doc = self.good() | change
        with pytest.raises(InvalidSidecar):
            ResumeRecord.from_json(json.dumps(doc).encode())

    @pytest.mark.parametrize("raw", [b"", b"{", b"[]", b"\xff\xfe", b"null"])
    def test_not_json(self, raw: bytes) -> None:
        with pytest.raises(InvalidSidecar):
            ResumeRecord.from_json(raw)


class TestLoad:
    """ETag unchanged keeps the ranges; anything else discards temp and sidecar."""

    def started(self, root: Path, key: str = "big/file.bin") -> tuple[ResumeStore, ResumeRecord, Path]:
        s = store(root)
        temp = make_temp(root, key)
        rec = s.begin(key, etag='"abc-3"', size=SIZE, part_size=PART, temp=temp, version_id=None)
        rec.add(0, PART)
        rec.add(PART, PART + MIB)
        s.save(rec)
        return s, rec, temp

    def test_unchanged_etag_resumes_with_the_ranges(self, tmp_path: Path) -> None:
        s, _, temp = self.started(tmp_path)
        got, why = s.load("big/file.bin", etag="abc-3", size=SIZE)
        assert why == "resumed"
        assert got is not None
        assert got.done == [(0, PART + MIB)]
        assert s.temp_path(got) == temp

    @pytest.mark.parametrize(
        ("etag", "size", "version", "reason"),
        [
            ("zzz-3", SIZE, None, "etag_changed"),
            ("abc-3", SIZE + 1, None, "size_changed"),
            ("abc-3", SIZE, "v2", "version_changed"),
        ],
    )
    def test_changed_object_discards(
        self, tmp_path: Path, etag: str, size: int, version: str | None, reason: str
    ) -> None:
        s, _, temp = self.started(tmp_path)
        assert s.load("big/file.bin", etag=etag, size=size, version_id=version) == (None, reason)
        assert not temp.exists()
        assert not s.sidecar_path("big/file.bin").exists()

    def test_no_sidecar(self, tmp_path: Path) -> None:
        assert store(tmp_path).load("k", etag="e", size=1) == (None, "none")

    def test_truncated_temp_is_invalid(self, tmp_path: Path) -> None:
        """A temp of the wrong size (disk trouble, someone truncated it) is not resumed."""
        s, _, temp = self.started(tmp_path)
        os.truncate(temp, MIB)
        assert s.load("big/file.bin", etag="abc-3", size=SIZE) == (None, "invalid")
        assert not s.sidecar_path("big/file.bin").exists()
        assert not temp.exists()

    def test_corrupt_sidecar_is_invalid(self, tmp_path: Path) -> None:
        s, _, _ = self.started(tmp_path)
        s.sidecar_path("big/file.bin").write_bytes(b'{"format": 1, "bucket"')
        assert s.load("big/file.bin", etag="abc-3", size=SIZE) == (None, "invalid")
        assert not s.sidecar_path("big/file.bin").exists()

    def test_sidecar_of_another_key_is_invalid(self, tmp_path: Path) -> None:
        """The file name is a hash; the content must still name the key asked for."""
        s, _, temp = self.started(tmp_path)
        os.replace(s.sidecar_path("big/file.bin"), s.sidecar_path("other"))
        assert s.load("other", etag="abc-3", size=SIZE) == (None, "invalid")
        assert temp.exists()  # it belongs to another key: only that key's attempt may drop it

    def test_symlinked_temp_is_not_trusted(self, tmp_path: Path) -> None:
        s, _, temp = self.started(tmp_path)
        target = tmp_path / "elsewhere"
        os.replace(temp, target)
        os.symlink(target, temp)
        assert s.load("big/file.bin", etag="abc-3", size=SIZE)[1] == "invalid"
        assert target.exists()

    def test_begin_refuses_a_temp_elsewhere_and_a_missing_etag(self, tmp_path: Path) -> None:
        s = store(tmp_path)
        temp = make_temp(tmp_path, "a/x")
        with pytest.raises(ValueError, match="not next to"):
            s.begin("b/x", etag="e", size=SIZE, part_size=PART, temp=temp)
        with pytest.raises(ValueError, match="ETag"):
            s.begin("a/x", etag='""', size=SIZE, part_size=PART, temp=temp)

    def test_finish_and_discard(self, tmp_path: Path) -> None:
        s, rec, temp = self.started(tmp_path)
        s.discard(rec)
        assert not temp.exists()
        assert not s.sidecar_path(rec.key).exists()
        s2, rec2, temp2 = self.started(tmp_path / "m2")
        s2.finish(rec2.key)
        assert temp2.exists()  # finish() runs after the rename; here the temp just stays
        assert not s2.sidecar_path(rec2.key).exists()


class TestAtomicWrite:
    """Saving replaces the sidecar in one rename and leaves no partial file."""

    def test_no_partials_left_and_content_is_whole(self, tmp_path: Path) -> None:
        s = store(tmp_path)
        temp = make_temp(tmp_path, "k")
        rec = s.begin("k", etag="e", size=SIZE, part_size=PART, temp=temp)
        fd = os.open(temp, os.O_RDWR)
        try:
            for i in range(20):
                rec.add(i * 1000, i * 1000 + 500)
                sync_and_save(s, rec, fd)
        finally:
            os.close(fd)
        assert [p.name for p in s.dir.iterdir()] == [s.sidecar_path("k").name]
        assert ResumeRecord.from_json(s.sidecar_path("k").read_bytes()).done == rec.done

    def test_updated_at_follows_the_clock(self, tmp_path: Path) -> None:
        clock = Clock()
        s = store(tmp_path, clock)
        rec = s.begin("k", etag="e", size=SIZE, part_size=PART, temp=make_temp(tmp_path, "k"))
        clock.now += 50
        s.save(rec)
        assert ResumeRecord.from_json(s.sidecar_path("k").read_bytes()).updated_at == clock.now


class TestSweep:
    """At start: keep temps with a valid, recent sidecar; drop every other sidecar."""

    def test_keeps_only_valid_recent_resumable_temps(self, tmp_path: Path) -> None:
        clock = Clock()
        s = store(tmp_path, clock)
        good = make_temp(tmp_path, "a/good.bin", token="00000001")
        s.begin("a/good.bin", etag="e1", size=SIZE, part_size=PART, temp=good)
        gone = make_temp(tmp_path, "a/gone.bin", token="00000002")
        s.begin("a/gone.bin", etag="e2", size=SIZE, part_size=PART, temp=gone)
        gone.unlink()  # committed before the sidecar was removed (crash in between)
        short = make_temp(tmp_path, "short.bin", token="00000003")
        s.begin("short.bin", etag="e3", size=SIZE, part_size=PART, temp=short)
        os.truncate(short, 10)
        orphan = make_temp(tmp_path, "orphan.bin", token="00000004")  # no sidecar at all
        (s.dir / "junk.json.partial-1234").write_bytes(b"{")
        (s.dir / "broken.json").write_bytes(b"not json")

        keep = s.sweep()

        assert keep == {good}
        assert sorted(p.name for p in s.dir.iterdir()) == [s.sidecar_path("a/good.bin").name]
        assert orphan not in keep and short not in keep

    def test_old_sidecars_expire(self, tmp_path: Path) -> None:
        """A temp whose key never comes back (deleted in S3) does not hold disk forever."""
        clock = Clock()
        s = store(tmp_path, clock)
        s.begin("k", etag="e", size=SIZE, part_size=PART, temp=make_temp(tmp_path, "k"))
        clock.now += 86400 + 1
        assert s.sweep() == set()
        assert list(s.dir.iterdir()) == []

    def test_other_buckets_sidecars_are_not_kept(self, tmp_path: Path) -> None:
        """Re-pointing a mirror at another bucket must not resume the old bucket's bytes."""
        store(tmp_path, bucket="old").begin(
            "k", etag="e", size=SIZE, part_size=PART, temp=make_temp(tmp_path, "k")
        )
        assert store(tmp_path, bucket="new").sweep() == set()

    def test_no_resume_dir_is_fine(self, tmp_path: Path) -> None:
        assert store(tmp_path).sweep() == set()
