"""The pass-level delete guards and the backup tree."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from s3sync.errors import ConfigError
from s3sync.local.backup import Backups, check_backup_dir
from s3sync.local.safefs import SafeFS
from s3sync.sync.reconcile.deletes import DeletePlan, delete_limit, refusal


class TestGuards:
    """Empty listings and mass deletions delete nothing, with one line saying why."""

    def test_default_is_half_the_tracked_files(self) -> None:
        assert refusal(DeletePlan(victims=50, tracked=100, listed=50)) is None
        code, msg = refusal(DeletePlan(victims=51, tracked=100, listed=49)) or ("", "")
        assert code == "max_delete"
        assert "51 of 100" in msg and "50%" in msg and "nothing deleted" in msg and "\n" not in msg

    def test_empty_listing_deletes_nothing_unless_allowed(self) -> None:
        plan = DeletePlan(victims=3, tracked=3, listed=0, scope="logs/")
        code, msg = refusal(plan, max_delete=-1) or ("", "")
        assert code == "empty_source" and "--allow-empty-source" in msg and "'logs/'" in msg
        assert refusal(plan, max_delete=-1, allow_empty_source=True) is None
        # the percentage guard still holds when the empty source is allowed
        assert refusal(plan, allow_empty_source=True) is not None

    def test_nothing_to_delete_is_never_refused(self) -> None:
        assert refusal(DeletePlan(victims=0, tracked=10, listed=0)) is None

    @pytest.mark.parametrize(
        ("spec", "tracked", "limit"),
        [(-1, 10, None), (0, 10, 0), (7, 10, 7), ("10%", 200, 20), ("50%", 3, 1)],
    )
    def test_limit(self, spec: int | str, tracked: int, limit: int | None) -> None:
        assert delete_limit(spec, tracked) == limit


class TestBackups:
    """A destroyed file lands at DIR/<key>; an existing backup is never overwritten."""

    def test_backup_dir_must_be_outside_the_mirror(self, tmp_path: Path) -> None:
        with pytest.raises(ConfigError, match="backup_dir"):
            check_backup_dir(tmp_path / "m" / "bak", tmp_path / "m")
        with pytest.raises(ConfigError):
            check_backup_dir(tmp_path / "m", tmp_path / "m")
        assert check_backup_dir(tmp_path / "bak", tmp_path / "m") == tmp_path / "bak"

    def test_move_then_numbered_suffixes(self, tmp_path: Path) -> None:
        mirror, bak = tmp_path / "m", tmp_path / "bak"
        fs, backups = SafeFS(mirror), Backups(bak)
        for i in range(3):
            (mirror / "a").mkdir(parents=True, exist_ok=True)
            (mirror / "a" / "f.txt").write_bytes(f"v{i}".encode())
            with fs.directory(["a"]) as d:
                backups.keep(d, "f.txt", ["a", "f.txt"], key="a/f.txt", move=True)
            assert not (mirror / "a" / "f.txt").exists()
        assert (bak / "a" / "f.txt").read_bytes() == b"v0"
        assert (bak / "a" / "f.txt.1").read_bytes() == b"v1"
        assert (bak / "a" / "f.txt.2").read_bytes() == b"v2"

    def test_overwrite_keeps_the_original_in_place(self, tmp_path: Path) -> None:
        mirror, bak = tmp_path / "m", tmp_path / "bak"
        mirror.mkdir()
        (mirror / "f").write_bytes(b"old")
        os.utime(mirror / "f", (1_000_000, 1_000_000))
        with SafeFS(mirror).directory([]) as d:
            got = Backups(bak).keep(d, "f", ["f"], key="f", move=False)
        assert got == "f"
        assert (mirror / "f").read_bytes() == b"old"
        assert (bak / "f").read_bytes() == b"old"
        assert (bak / "f").stat().st_mtime == 1_000_000

    def test_cross_filesystem_copy(self, tmp_path: Path) -> None:
        """/dev/shm is another filesystem: the backup is copied, then the original removed."""
        shm = Path("/dev/shm")
        if not shm.is_dir() or os.stat(shm).st_dev == os.stat(tmp_path).st_dev:
            pytest.skip("no second filesystem to copy across")
        mirror = tmp_path / "m"
        mirror.mkdir()
        (mirror / "f").write_bytes(b"across")
        bak = shm / f"s3sync-bak-{os.getpid()}-{tmp_path.name}"
        try:
            with SafeFS(mirror).directory([]) as d:
                Backups(bak).keep(d, "f", ["f"], key="f", move=True)
            assert (bak / "f").read_bytes() == b"across"
            assert not (mirror / "f").exists()
            assert [p.name for p in bak.iterdir()] == ["f"]  # no temp left behind
        finally:
            for p in sorted(bak.rglob("*"), reverse=True):
                p.unlink() if p.is_file() else p.rmdir()
            if bak.exists():
                bak.rmdir()
