"""Operator controls (README, "Operator controls"), end to end through the real CLI.

Real ``python -m s3sync`` processes against the session's moto server, on both
GET paths where the path matters (``s3.fast_get`` true and false).
"""

from __future__ import annotations

import datetime as dt
import os
import time
from pathlib import Path
from typing import Any

import pytest
from support.s3kit import CliRunner, body_for, delete_objects, seed, tree

MIB = 1024 * 1024
PATHS = pytest.mark.parametrize("fast_get", ["true", "false"], ids=["lean", "boto"])


def _env(fast_get: str, **extra: str) -> dict[str, str]:
    return {"S3SYNC_S3__FAST_GET": fast_get, "S3SYNC_SYNC__FSYNC": "false", **extra}


class TestBwlimit:
    """--bwlimit RATE: B bytes take at least B / (1.1 x RATE), whichever GET path serves them."""

    @PATHS
    @pytest.mark.parametrize("ranged", [False, True], ids=["single", "ranged"])
    def test_ten_mib_takes_at_least_the_limit(
        self, cli: CliRunner, s3: Any, bucket: str, mirror: Path, fast_get: str, ranged: bool
    ) -> None:
        """10 MiB at --bwlimit 5M: one streamed GET or parallel ranged parts, never faster than allowed."""
        data = body_for("big.bin", 10 * MIB)
        seed(s3, bucket, {"big.bin": data})
        extra = (
            {"S3SYNC_SYNC__MULTIPART_THRESHOLD_MB": "5", "S3SYNC_SYNC__PART_SIZE_MB": "5"} if ranged else {}
        )
        started = time.monotonic()
        res = cli.sync(bucket, mirror, "--bwlimit", "5M", env=_env(fast_get, **extra))
        elapsed = time.monotonic() - started
        assert res.returncode == 0, res
        assert tree(mirror) == {"big.bin": data}
        assert elapsed >= len(data) / (1.1 * 5 * MIB), f"{elapsed:.2f}s is faster than the limit allows"

    def test_bad_rate_is_a_usage_error_naming_the_flag(
        self, cli: CliRunner, bucket: str, mirror: Path
    ) -> None:
        res = cli.sync(bucket, mirror, "--bwlimit", "lots")
        assert res.returncode == 2
        assert "--bwlimit" in res.stderr and "'lots' is not a size" in res.stderr

    def test_bad_config_value_names_the_key(self, cli: CliRunner, bucket: str, mirror: Path) -> None:
        res = cli.sync(bucket, mirror, env={"S3SYNC_SYNC__BWLIMIT": "10X"})
        assert res.returncode == 2
        assert "sync.bwlimit" in res.stderr


class TestFilters:
    """Size, age and files-from filters; a filtered key is never deleted because of the filter."""

    def test_size_window(self, cli: CliRunner, s3: Any, bucket: str, mirror: Path) -> None:
        objects = seed(s3, bucket, {"tiny": b"x", "mid": b"m" * 2048, "big": b"b" * 10_000})
        res = cli.sync(bucket, mirror, "--min-size", "1K", "--max-size", "8K")
        assert res.returncode == 0, res
        assert tree(mirror) == {"mid": objects["mid"]}
        assert res.summary()["skipped"] == 2, res

    def test_files_from_and_exclude_combine(
        self, cli: CliRunner, s3: Any, bucket: str, mirror: Path, tmp_path: Path
    ) -> None:
        objects = seed(s3, bucket, {"a.txt": b"a", "b.tmp": b"b", "c.txt": b"c"})
        listing = tmp_path / "keys.txt"
        listing.write_text("a.txt\nb.tmp\n# c.txt is not listed\n")
        res = cli.sync(bucket, mirror, "--files-from", str(listing), env={"S3SYNC_SYNC__EXCLUDE": "*.tmp"})
        assert res.returncode == 0, res
        assert tree(mirror) == {"a.txt": objects["a.txt"]}
        assert res.summary()["skipped"] == 2, res  # b.tmp (exclude) and c.txt (not listed): "filtered"

    def test_files_from_keys_not_in_the_bucket_are_reported(
        self, cli: CliRunner, s3: Any, bucket: str, mirror: Path, tmp_path: Path
    ) -> None:
        """Listed keys the bucket lacks are named once (text and --json), spaces hinted."""
        objects = seed(s3, bucket, {"a.txt": b"a", "b.txt": b"b"})
        listing = tmp_path / "keys.txt"
        listing.write_text("a.txt\n b.txt \nnope.txt\n")
        res = cli.sync(bucket, mirror, "--files-from", str(listing), env={"S3SYNC_LOG__LEVEL": "WARNING"})
        assert res.returncode == 0, res
        assert tree(mirror) == {"a.txt": objects["a.txt"]}
        note = [ln for ln in res.stdout.splitlines() if "not found in the bucket" in ln]
        assert len(note) == 1, res
        head = "2 keys listed in --files-from not found in the bucket: ' b.txt ', 'nope.txt'"
        assert note[0].startswith(head), note
        assert "1 with leading/trailing whitespace" in note[0]
        assert "keys listed in --files-from not found in the bucket" in res.stderr, res.stderr
        out = cli.sync(bucket, mirror, "--files-from", str(listing), "--json").json()
        assert out["files_from_missing"] == {"count": 2, "keys": [" b.txt ", "nope.txt"], "whitespace": 1}
        clean = tmp_path / "clean.txt"
        clean.write_text("a.txt\n")
        res = cli.sync(bucket, mirror, "--files-from", str(clean))
        assert "not found in the bucket" not in res.output, res

    def test_age_against_last_modified(self, cli: CliRunner, s3: Any, bucket: str, mirror: Path) -> None:
        """Objects just written are younger than 1h: --min-age 1h takes none, --max-age 1h takes all."""
        objects = seed(s3, bucket, {"new1": b"1", "new2": b"2"})
        assert cli.sync(bucket, mirror, "--min-age", "1h").returncode == 0
        assert tree(mirror) == {}
        assert cli.sync(bucket, mirror, "--max-age", "1h").returncode == 0
        assert tree(mirror) == objects

    def test_inverted_bounds_quote_what_was_typed(self, cli: CliRunner, bucket: str, mirror: Path) -> None:
        """--min-age 2d --max-age 1d: exit 2 naming both values as typed, not the seconds they became."""
        res = cli.sync(bucket, mirror, "--min-age", "2d", "--max-age", "1d")
        assert res.returncode == 2, res
        assert "2d is larger than --max-age 1d" in res.stderr, res.stderr
        assert "172800" not in res.stderr
        res = cli.sync(bucket, mirror, "--min-size", "10M", "--max-size", "1K")
        assert res.returncode == 2 and "10M is larger than --max-size 1K" in res.stderr, res

    def test_filtered_keys_are_never_deleted(
        self, cli: CliRunner, s3: Any, bucket: str, mirror: Path
    ) -> None:
        """s5cmd#815: with --delete --max-size, big local files (in the bucket or not) stay."""
        objects = seed(s3, bucket, {"small1": b"s", "small2": b"t", "big1": b"B" * 5000, "big2": b"C" * 5000})
        assert cli.sync(bucket, mirror).returncode == 0
        assert tree(mirror) == objects
        delete_objects(s3, bucket, ["small2", "big2"])
        res = cli.sync(bucket, mirror, "--delete", "--max-size", "1K")
        assert res.returncode == 0, res
        # small2 is gone from the bucket and passes the filter: deleted. big1 (still in the bucket)
        # and big2 (gone from it) are outside the filter: left exactly as they were.
        assert tree(mirror) == {"small1": b"s", "big1": objects["big1"], "big2": objects["big2"]}

    def test_verify_honours_the_filters(self, cli: CliRunner, s3: Any, bucket: str, mirror: Path) -> None:
        seed(s3, bucket, {"small": b"s", "big": b"B" * 5000})
        assert cli.sync(bucket, mirror, "--max-size", "1K").returncode == 0
        assert cli.verify(bucket, mirror).returncode == 1  # "big" is missing without the filter
        res = cli.verify(bucket, mirror, "--max-size", "1K")
        assert res.returncode == 0, res

    @pytest.mark.parametrize(
        ("flag", "value", "expect"),
        [
            ("--min-size", "big", "'big' is not a size"),
            ("--max-age", "2y", "'2y' is not a duration"),
            ("--version-at", "yesterday", "not an RFC 3339 timestamp"),
        ],
    )
    def test_bad_values_name_the_flag(
        self, cli: CliRunner, bucket: str, mirror: Path, flag: str, value: str, expect: str
    ) -> None:
        res = cli.sync(bucket, mirror, flag, value)
        assert res.returncode == 2
        assert flag in res.stderr and expect in res.stderr, res.stderr

    def test_missing_files_from_is_exit_2(
        self, cli: CliRunner, bucket: str, mirror: Path, tmp_path: Path
    ) -> None:
        res = cli.sync(bucket, mirror, "--files-from", str(tmp_path / "absent.txt"))
        assert res.returncode in (1, 2), res
        assert "absent.txt" in res.output


def _rfc3339(ts: float) -> str:
    return dt.datetime.fromtimestamp(ts, dt.UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def _wait_past(ts: float) -> None:
    """S3 LastModified has whole seconds: wait until the clock is in a later second than ``ts``."""
    while time.time() < int(ts) + 1.05:
        time.sleep(0.05)


class TestVersionAt:
    """--version-at: a versioned bucket rewound to an instant, GETs pinned to those versions."""

    @PATHS
    def test_rewound_mirror_and_verify(
        self, cli: CliRunner, s3: Any, bucket: str, mirror: Path, fast_get: str
    ) -> None:
        s3.put_bucket_versioning(Bucket=bucket, VersioningConfiguration={"Status": "Enabled"})
        s3.put_object(Bucket=bucket, Key="a", Body=b"a-v1")
        s3.put_object(Bucket=bucket, Key="b", Body=b"b-v1")
        s3.put_object(Bucket=bucket, Key="gone-before", Body=b"x")
        s3.delete_object(Bucket=bucket, Key="gone-before")  # a delete marker before the instant
        first = s3.head_object(Bucket=bucket, Key="b")["LastModified"].timestamp()
        _wait_past(first)
        instant = time.time()
        _wait_past(instant)
        s3.put_object(Bucket=bucket, Key="a", Body=b"a-v2")
        s3.delete_object(Bucket=bucket, Key="b")  # a delete marker after the instant
        s3.put_object(Bucket=bucket, Key="later", Body=b"new")

        res = cli.sync(bucket, mirror, "--version-at", _rfc3339(instant), env=_env(fast_get))
        assert res.returncode == 0, res
        assert tree(mirror) == {"a": b"a-v1", "b": b"b-v1"}
        assert os.stat(mirror / "a").st_mtime <= instant

        assert cli.verify(bucket, mirror, "--version-at", _rfc3339(instant)).returncode == 0
        now = cli.verify(bucket, mirror)
        assert now.returncode == 1, now  # today's bucket differs: a changed, b deleted, later new

    def test_big_object_rewound_through_ranged_parts(
        self, cli: CliRunner, s3: Any, bucket: str, mirror: Path
    ) -> None:
        """The ranged path pins every part to the old version id too."""
        s3.put_bucket_versioning(Bucket=bucket, VersioningConfiguration={"Status": "Enabled"})
        old, new = body_for("v1", 6 * MIB), body_for("v2", 6 * MIB)
        s3.put_object(Bucket=bucket, Key="big", Body=old)
        first = s3.head_object(Bucket=bucket, Key="big")["LastModified"].timestamp()
        _wait_past(first)
        instant = time.time()
        _wait_past(instant)
        s3.put_object(Bucket=bucket, Key="big", Body=new)
        env = _env("true", S3SYNC_SYNC__MULTIPART_THRESHOLD_MB="5", S3SYNC_SYNC__PART_SIZE_MB="5")
        res = cli.sync(bucket, mirror, "--version-at", _rfc3339(instant), env=env)
        assert res.returncode == 0, res
        assert tree(mirror) == {"big": old}


class TestRcloneMtime:
    """x-amz-meta-mtime (rclone's) sets the local mtime; the next pass sees the file unchanged."""

    @PATHS
    def test_mtime_from_metadata(
        self, cli: CliRunner, s3: Any, bucket: str, mirror: Path, fast_get: str
    ) -> None:
        s3.put_object(Bucket=bucket, Key="r", Body=b"from rclone", Metadata={"mtime": "1600000000.25"})
        s3.put_object(Bucket=bucket, Key="plain", Body=b"no metadata")
        assert cli.sync(bucket, mirror, env=_env(fast_get)).returncode == 0
        assert os.stat(mirror / "r").st_mtime == pytest.approx(1600000000.25, abs=1e-3)
        assert os.stat(mirror / "plain").st_mtime > 1600000000.25 + 86400
        again = cli.sync(bucket, mirror, env=_env(fast_get))
        assert again.returncode == 0, again
        assert again.summary()["downloaded"] == 0, again


class TestFilteredCounting:
    """One rule: every key a filter leaves out is a "filtered" skip; unchanged is never a skip."""

    async def test_metrics_stats_and_report_agree(
        self, aiohttp_client: Any, make_settings: Any, s3: Any, bucket: str, mirror: Path, tmp_path: Path
    ) -> None:
        import re

        from s3sync.daemon.app import create_app

        seed(s3, bucket, {"a.txt": b"a", "b.tmp": b"b", "c.txt": b"c", "big.txt": b"B" * 5000})
        listing = tmp_path / "keys.txt"
        listing.write_text("a.txt\nb.tmp\nbig.txt\n")
        settings = make_settings(
            bucket, mirror, sync={"exclude": ["*.tmp"], "files_from": str(listing), "max_size": "1K"}
        )
        client = await aiohttp_client(create_app(settings))
        first = await (await client.post("/api/v1/sync")).json()
        # b.tmp (exclude), c.txt (not listed), big.txt (--max-size): three filtered skips
        assert (first["downloaded"], first["skipped"], first["unchanged"]) == (1, 3, 0), first
        second = await (await client.post("/api/v1/sync")).json()
        assert (second["downloaded"], second["skipped"], second["unchanged"]) == (0, 3, 1), second
        stats = await (await client.get("/api/v1/stats")).json()
        assert stats["skipped_by_reason"] == {"filtered": 6}, stats
        assert stats["files_skipped"] == 6 and stats["files_unchanged"] == 1, stats
        text = await (await client.get("/metrics")).text()

        def value(series: str) -> float:
            m = re.search(rf"(?m)^{re.escape(series)} (\S+)$", text)
            assert m, series
            return float(m.group(1))

        assert value('s3sync_files_skipped_total{reason="filtered"}') == 6
        assert 'reason="unchanged"' not in text
        assert value("s3sync_files_unchanged_total") == 1
        assert tree(mirror) == {"a.txt": b"a"}
