"""dirfd-relative file operations: real symlinks, real long names, real directories."""

from __future__ import annotations

import os
import stat
from pathlib import Path

import pytest

from s3sync.errors import KeyConflictError
from s3sync.local.keys import is_temp_name, temp_name_for
from s3sync.local.safefs import DirSync, SafeFS, SymlinkError, name_bytes


@pytest.fixture
def trap(tmp_path: Path) -> tuple[SafeFS, Path, Path]:
    """local_dir with local_dir/sub -> outside (a real directory holding one file)."""
    root = tmp_path / "mirror"
    outside = tmp_path / "outside"
    root.mkdir()
    outside.mkdir()
    (outside / "x").write_bytes(b"precious")
    (root / "sub").symlink_to(outside, target_is_directory=True)
    return SafeFS(root), root, outside


def _snapshot(d: Path) -> dict[str, bytes]:
    return {str(p.relative_to(d)): p.read_bytes() for p in sorted(d.rglob("*")) if p.is_file()}


class TestSymlinks:
    """A symlink anywhere on the path is refused with reason 'symlink', never followed."""

    def test_create_under_linked_parent_refused(self, trap: tuple[SafeFS, Path, Path]) -> None:
        fs, _, outside = trap
        before = _snapshot(outside)
        with pytest.raises(SymlinkError) as info:
            fs.open_dir(["sub"], create=True, key="sub/x")
        assert info.value.code == "symlink"
        with pytest.raises(SymlinkError):
            fs.open_dir(["sub", "deeper"], create=True, key="sub/deeper/x")
        assert _snapshot(outside) == before
        assert not (outside / "deeper").exists()

    def test_remove_under_linked_parent_refused(self, trap: tuple[SafeFS, Path, Path]) -> None:
        fs, _, outside = trap
        with pytest.raises(SymlinkError):
            fs.remove(["sub", "x"], key="sub/x")
        assert (outside / "x").read_bytes() == b"precious"

    def test_link_as_leaf_neither_replaced_nor_removed(self, tmp_path: Path) -> None:
        root = tmp_path / "m"
        root.mkdir()
        target = tmp_path / "t"
        target.write_bytes(b"keep")
        (root / "f").symlink_to(target)
        fs = SafeFS(root)
        with fs.directory([]) as d:
            name, fd = fs.create_temp(d, "f")
            os.close(fd)
            with pytest.raises(SymlinkError):
                fs.replace(d, name, "f", key="f")
            fs.unlink_quiet(d, name)
        with pytest.raises(SymlinkError):
            fs.remove(["f"], key="f")
        with pytest.raises(SymlinkError):
            fs.open_file(["f"], key="f")
        assert (root / "f").is_symlink() and target.read_bytes() == b"keep"

    def test_read_under_linked_parent_refused(self, trap: tuple[SafeFS, Path, Path]) -> None:
        fs, _, _ = trap
        with pytest.raises(SymlinkError):
            fs.open_file(["sub", "x"], key="sub/x")

    def test_stat_does_not_see_through_links(self, trap: tuple[SafeFS, Path, Path]) -> None:
        fs, root, _ = trap
        (root / "real").mkdir()
        (root / "real" / "y").write_bytes(b"12345")
        got = fs.stat_many([["sub", "x"], ["real", "y"], ["sub"], ["missing", "z"]])
        assert got[0] is None
        assert got[1] is not None and got[1].st_size == 5
        assert got[2] is not None and stat.S_ISLNK(got[2].st_mode)  # the link itself (lstat)
        assert got[3] is None

    def test_walk_and_sweep_never_enter_links(self, trap: tuple[SafeFS, Path, Path]) -> None:
        fs, root, outside = trap
        (outside / ".x.s3sync-tmp-deadbeef").write_bytes(b"looks like ours")
        (root / "a").mkdir()
        (root / "a" / "b").write_bytes(b"1")
        (root / "a" / ".b.s3sync-tmp-0123abcd").write_bytes(b"crash leftover")
        keys = [k for k, _ in fs.walk_sorted()]
        assert keys == ["a/b"]
        assert fs.sweep() == 1
        assert (outside / ".x.s3sync-tmp-deadbeef").exists()
        assert not (root / "a" / ".b.s3sync-tmp-0123abcd").exists()


class TestNames:
    """Byte-exact limits from pathconf; temp names always fit."""

    def test_name_max_from_pathconf(self, tmp_path: Path) -> None:
        assert SafeFS(tmp_path).name_max == os.pathconf(tmp_path, "PC_NAME_MAX")
        assert SafeFS(tmp_path / "not" / "yet").name_max == os.pathconf(tmp_path, "PC_NAME_MAX")

    @pytest.mark.parametrize("final", ["漢" * 80 + ".txt", "a" * 255, "é" * 127, "x"])
    def test_temp_name_fits_and_is_recognised(self, final: str) -> None:
        name = temp_name_for(final, "0123abcd", 255)
        assert name_bytes(name) <= 255
        assert is_temp_name(name)

    def test_long_multibyte_name_really_syncs(self, tmp_path: Path) -> None:
        fs = SafeFS(tmp_path)
        final = "漢" * 80 + ".txt"  # 244 bytes: fits, but a char-cut temp name would not
        assert name_bytes(final) == 244
        with fs.directory(["d"], create=True, key="d/" + final) as d:
            tmp, fd = fs.create_temp(d, final)
            os.write(fd, b"hello")
            os.close(fd)
            fs.replace(d, tmp, final, key=final)
            fs.fsync_dir(d)
        assert (tmp_path / "d" / final).read_bytes() == b"hello"
        assert [k for k, _ in fs.walk_sorted()] == ["d/" + final]


class TestTree:
    """Directories are made and pruned at directory fds; collisions are conflicts."""

    def test_file_in_the_way_is_a_key_conflict(self, tmp_path: Path) -> None:
        (tmp_path / "a").write_bytes(b"file")
        fs = SafeFS(tmp_path)
        with pytest.raises(KeyConflictError):
            fs.open_dir(["a"], create=True, key="a/b")
        (tmp_path / "d").mkdir()
        with fs.directory([]) as d, pytest.raises(KeyConflictError):
            fs.check_replaceable(d, "d", "d")

    def test_remove_prunes_empty_parents_only(self, tmp_path: Path) -> None:
        (tmp_path / "a" / "b").mkdir(parents=True)
        (tmp_path / "a" / "b" / "c").write_bytes(b"1")
        (tmp_path / "a" / "keep").write_bytes(b"2")
        fs = SafeFS(tmp_path)
        assert fs.remove(["a", "b", "c"], key="a/b/c") is True
        assert not (tmp_path / "a" / "b").exists()
        assert (tmp_path / "a" / "keep").exists()
        assert fs.remove(["a", "b", "c"], key="a/b/c") is False
        assert fs.remove(["a", "keep", "x"], key="a/keep/x") is False

    def test_walk_is_in_key_order(self, tmp_path: Path) -> None:
        for rel in ["a-b", "a/b", "a.c", "b", "a/a/z"]:
            p = tmp_path / rel
            p.parent.mkdir(parents=True, exist_ok=True)
            p.write_bytes(b"")
        (tmp_path / ".s3sync").mkdir()
        (tmp_path / ".s3sync" / "state.db").write_bytes(b"")
        fs = SafeFS(tmp_path)
        keys = [k for k, _ in fs.walk_sorted()]
        assert keys == sorted(keys) == ["a-b", "a.c", "a/a/z", "a/b", "b"]
        assert [k for k, _ in fs.walk_sorted("a/")] == ["a/a/z", "a/b"]
        assert [k for k, _ in fs.walk_sorted(after="a/a/z")] == ["a/b", "b"]

    def test_dirsync_fsyncs_each_directory_once(self, tmp_path: Path) -> None:
        fs = SafeFS(tmp_path)
        batch = DirSync()
        for _ in range(5):
            with fs.directory(["one"], create=True) as d:
                batch.add(d)
        with fs.directory(["two"], create=True) as d:
            batch.add(d)
        assert len(batch) == 2
        batch.flush()
        assert len(batch) == 0


class TestCaseProbe:
    """The probe leaves nothing behind and reports this ext4 directory as case-sensitive."""

    def test_probe_on_a_case_sensitive_directory(self, tmp_path: Path) -> None:
        probe = SafeFS(tmp_path).probe_case()
        assert probe.case_sensitive and probe.normalization_sensitive and not probe.folds
        assert list(tmp_path.iterdir()) == []
