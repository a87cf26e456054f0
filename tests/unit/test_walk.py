"""Mirror.walk_sorted on real directories: S3 key order, prefix/after pruning, what is skipped.

verify merges this walk against the bucket listing, so the walk must yield keys
in exactly the listing's order (UTF-8 bytes, ``a-b`` < ``a/b`` < ``a0``) or
every key after a misordering is reported as both missing and extra.
"""

from __future__ import annotations

import os
import tempfile
from collections.abc import Iterable
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from s3sync.local.keys import temp_name_for
from s3sync.local.mirror import Mirror


def build(root: Path, keys: Iterable[str]) -> None:
    """A file per key (content = the key), parents created."""
    for key in keys:
        path = root.joinpath(*key.split("/"))
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(key.encode())


def walk(root: Path, prefix: str = "", after: str | None = None) -> list[str]:
    return [k for k, _ in Mirror(root, fsync=False).walk_sorted(prefix, after)]


def s3_order(keys: Iterable[str]) -> list[str]:
    return sorted(keys, key=lambda k: k.encode("utf-8"))


# segment characters chosen around '/' (0x2f) and across UTF-8 length classes
SEG = st.text(
    st.sampled_from(["a", "b", "-", ".", "0", "_", "é", "\ue000", "\uffff", "\U0001f600"]),
    min_size=1,
    max_size=3,
)
KEYS = st.lists(st.lists(SEG, min_size=1, max_size=3).map("/".join), min_size=0, max_size=20, unique=True)


def mappable(keys: list[str]) -> list[str]:
    """Drop keys that cannot coexist on a filesystem: ``a`` as a file next to ``a/b``, or dot names."""
    out: list[str] = []
    for k in keys:
        if any(p in (".", "..") for p in k.split("/")):
            continue
        if any(o.startswith(k + "/") or k.startswith(o + "/") for o in out):
            continue
        out.append(k)
    return out


class TestOrder:
    """Keys come out in S3's listing order, however the directory tree nests them."""

    def test_directories_sort_as_name_plus_slash(self, tmp_path: Path) -> None:
        """A directory ``a`` sorts as ``a/``: after ``a-b`` and ``a.c``, before ``a0``."""
        keys = ["a0", "a/b", "a-b", "a.c", "a/a/z", "a/a!", "b", "A"]
        build(tmp_path, keys)
        assert walk(tmp_path) == s3_order(keys)

    def test_multibyte_names_in_utf8_byte_order(self, tmp_path: Path) -> None:
        """Private-use, U+FFFF and astral names sort by UTF-8 bytes (= code points), not UTF-16."""
        keys = ["\U0001f600", "\uffff", "\ue000", "é", "z", "d/\U00010000", "d/\ufffd"]
        build(tmp_path, keys)
        got = walk(tmp_path)
        assert got == s3_order(keys)
        assert got.index("\ue000") < got.index("\U0001f600")  # UTF-16 order would invert these

    def test_stat_is_the_files_own(self, tmp_path: Path) -> None:
        """Each key comes with the lstat of its file (verify compares its size)."""
        build(tmp_path, ["x/y"])
        (tmp_path / "x" / "y").write_bytes(b"12345")
        [(key, st_)] = list(Mirror(tmp_path).walk_sorted())
        assert (key, st_.st_size) == ("x/y", 5)

    @settings(max_examples=50, deadline=None)
    @given(KEYS)
    def test_any_tree_walks_in_s3_order(self, keys: list[str]) -> None:
        """For any set of mappable keys the walk equals the sorted key list."""
        keys = mappable(keys)
        with tempfile.TemporaryDirectory() as d:
            build(Path(d), keys)
            assert walk(Path(d)) == s3_order(keys)


class TestPrefixAndAfter:
    """``prefix`` and ``after`` select exactly what a brute-force filter would."""

    FIXED = ["a", "ab-", "ab/c", "a-/x", "b/a", "b/b/c", "b/b0", "b0", "c/d/e"]

    @pytest.mark.parametrize("prefix", ["", "b", "b/", "b/b", "ab/", "a-", "z", "b/b/c"])
    def test_prefix(self, tmp_path: Path, prefix: str) -> None:
        """A prefix is a string prefix, not a directory: ``b/b`` matches ``b/b/c`` and ``b/b0``."""
        build(tmp_path, self.FIXED)
        assert walk(tmp_path, prefix) == [k for k in s3_order(self.FIXED) if k.startswith(prefix)]

    @pytest.mark.parametrize("after", ["", "a", "ab", "ab/", "b/b", "b/b/c", "b0", "c", "zz"])
    def test_after(self, tmp_path: Path, after: str) -> None:
        """``after`` excludes itself and everything before it, including in skipped subtrees."""
        build(tmp_path, self.FIXED)
        assert walk(tmp_path, after=after) == [k for k in s3_order(self.FIXED) if k > after]

    @settings(max_examples=50, deadline=None)
    @given(KEYS, st.text(st.sampled_from(["a", "b", "/", "-", "é", "\U0001f600"]), max_size=4), st.data())
    def test_matches_brute_force(self, keys: list[str], prefix: str, data: st.DataObject) -> None:
        """For random trees, prefixes and cursors the walk equals filter-then-sort."""
        keys = mappable(keys)
        after = data.draw(st.one_of(st.none(), st.sampled_from(keys or [""]), st.text("ab/-", max_size=4)))
        with tempfile.TemporaryDirectory() as d:
            build(Path(d), keys)
            expected = [k for k in s3_order(keys) if k.startswith(prefix) and (after is None or k > after)]
            assert walk(Path(d), prefix, after) == expected


class TestSkipped:
    """Only regular mirror files are keys: state, temps, links and special files are not."""

    def test_state_dir_and_temps_are_skipped(self, tmp_path: Path) -> None:
        """The top-level ``.s3sync`` directory and in-progress temporaries never appear."""
        build(tmp_path, ["a/b", "c", ".s3sync/state.db", "nested/.s3sync/kept"])
        (tmp_path / "a" / temp_name_for("b", "deadbeef")).write_bytes(b"partial")
        (tmp_path / temp_name_for("c", "0123abcd")).write_bytes(b"partial")
        assert walk(tmp_path) == ["a/b", "c", "nested/.s3sync/kept"]

    def test_symlinks_and_fifos_are_skipped(self, tmp_path: Path) -> None:
        """Symlinks (to files or directories) and FIFOs are not mirror files."""
        build(tmp_path, ["real/f", "x"])
        os.symlink(tmp_path / "x", tmp_path / "link-to-file")
        os.symlink(tmp_path / "real", tmp_path / "link-to-dir")
        os.mkfifo(tmp_path / "fifo")
        assert walk(tmp_path) == ["real/f", "x"]

    def test_empty_directories_yield_nothing(self, tmp_path: Path) -> None:
        """Directories without files contribute no keys (S3 has no empty folders to match)."""
        (tmp_path / "e" / "f").mkdir(parents=True)
        build(tmp_path, ["g"])
        assert walk(tmp_path) == ["g"]

    def test_missing_root_yields_nothing(self, tmp_path: Path) -> None:
        """A mirror directory that does not exist yet is an empty mirror, not an error."""
        assert walk(tmp_path / "not-there") == []


class TestVanishing:
    """Files and directories deleted mid-walk (a live daemon renames temps) are tolerated."""

    def test_file_and_directory_vanishing_mid_walk(self, tmp_path: Path) -> None:
        """A listed file gone before its stat, and a directory gone before it is entered, are skipped."""
        build(tmp_path, ["a/1", "a/2", "a/3", "b/1", "c"])
        it = Mirror(tmp_path).walk_sorted()
        assert next(it)[0] == "a/1"  # directory "a" is listed; its files are stat'ed one by one
        (tmp_path / "a" / "2").unlink()
        (tmp_path / "b" / "1").unlink()
        (tmp_path / "b").rmdir()
        assert [k for k, _ in it] == ["a/3", "c"]

    def test_file_appearing_mid_walk_in_a_later_directory_is_seen(self, tmp_path: Path) -> None:
        """Directories are read when reached, so a file created ahead of the walk is included."""
        build(tmp_path, ["a/1", "b/1"])
        it = Mirror(tmp_path).walk_sorted()
        assert next(it)[0] == "a/1"
        build(tmp_path, ["b/0"])
        assert [k for k, _ in it] == ["b/0", "b/1"]
