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
        from s3sync.cli.demo import DEMO_OBJECTS

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
            assert "\x1b[" not in out, out  # a redirected log has no colours
            assert "HTTP/1.1" not in out, out  # and no moto access lines
        assert set(tree(d)) == set(DEMO_OBJECTS)

    def test_busy_port_names_the_flag(self, tmp_path: Path) -> None:
        import socket

        with socket.socket() as busy:
            busy.bind(("127.0.0.1", 0))
            busy.listen()
            port = busy.getsockname()[1]
            p = subprocess.run(
                [sys.executable, "-m", "s3sync", "demo", "--port", str(port), "--dir", str(tmp_path / "d")],
                env=clean_environ(),
                capture_output=True,
                text=True,
                timeout=120,
                check=False,
            )
        assert p.returncode == 2, (p.stdout, p.stderr)
        assert "--port" in p.stderr and "api.port" not in p.stderr and "Traceback" not in p.stderr, p.stderr
        assert not (tmp_path / "d").exists()

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


class TestDryRunLists:
    """--dry-run says what it would download (with sizes) and delete, in text and in --json."""

    def test_text_and_json(self, cli: CliRunner, s3: Any, bucket: str, mirror: Path) -> None:
        seed(s3, bucket, {"keep.txt": b"k", "gone.txt": b"g"})
        assert cli.sync(bucket, mirror).returncode == 0
        s3.delete_object(Bucket=bucket, Key="gone.txt")
        seed(s3, bucket, {"new/big.bin": b"x" * 3 * 1024 * 1024, "new/small.txt": b"12345"})
        res = cli.sync(bucket, mirror, "--dry-run", "--delete", "--max-delete", "-1")
        assert res.returncode == 0, res
        lines = res.stdout.splitlines()
        assert any(ln.split() == ["would", "download", "3.0", "MiB", "new/big.bin"] for ln in lines), res
        assert any(ln.split() == ["would", "download", "5", "bytes", "new/small.txt"] for ln in lines), res
        assert any(ln.split() == ["would", "delete", "gone.txt"] for ln in lines), res
        assert lines[-1].startswith("dry run: would have downloaded 2, deleted 1"), res
        data = cli.sync(bucket, mirror, "--dry-run", "--delete", "--max-delete", "-1", "--json").json()
        assert {(w["operation"], w["key"], w["size"]) for w in data["would"]} == {
            ("download", "new/big.bin", 3 * 1024 * 1024),
            ("download", "new/small.txt", 5),
            ("delete", "gone.txt", None),
        }
        assert set(tree(mirror)) == {"keep.txt", "gone.txt"}


class TestWording:
    """Skips are not errors; sizes and counts read like a person wrote them."""

    def test_unsafe_key_is_one_skipped_line(self, cli: CliRunner, s3: Any, bucket: str, mirror: Path) -> None:
        seed(s3, bucket, {"a/../evil.txt": b"e", "ok.txt": b"o"})
        res = cli.sync(bucket, mirror)  # stderr is a pipe here: logs would be JSON lines there
        assert res.returncode == 0, res
        assert res.stderr.splitlines() == ["skipped: a/../evil.txt: '..' path segment (unsafe_key)"], res
        assert "error" not in res.stderr
        assert "downloaded 1, deleted 0, failed 0, skipped 1, unchanged 0, 1 bytes in " in res.stdout, res

    def test_verify_singular(self, cli: CliRunner, s3: Any, bucket: str, mirror: Path) -> None:
        seed(s3, bucket, {"one.txt": b"1"})
        assert cli.verify(bucket, mirror).stdout.strip() == "missing one.txt\nverified 1 object: 1 difference"
        assert cli.sync(bucket, mirror).returncode == 0
        assert cli.verify(bucket, mirror).stdout.strip() == "verified 1 object: identical"

    def test_env_var_named_and_no_doubled_value(self, cli: CliRunner, bucket: str, mirror: Path) -> None:
        res = cli.sync(bucket, mirror, env={"S3SYNC_SYNC__BOGUS": "1"})
        assert res.returncode == 2 and "S3SYNC_SYNC__BOGUS" in res.stderr, res
        res = cli.sync("Not_A_Bucket", mirror)
        assert res.returncode == 2 and res.stderr.count("Not_A_Bucket") == 1, res

    def test_max_age_bare_number_is_seconds(self, cli: CliRunner, s3: Any, bucket: str, mirror: Path) -> None:
        seed(s3, bucket, {"fresh.txt": b"f"})
        res = cli.sync(bucket, mirror, "--max-age", "3600")
        assert res.returncode == 0 and set(tree(mirror)) == {"fresh.txt"}, res
        res = cli.sync(bucket, mirror, "--max-age", "5x")
        assert res.returncode == 2 and "seconds, or a number with s, m, h, d or w" in res.stderr, res


class TestSetupMistakesCreateNothing:
    """A refused port is a set-up mistake (exit 2, naming the endpoint); a failed start writes nothing."""

    def test_refused_port(self, cli: CliRunner, bucket: str, tmp_path: Path) -> None:
        import socket

        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            dead = f"http://127.0.0.1:{s.getsockname()[1]}"
        dest = tmp_path / "never"
        res = cli("sync", "--bucket", bucket, "--endpoint-url", dead, "--dest", str(dest))
        assert res.returncode == 2, res
        assert res.stderr.strip().splitlines() == [
            f"s3sync: cannot connect to {dead}: connection refused (is s3.endpoint_url / "
            "--endpoint-url right, and is the server running?)"
        ], res
        assert not dest.exists()
        res = cli("sync", "--bucket", bucket, "--endpoint-url", dead, "--dest", str(dest), "--json")
        assert res.returncode == 2 and dead in res.json()["message"], res

    def test_missing_bucket_creates_no_mirror(self, cli: CliRunner, tmp_path: Path) -> None:
        dest = tmp_path / "never"
        res = cli.sync("no-such-bucket-h4", dest)
        assert res.returncode == 2, res
        assert not dest.exists()

    def test_default_dest_is_announced(self, cli: CliRunner, s3: Any, bucket: str) -> None:
        seed(s3, bucket, {"a.txt": b"a"})
        res = cli("sync", "--bucket", bucket, "--endpoint-url", cli.endpoint)
        assert res.returncode == 0, res
        where = cli.cwd / "downloaded_files"
        assert f"s3sync: no --dest given: mirroring into {where.resolve()} (sync.local_dir)" in res.stderr
        assert (where / "a.txt").read_bytes() == b"a"


def test_endpoint_that_is_not_s3(cli: CliRunner, tmp_path: Path) -> None:
    """--endpoint-url at something that is not S3 (here a plain web server): say so, exit 2."""
    import http.server
    import threading

    class NotS3(http.server.BaseHTTPRequestHandler):
        def do_HEAD(self) -> None:  # like the s3sync API or a web server: 404, no x-amz-* headers
            self.send_response(404)
            self.send_header("Content-Length", "0")
            self.end_headers()

        do_GET = do_HEAD

        def log_message(self, *args: Any) -> None:
            pass

    srv = http.server.ThreadingHTTPServer(("127.0.0.1", 0), NotS3)
    threading.Thread(target=srv.serve_forever, daemon=True).start()
    try:
        url = f"http://127.0.0.1:{srv.server_address[1]}"
        res = cli("sync", "--bucket", "some-bucket", "--endpoint-url", url, "--dest", str(tmp_path / "m"))
    finally:
        srv.shutdown()
        srv.server_close()
    assert res.returncode == 2, res
    assert res.stderr.strip().splitlines() == [
        f"s3sync: bucket 'some-bucket' does not exist, and {url} does not answer like an S3 endpoint "
        "(no x-amz-* headers): is s3.endpoint_url / --endpoint-url the S3 API?"
    ], res
    assert not (tmp_path / "m").exists()
