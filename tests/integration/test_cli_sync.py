"""``s3sync sync`` and ``s3sync verify`` end to end: real subprocess, real moto server, real files."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from support.s3kit import (
    CliRunner,
    body_for,
    delete_objects,
    nested_objects,
    seed,
    temp_files,
    tree,
)


def _write_config(path: Path, text: str) -> Path:
    path.write_text(text, encoding="utf-8")
    return path


class TestFullSync:
    """A one-shot sync makes the local directory a byte-for-byte copy of the bucket."""

    def test_fifty_nested_objects_then_nothing_on_rerun(
        self, cli: CliRunner, s3: Any, bucket: str, mirror: Path
    ) -> None:
        """Fifty nested objects arrive intact at local_dir/KEY; a restart downloads nothing."""
        objects = seed(s3, bucket, nested_objects(50))
        first = cli.sync(bucket, mirror)
        assert first.returncode == 0, first
        counts = first.summary()
        assert counts["downloaded"] == 50, first
        assert counts["failed"] == 0, first
        assert tree(mirror) == objects
        assert temp_files(mirror) == []

        second = cli.sync(bucket, mirror)  # a new process over the same state: a restart
        assert second.returncode == 0, second
        counts = second.summary()
        assert counts["downloaded"] == 0, second
        assert counts["unchanged"] == 50, second
        assert counts["failed"] == 0, second
        assert tree(mirror) == objects

    def test_checksum_mode_second_run_unchanged(
        self, cli: CliRunner, s3: Any, bucket: str, mirror: Path
    ) -> None:
        """With --checksum the local bytes are hashed, and intact files are still left alone."""
        objects = seed(s3, bucket, nested_objects(8))
        assert cli.sync(bucket, mirror).returncode == 0
        res = cli.sync(bucket, mirror, "--checksum", "--concurrency", "4")
        assert res.returncode == 0, res
        counts = res.summary()
        assert counts["downloaded"] == 0, res
        assert counts["unchanged"] == 8, res
        assert tree(mirror) == objects

    def test_json_output_shape(self, cli: CliRunner, s3: Any, bucket: str, mirror: Path) -> None:
        """--json prints exactly one object with the documented keys."""
        objects = seed(s3, bucket, nested_objects(5))
        res = cli.sync(bucket, mirror, "--json")
        assert res.returncode == 0, res
        data = res.json()
        for key in (
            "downloaded", "deleted", "failed", "skipped", "unchanged",
            "bytes", "seconds", "dry_run", "errors",
        ):
            assert key in data, (key, data)
        assert data["downloaded"] == 5
        assert data["bytes"] == sum(len(b) for b in objects.values())
        assert data["dry_run"] is False
        assert data["errors"] == []
        assert tree(mirror) == objects

    def test_changed_and_locally_lost_files_are_repaired(
        self, cli: CliRunner, s3: Any, bucket: str, mirror: Path
    ) -> None:
        """An overwritten object and a file removed behind s3sync's back are both fetched again."""
        seed(s3, bucket, {"doc.txt": b"one", "keep.txt": b"same", "lost/file": b"lost"})
        assert cli.sync(bucket, mirror).returncode == 0
        seed(s3, bucket, {"doc.txt": b"two, longer"})
        (mirror / "lost/file").unlink()
        res = cli.sync(bucket, mirror)
        assert res.returncode == 0, res
        counts = res.summary()
        assert counts["downloaded"] == 2, res
        assert counts["unchanged"] == 1, res
        assert tree(mirror) == {"doc.txt": b"two, longer", "keep.txt": b"same", "lost/file": b"lost"}


class TestAwkwardObjects:
    """Keys and objects that are legal in S3 but easy to get wrong locally."""

    SPECIAL = {
        "with space/file name.txt": b"space",
        "plus+sign.txt": b"plus",
        "percent%20literal.txt": b"percent",
        "hash#and?query&amp=.txt": b"punct",
        "ünïcødé/日本語.txt": "ünï".encode(),
        "tilde~/semi;colon,comma.txt": b"misc",
        "empty.bin": b"",
    }

    def test_special_characters_and_empty_object(
        self, cli: CliRunner, s3: Any, bucket: str, mirror: Path
    ) -> None:
        """Every byte of the key survives into the local path; a zero-byte object is a file."""
        objects = seed(s3, bucket, self.SPECIAL)
        res = cli.sync(bucket, mirror)
        assert res.returncode == 0, res
        assert res.summary()["failed"] == 0, res
        assert tree(mirror) == objects
        assert cli.verify(bucket, mirror).returncode == 0

    def test_folder_markers_are_not_failures(
        self, cli: CliRunner, s3: Any, bucket: str, mirror: Path
    ) -> None:
        """Console "folder" keys ending in '/' write nothing and fail nothing."""
        seed(s3, bucket, {"folder/": b"", "folder/inside.txt": b"in", "lonely/": b""})
        res = cli.sync(bucket, mirror)
        assert res.returncode == 0, res
        assert res.summary()["failed"] == 0, res
        assert tree(mirror) == {"folder/inside.txt": b"in"}
        assert not (mirror / "lonely").is_file()

    def test_multipart_object_ranged_download(
        self, cli: CliRunner, s3: Any, bucket: str, mirror: Path, tmp_path: Path
    ) -> None:
        """A multipart-uploaded object (ETag "…-N") fetched with ranged GETs verifies and stays put."""
        import io

        from boto3.s3.transfer import TransferConfig

        # Upload parts of 6 MiB, download ranges of 5 MiB: the ETag check must not assume
        # the two part sizes agree.
        data = body_for("multipart", 7 * 1024 * 1024 + 123)
        upload = TransferConfig(
            multipart_threshold=5 * 1024 * 1024, multipart_chunksize=6 * 1024 * 1024
        )
        s3.upload_fileobj(io.BytesIO(data), bucket, "big/multi.bin", Config=upload)
        etag = s3.head_object(Bucket=bucket, Key="big/multi.bin")["ETag"]
        assert etag.strip('"').endswith("-2"), etag
        cfg = _write_config(
            tmp_path / "ranged.toml", "[sync]\nmultipart_threshold_mb = 1\npart_size_mb = 5\n"
        )
        res = cli.sync(bucket, mirror, "--config", str(cfg))
        assert res.returncode == 0, res
        assert res.summary()["downloaded"] == 1, res
        assert (mirror / "big/multi.bin").read_bytes() == data
        assert temp_files(mirror) == []
        again = cli.sync(bucket, mirror, "--config", str(cfg), "--checksum")
        assert again.returncode == 0, again
        assert again.summary()["unchanged"] == 1, again
        res = cli.verify(bucket, mirror, "--json")
        assert res.returncode == 0, res
        assert res.json()["identical"] is True


class TestPrefix:
    """--prefix limits the mirror to keys under that prefix, at their full key path."""

    def test_only_prefixed_keys(self, cli: CliRunner, s3: Any, bucket: str, mirror: Path) -> None:
        """Keys outside the prefix are neither downloaded nor counted as failures."""
        seed(
            s3,
            bucket,
            {
                "photos/a.jpg": b"a",
                "photos/2024/b.jpg": b"bb",
                "photosx/c.jpg": b"ccc",
                "docs/d.txt": b"dddd",
            },
        )
        res = cli.sync(bucket, mirror, "--prefix", "photos/")
        assert res.returncode == 0, res
        counts = res.summary()
        assert counts["downloaded"] == 2, res
        assert counts["failed"] == 0, res
        assert tree(mirror) == {"photos/a.jpg": b"a", "photos/2024/b.jpg": b"bb"}


class TestDelete:
    """Objects removed from the bucket are removed locally only when deletion is on."""

    def test_delete_only_when_asked(
        self, cli: CliRunner, s3: Any, bucket: str, mirror: Path
    ) -> None:
        """Plain sync keeps the file, --delete --dry-run only counts it, --delete removes it."""
        # 2 of 5 tracked files go: within the default max_delete of 50%
        kept = {"a/kept.txt": b"hi", "a/kept2.txt": b"hi2", "a/kept3.txt": b"hi3"}
        objects = seed(s3, bucket, {"a/gone.txt": b"bye", "b/c/gone2": b"x", **kept})
        assert cli.sync(bucket, mirror).returncode == 0
        delete_objects(s3, bucket, ["a/gone.txt", "b/c/gone2"])

        plain = cli.sync(bucket, mirror)
        assert plain.returncode == 0, plain
        assert plain.summary()["deleted"] == 0, plain
        assert tree(mirror) == objects

        dry = cli.sync(bucket, mirror, "--delete", "--dry-run")
        assert dry.returncode == 0, dry
        assert dry.summary()["deleted"] == 2, dry
        assert tree(mirror) == objects

        real = cli.sync(bucket, mirror, "--delete")
        assert real.returncode == 0, real
        counts = real.summary()
        assert counts["deleted"] == 2, real
        assert counts["failed"] == 0, real
        assert tree(mirror) == kept

    @pytest.mark.parametrize("limit", ["1", '"40%"'], ids=["count", "percent"])
    def test_max_delete_guard_blocks_mass_deletion(
        self, cli: CliRunner, s3: Any, bucket: str, mirror: Path, tmp_path: Path, limit: str
    ) -> None:
        """More deletions than max_delete allows → none happen, exit 1, and the guard is named."""
        objects = seed(s3, bucket, {f"f{i}.txt": body_for(f"f{i}", 10) for i in range(5)})
        cfg = _write_config(tmp_path / "guard.toml", f"[sync]\nmax_delete = {limit}\n")
        assert cli.sync(bucket, mirror, "--config", str(cfg)).returncode == 0
        delete_objects(s3, bucket, ["f0.txt", "f1.txt", "f2.txt"])
        res = cli.sync(bucket, mirror, "--config", str(cfg), "--delete")
        assert res.returncode == 1, res
        assert "max_delete" in res.output, res
        assert tree(mirror) == objects


class TestDryRun:
    """--dry-run reports what it would do and changes nothing on disk."""

    def test_nothing_written(self, cli: CliRunner, s3: Any, bucket: str, mirror: Path) -> None:
        """No mirror file appears, yet the would-be downloads are counted."""
        seed(s3, bucket, nested_objects(5))
        res = cli.sync(bucket, mirror, "--dry-run", "--json")
        assert res.returncode == 0, res
        data = res.json()
        assert data["dry_run"] is True
        assert data["downloaded"] == 5, data
        assert tree(mirror) == {}


class TestFilters:
    """include/exclude globs and max_file_size_mb from the config file narrow the mirror."""

    def test_include_exclude_globs(
        self, cli: CliRunner, s3: Any, bucket: str, mirror: Path, tmp_path: Path
    ) -> None:
        """Only included keys arrive, and excludes win over includes."""
        seed(
            s3,
            bucket,
            {
                "logs/app.log": b"l1",
                "logs/debug/trace.log": b"l2",
                "data/set.csv": b"csv",
                "data/skip.tmp": b"tmp",
                "readme.md": b"md",
            },
        )
        cfg = _write_config(
            tmp_path / "filters.toml",
            '[sync]\ninclude = ["*.log", "data/*"]\nexclude = ["*/debug/*", "*.tmp"]\n',
        )
        res = cli.sync(bucket, mirror, "--config", str(cfg))
        assert res.returncode == 0, res
        assert res.summary()["failed"] == 0, res
        assert tree(mirror) == {"logs/app.log": b"l1", "data/set.csv": b"csv"}

    def test_max_file_size_skips_large_objects(
        self, cli: CliRunner, s3: Any, bucket: str, mirror: Path, tmp_path: Path
    ) -> None:
        """An object over max_file_size_mb is skipped and counted, the rest sync."""
        small = body_for("small", 1000)
        big = body_for("big", 200_000)
        seed(s3, bucket, {"small.bin": small, "big.bin": big})
        cfg = _write_config(tmp_path / "size.toml", "[sync]\nmax_file_size_mb = 0.1\n")
        res = cli.sync(bucket, mirror, "--config", str(cfg))
        assert res.returncode == 0, res
        counts = res.summary()
        assert counts["skipped"] == 1, res
        assert counts["failed"] == 0, res
        assert counts["downloaded"] == 1, res
        assert tree(mirror) == {"small.bin": small}


class TestConfigSources:
    """The one-shot sync takes its settings from files and environment names too."""

    def test_legacy_and_prefixed_env(
        self, cli: CliRunner, s3: Any, bucket: str, mirror: Path
    ) -> None:
        """The earlier service's env names plus S3SYNC_* drive a sync with no flags at all."""
        objects = seed(s3, bucket, nested_objects(3))
        env = {
            "S3_BUCKET_NAME": bucket,
            "LOCAL_DOWNLOAD_DIR": str(mirror),
            "AWS_ENDPOINT_URL_S3": cli.endpoint,
            "S3SYNC_SYNC__CONCURRENCY": "2",
        }
        res = cli("sync", env=env)
        assert res.returncode == 0, res
        assert res.summary()["downloaded"] == 3, res
        assert tree(mirror) == objects

    def test_config_file_drives_sync(
        self, cli: CliRunner, s3: Any, bucket: str, mirror: Path, tmp_path: Path
    ) -> None:
        """Bucket, endpoint, destination and prefix from the TOML file; a flag still wins."""
        seed(s3, bucket, {"p/a": b"a", "q/b": b"b"})
        cfg = _write_config(
            tmp_path / "all.toml",
            f'[s3]\nbucket = "{bucket}"\nendpoint_url = "{cli.endpoint}"\nprefix = "p/"\n'
            f'[sync]\nlocal_dir = "{tmp_path / "elsewhere"}"\n',
        )
        res = cli("sync", "--config", str(cfg), "--dest", str(mirror))
        assert res.returncode == 0, res
        assert tree(mirror) == {"p/a": b"a"}
        assert not (tmp_path / "elsewhere").exists()


class TestVerify:
    """``s3sync verify`` compares mirror and bucket and names every kind of drift."""

    def _synced(self, cli: CliRunner, s3: Any, bucket: str, mirror: Path) -> dict[str, bytes]:
        objects = seed(
            s3,
            bucket,
            {
                "same.txt": body_for("same", 64),
                "flip.bin": body_for("flip", 64),
                "gone/missing.txt": body_for("missing", 64),
                "grow.txt": body_for("grow", 64),
            },
        )
        res = cli.sync(bucket, mirror)
        assert res.returncode == 0, res
        return objects

    def test_identical_mirror(self, cli: CliRunner, s3: Any, bucket: str, mirror: Path) -> None:
        """Right after a sync there is no drift (the .s3sync state dir is not "extra"): exit 0."""
        self._synced(cli, s3, bucket, mirror)
        assert (mirror / ".s3sync").is_dir()
        res = cli.verify(bucket, mirror, "--json")
        assert res.returncode == 0, res
        data = res.json()
        assert data["identical"] is True
        assert data["drift"] == []
        assert data["checked"] == 4

    def test_reports_each_kind_of_drift(
        self, cli: CliRunner, s3: Any, bucket: str, mirror: Path
    ) -> None:
        """Same-size corruption, a missing file, an extra file and a size change are all named."""
        objects = self._synced(cli, s3, bucket, mirror)
        flipped = bytearray(objects["flip.bin"])
        flipped[10] ^= 0xFF
        (mirror / "flip.bin").write_bytes(bytes(flipped))
        (mirror / "gone/missing.txt").unlink()
        (mirror / "stray.txt").write_bytes(b"not in the bucket")
        (mirror / "grow.txt").write_bytes(objects["grow.txt"] + b"more")

        res = cli.verify(bucket, mirror)
        assert res.returncode == 1, res
        lines = {ln.strip() for ln in res.stdout.splitlines() if ln.strip()}
        for expected in (
            "checksum flip.bin",
            "missing gone/missing.txt",
            "extra stray.txt",
            "size grow.txt",
        ):
            assert expected in lines, (expected, res)
        assert not any(ln.endswith(" same.txt") for ln in lines), res

        data = cli.verify(bucket, mirror, "--json").json()
        assert data["identical"] is False
        drift = {(d["key"], d["kind"]) for d in data["drift"]}
        assert drift == {
            ("flip.bin", "checksum"),
            ("gone/missing.txt", "missing"),
            ("stray.txt", "extra"),
            ("grow.txt", "size"),
        }
