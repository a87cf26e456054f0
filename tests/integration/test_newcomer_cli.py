"""Issue 23, the command line: set-up mistakes are one line and exit 2; --json is always one object.

Real ``python -m s3sync`` processes against a real moto server.
"""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest
from support.s3kit import CliRunner, clean_environ, seed, tree


class TestStatusUrl:
    """``status --url`` without a scheme: one line naming the fix, exit 2, no traceback."""

    @pytest.mark.parametrize("url", ["notaurl", "localhost:8899", "ftp://h/x", "http://"])
    def test_bad_url(self, cli: CliRunner, url: str) -> None:
        res = cli("status", "--url", url)
        assert res.returncode == 2, res
        assert "Traceback" not in res.stderr, res
        lines = res.stderr.strip().splitlines()
        assert len(lines) == 1 and "http://" in lines[0] and url in lines[0], res

    def test_bad_url_json(self, cli: CliRunner) -> None:
        res = cli("status", "--url", "localhost:8899", "--json")
        assert res.returncode == 2, res
        assert "http://localhost:8899" in res.json()["message"]


class TestJsonBadFlag:
    """``--json`` with a bad flag value still prints exactly one JSON object on stdout."""

    @pytest.mark.parametrize(
        "args",
        [
            ("sync", "--json", "--bwlimit", "abc"),
            ("sync", "--bwlimit", "abc", "--json"),
            ("verify", "--json", "--min-size", "lots"),
            ("sync", "--json", "--max-delete", "many"),
            ("sync", "--json", "--exclude-storage-class", "FOO"),
            ("sync", "--json", "--no-such-flag"),
        ],
    )
    def test_one_object(self, cli: CliRunner, args: tuple[str, ...]) -> None:
        res = cli(*args)
        assert res.returncode == 2, res
        data = res.json()
        assert set(data) == {"error", "message"} and data["error"] == "usage", data
        assert "Traceback" not in res.stderr

    def test_without_json_stdout_is_empty(self, cli: CliRunner) -> None:
        res = cli("sync", "--bwlimit", "abc")
        assert res.returncode == 2 and res.stdout == "", res
        assert "--bwlimit" in res.stderr


class TestDeleteGuardHints:
    """Each guard says how to lift it, and ``--max-delete`` lifts the count guard for one run."""

    def test_hint_then_flag(self, cli: CliRunner, s3: Any, bucket: str, mirror: Path) -> None:
        keys = {f"k{i}.txt": b"x" for i in range(4)}
        seed(s3, bucket, keys)
        assert cli.sync(bucket, mirror).returncode == 0
        for k in list(keys)[:3]:
            s3.delete_object(Bucket=bucket, Key=k)
        res = cli.sync(bucket, mirror, "--delete")
        assert res.returncode == 1, res
        assert "--max-delete 3" in res.output, res
        assert set(tree(mirror)) == set(keys)
        res = cli.sync(bucket, mirror, "--delete", "--max-delete", "3")
        assert res.returncode == 0, res
        assert set(tree(mirror)) == {"k3.txt"}

    def test_empty_source_then_max_delete(self, cli: CliRunner, s3: Any, bucket: str, mirror: Path) -> None:
        seed(s3, bucket, {"a": b"1", "b": b"2"})
        assert cli.sync(bucket, mirror).returncode == 0
        for k in ("a", "b"):
            s3.delete_object(Bucket=bucket, Key=k)
        res = cli.sync(bucket, mirror, "--delete")
        assert res.returncode == 1 and "--allow-empty-source" in res.output, res
        res = cli.sync(bucket, mirror, "--delete", "--allow-empty-source")
        assert res.returncode == 1 and "--max-delete 2" in res.output, res
        res = cli.sync(bucket, mirror, "--delete", "--allow-empty-source", "--max-delete", "-1")
        assert res.returncode == 0 and tree(mirror) == {}, res


class TestStorageClassTypo:
    def test_refused_in_config_too(self, cli: CliRunner, bucket: str, mirror: Path) -> None:
        res = cli.sync(bucket, mirror, env={"S3SYNC_SYNC__EXCLUDE_STORAGE_CLASSES": "GLACIER,FOO"})
        assert res.returncode == 2 and "FOO" in res.stderr and "Traceback" not in res.stderr, res
        res = cli.sync(bucket, mirror, "--exclude-storage-class", "glacier", "--json")
        assert res.returncode == 0, res
        json.loads(res.stdout)


def _demo(directory: Path, tmp_path: Path) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [sys.executable, "-m", "s3sync", "demo", "--port", "0", "--dir", str(directory)],
        cwd=tmp_path,
        env=clean_environ() | {"PYTHONUNBUFFERED": "1"},
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )


def _stop(proc: subprocess.Popen[str]) -> str:
    proc.send_signal(signal.SIGTERM)
    out, _ = proc.communicate(timeout=60)
    return out


class TestDemoOwnsItsMirror:
    """Restarting the demo starts its mirror clean: no delete guard from the last run's files."""

    def test_restart(self, tmp_path: Path) -> None:
        from s3sync.demo import DEMO_OBJECTS

        d = tmp_path / "demo-mirror"
        for run in range(2):
            proc = _demo(d, tmp_path)
            try:
                deadline = time.monotonic() + 60
                while set(tree(d)) != set(DEMO_OBJECTS):
                    assert proc.poll() is None, proc.communicate()[0]
                    assert time.monotonic() < deadline, tree(d).keys()
                    time.sleep(0.2)
                if run == 0:  # what the first run's uploads left in the mirror
                    for i in range(40):
                        (d / "data" / f"uploaded-{i}.txt").write_text("x")
            finally:
                out = _stop(proc)
            assert "guard" not in out, out
        assert set(tree(d)) == set(DEMO_OBJECTS)

    def test_foreign_directory_refused(self, tmp_path: Path) -> None:
        d = tmp_path / "precious"
        d.mkdir()
        (d / "thesis.tex").write_text("years of work")
        p = subprocess.run(
            [sys.executable, "-m", "s3sync", "demo", "--port", "0", "--dir", str(d), "--exit-after", "1"],
            env=clean_environ(),
            capture_output=True,
            text=True,
            timeout=120,
            check=False,
        )
        assert p.returncode == 2, (p.stdout, p.stderr)
        assert "--dir" in p.stderr and "Traceback" not in p.stderr, p.stderr
        assert (d / "thesis.tex").read_text() == "years of work"
