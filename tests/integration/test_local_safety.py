"""The local side is never harmed (README, "How it works"): real symlinks, long names, empty buckets.

Each test runs the real engine (or the real CLI, or the real app) against moto
with a real directory tree; symlinks point at a real directory outside the
mirror whose contents are compared byte for byte before and after.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from support.s3kit import CliRunner, delete_objects, seed, tree

from s3sync.local.safefs import CaseProbe
from s3sync.model import Change, ChangeKind, ChangeSource


async def reconcile(settings: Any, *, fake_probe: CaseProbe | None = None, **kw: Any) -> tuple[Any, Any]:
    """One pass with a fresh engine: (report, stats)."""
    from s3sync.local.mirror import Mirror
    from s3sync.stats import SyncStats
    from s3sync.sync.engine import open_engine

    stats = SyncStats()
    mirror = Mirror(settings.sync.local_dir, fsync=False, backup_dir=settings.sync.backup_dir)
    async with open_engine(settings, stats, mirror) as engine:
        if fake_probe is not None:
            mirror.case = fake_probe  # this machine has no case-insensitive filesystem (see report)
        report = await engine.reconcile(**kw)
    return report, stats


def snapshot(d: Path) -> dict[str, bytes]:
    return {str(p.relative_to(d)): p.read_bytes() for p in sorted(d.rglob("*")) if p.is_file()}


@pytest.fixture
def outside(mirror: Path) -> Path:
    """A real directory next to the mirror, with files a followed link would touch."""
    d = mirror.parent / "outside"
    d.mkdir()
    (d / "x").write_bytes(b"precious x")
    (d / "z").write_bytes(b"untracked z")
    return d


class TestSymlinks:
    """A key through local_dir/sub -> outside is skipped 'symlink'; outside never changes."""

    async def test_writes_skipped_and_visible(
        self, s3: Any, bucket: str, mirror: Path, outside: Path, make_settings: Any
    ) -> None:
        (mirror / "sub").symlink_to(outside, target_is_directory=True)
        seed(s3, bucket, {"sub/x": b"from s3", "sub/new/y": b"deep", "ok/file": b"fine"})
        before = snapshot(outside)
        report, stats = await reconcile(make_settings(bucket, mirror), delete=True)
        assert snapshot(outside) == before
        assert (mirror / "ok" / "file").read_bytes() == b"fine"
        skipped = {e["key"]: e["error"] for e in report.errors}
        assert skipped == {"sub/x": "symlink", "sub/new/y": "symlink"}
        assert report.failed == 0 and report.ok  # skips never fail the pass
        assert stats.skipped["symlink"] == 2
        assert stats.health.last_error is not None and "symlink" in stats.health.last_error
        assert (mirror / "sub").is_symlink()

    async def test_deletes_and_sweep_never_reach_outside(
        self, s3: Any, bucket: str, mirror: Path, outside: Path, make_settings: Any
    ) -> None:
        """A tracked key whose directory became a link is not deleted through it; nor is anything swept."""
        settings = make_settings(bucket, mirror, sync={"max_delete": -1})
        seed(s3, bucket, {"sub/x": b"v1", "keep": b"k"})
        report, _ = await reconcile(settings)
        assert report.ok, report.errors
        (mirror / "sub" / "x").unlink()
        (mirror / "sub").rmdir()
        (mirror / "sub").symlink_to(outside, target_is_directory=True)
        delete_objects(s3, bucket, ["sub/x"])
        before = snapshot(outside)
        report, stats = await reconcile(settings, delete=True)
        assert snapshot(outside) == before  # outside/x (same name as the key) and outside/z survive
        assert [(e["key"], e["error"]) for e in report.errors] == [("sub/x", "symlink")]
        assert stats.skipped["symlink"] == 1

    async def test_event_remove_through_link(
        self, s3: Any, bucket: str, mirror: Path, outside: Path, make_settings: Any
    ) -> None:
        from s3sync.sync.engine import open_engine

        (mirror / "sub").symlink_to(outside, target_is_directory=True)
        async with open_engine(make_settings(bucket, mirror)) as engine:
            fut = engine.submit(Change("sub/x", ChangeKind.REMOVE, ChangeSource.NOTIFICATION))
            result = await fut
        assert (result.status, result.error) == ("skipped", "symlink")
        assert (outside / "x").read_bytes() == b"precious x"

    async def test_download_endpoint_refuses_links(
        self, aiohttp_client: Any, s3: Any, bucket: str, mirror: Path, outside: Path, make_settings: Any
    ) -> None:
        from s3sync.daemon.app import create_app

        seed(s3, bucket, {"real/f": b"0123456789"})
        client = await aiohttp_client(create_app(make_settings(bucket, mirror)))
        assert (await client.post("/api/v1/sync")).status == 200
        (mirror / "sub").symlink_to(outside, target_is_directory=True)
        (mirror / "leaf").symlink_to(outside / "x")
        for key in ("sub/x", "leaf"):
            resp = await client.get(f"/api/v1/download/{key}")
            body = await resp.read()
            assert resp.status == 404 and b"precious" not in body, (key, body)
        resp = await client.get("/api/v1/download/real/f", headers={"Range": "bytes=2-4"})
        assert resp.status == 206 and await resp.read() == b"234"
        resp = await client.get("/api/v1/download/real/f", headers={"Range": "bytes=50-60"})
        assert resp.status == 416 and (await resp.json())["error"] == "range_not_satisfiable"
        metrics = await (await client.get("/metrics")).text()
        assert 's3sync_files_skipped_total{reason="symlink"}' in metrics


class TestNames:
    """Byte limits from the filesystem; a bad name is one visible skip, never a stuck mirror."""

    async def test_long_multibyte_name_syncs_and_bad_one_is_skipped(
        self, aiohttp_client: Any, s3: Any, bucket: str, mirror: Path, make_settings: Any
    ) -> None:
        from s3sync.daemon.app import create_app

        long_ok = "d/" + "漢" * 80 + ".txt"  # 244-byte segment: fits 255
        too_long = "d/" + "漢" * 86  # 258 bytes: does not
        seed(s3, bucket, {long_ok: b"kanji", too_long: b"no", "gone": b"g", "a": b"1", "b": b"2"})
        client = await aiohttp_client(create_app(make_settings(bucket, mirror)))
        first = await (await client.post("/api/v1/sync")).json()
        assert (mirror / long_ok).read_bytes() == b"kanji"
        assert first["failed"] == 0 and first["skipped"] == 1, first
        delete_objects(s3, bucket, ["gone"])
        second = await (await client.post("/api/v1/sync?delete=true")).json()
        # the unmappable key holds back nothing: the delete of the pass happens
        assert second["deleted"] == 1 and not (mirror / "gone").exists(), second
        health = await client.get("/api/v1/health")
        assert health.status == 200, await health.text()
        stats = await (await client.get("/api/v1/stats")).json()
        assert "unsafe_key" in (stats["last_error"] or "") and too_long in stats["last_error"]


class TestDeleteGuards:
    """An empty or mostly-empty listing deletes nothing, exits 1 and says why in one line."""

    def test_empty_bucket_deletes_nothing(self, cli: CliRunner, s3: Any, bucket: str, mirror: Path) -> None:
        objects = seed(s3, bucket, {"a": b"1", "b/c": b"2"})
        assert cli.sync(bucket, mirror).returncode == 0
        delete_objects(s3, bucket, list(objects))
        res = cli.sync(bucket, mirror, "--delete")
        assert res.returncode == 1, res
        lines = [ln for ln in res.output.splitlines() if "--allow-empty-source" in ln and "error" not in ln]
        assert lines and "came back empty" in lines[0], res
        assert tree(mirror) == objects

    def test_allow_empty_source(
        self, cli: CliRunner, s3: Any, bucket: str, mirror: Path, tmp_path: Path
    ) -> None:
        objects = seed(s3, bucket, {"a": b"1", "b/c": b"2"})
        assert cli.sync(bucket, mirror).returncode == 0
        delete_objects(s3, bucket, list(objects))
        cfg = tmp_path / "all.toml"
        cfg.write_text("[sync]\nmax_delete = -1\n")
        res = cli.sync(bucket, mirror, "--delete", "--allow-empty-source", "--config", str(cfg))
        assert res.returncode == 0, res
        assert tree(mirror) == {}

    def test_more_than_half(self, cli: CliRunner, s3: Any, bucket: str, mirror: Path) -> None:
        objects = seed(s3, bucket, {f"k{i}": b"x" for i in range(4)})
        assert cli.sync(bucket, mirror).returncode == 0
        delete_objects(s3, bucket, ["k0", "k1", "k2"])
        res = cli.sync(bucket, mirror, "--delete")
        assert res.returncode == 1, res
        assert "max_delete guard: would delete 3 of 4 files" in res.stdout, res
        assert tree(mirror) == objects


class TestBackups:
    """--backup-dir keeps what a delete or an overwrite destroys, as DIR/<key> then .N."""

    async def test_overwrite_and_delete(
        self, s3: Any, bucket: str, mirror: Path, tmp_path: Path, make_settings: Any
    ) -> None:
        bak = tmp_path / "bak"
        settings = make_settings(bucket, mirror, sync={"backup_dir": str(bak), "max_delete": -1})
        seed(s3, bucket, {"d/f": b"v1", "g": b"keep"})
        assert (await reconcile(settings))[0].ok
        seed(s3, bucket, {"d/f": b"v2-longer"})
        assert (await reconcile(settings))[0].ok
        assert (mirror / "d" / "f").read_bytes() == b"v2-longer"
        assert (bak / "d" / "f").read_bytes() == b"v1"
        delete_objects(s3, bucket, ["d/f"])
        report, _ = await reconcile(settings, delete=True)
        assert report.deleted == 1, report.errors
        assert not (mirror / "d").exists()
        assert (bak / "d" / "f.1").read_bytes() == b"v2-longer"
        assert tree(mirror) == {"g": b"keep"}

    def test_backup_inside_mirror_is_refused(self, cli: CliRunner, bucket: str, mirror: Path) -> None:
        res = cli.sync(bucket, mirror, "--backup-dir", str(mirror / "bak"))
        assert res.returncode == 2 and "backup_dir" in res.output, res


class TestCasePolicy:
    """Keys differing only by case on a folding filesystem: the first syncs, the rest are skipped.

    The machine's kernel has neither ext4 casefold nor vfat (mount -o loop of a casefold
    image fails), so the probe result is faked; the policy, plan and reconcile are real.
    """

    FOLDING = CaseProbe(case_sensitive=False, normalization_sensitive=False)

    async def test_first_in_key_order_wins(
        self, s3: Any, bucket: str, mirror: Path, make_settings: Any
    ) -> None:
        seed(s3, bucket, {"README.md": b"upper", "readme.md": b"lower", "Docs/a": b"1", "docs/b": b"2"})
        report, stats = await reconcile(make_settings(bucket, mirror), fake_probe=self.FOLDING)
        assert sorted(tree(mirror)) == ["Docs/a", "README.md"]
        assert sorted((e["key"], e["error"]) for e in report.errors) == [
            ("docs/b", "case_conflict"),
            ("readme.md", "case_conflict"),
        ]
        assert report.ok and stats.skipped["case_conflict"] == 2
        assert "case_conflict" in (stats.health.last_error or "")

    async def test_error_mode_fails_the_key(
        self, s3: Any, bucket: str, mirror: Path, make_settings: Any
    ) -> None:
        seed(s3, bucket, {"A": b"1", "a": b"2"})
        settings = make_settings(bucket, mirror, sync={"case_conflict": "error"})
        report, _ = await reconcile(settings, fake_probe=self.FOLDING)
        assert report.failed == 1 and [e["key"] for e in report.errors] == ["a"]

    async def test_on_a_case_sensitive_directory_both_sync(
        self, s3: Any, bucket: str, mirror: Path, make_settings: Any
    ) -> None:
        seed(s3, bucket, {"A": b"1", "a": b"2"})
        report, _ = await reconcile(make_settings(bucket, mirror))  # the real probe: ext4 here
        assert report.ok and tree(mirror) == {"A": b"1", "a": b"2"}


class TestDefaults:
    """max_file_size_mb is 0 (no limit) unless set; the legacy variable still sets it."""

    def test_no_size_limit_by_default(self) -> None:
        from s3sync.config import load_settings

        assert load_settings(environ={}).sync.max_file_size_bytes is None
        legacy = load_settings(environ={"MAX_FILE_SIZE_MB": "3"}).sync
        assert legacy.max_file_size_bytes == 3 * 1024 * 1024
        assert load_settings(environ={}).sync.max_delete == "50%"
