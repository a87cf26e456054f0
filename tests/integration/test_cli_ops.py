"""Operator-facing CLI behaviour: `status` against a real daemon, `--json` purity, the progress
bar only on terminals, and one clear stderr line (exit 2) for each common set-up mistake.

Everything runs the real `python -m s3sync` in a subprocess against the session moto server,
a real `serve` process, or a tiny stand-in S3 where moto cannot emulate AWS (wrong region).
"""

from __future__ import annotations

import json
import os
import re
import socket
import subprocess
import sys
import threading
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from support.daemon import Daemon, write_config
from support.rawserver import RawServer, ServerConn, response
from support.s3kit import AWS_ENV, CliResult, CliRunner, clean_environ, seed

ESC = "\x1b"


@pytest.fixture
def daemon(moto_endpoint: str, s3: Any, bucket: str, mirror: Path, tmp_path: Path) -> Iterator[Daemon]:
    """A running daemon with api.token = "s3cr3t-token" and DEBUG JSON logs in a file."""
    seed(s3, bucket, {"a.txt": b"alpha", "dir/b.txt": b"bravo"})
    log_file = tmp_path / "logs" / "s3sync.log"
    cfg = write_config(tmp_path / "serve.toml", bucket, moto_endpoint, mirror, log_file,
                       token="s3cr3t-token", level="DEBUG")
    d = Daemon.from_config(cfg, log_file, clean_environ())
    try:
        yield d
    finally:
        assert d.stop() == 0


def status_config(tmp_path: Path, url: str, token: str | None) -> Path:
    """A config for `s3sync status` pointing at the daemon's port, with or without its token."""
    port = url.rsplit(":", 1)[1]
    token_line = f'token = "{token}"\n' if token else ""
    cfg = tmp_path / f"status-{token or 'none'}.toml"
    cfg.write_text(f"[api]\nport = {port}\n{token_line}")
    return cfg


def one_stderr_line(r: CliResult) -> str:
    """The contract for set-up mistakes: exactly one line on stderr, prefixed ``s3sync:``."""
    lines = [ln for ln in r.stderr.splitlines() if ln.strip()]
    assert len(lines) == 1, r
    assert lines[0].startswith("s3sync: "), r
    return lines[0]


class TestStatus:
    """`s3sync status` asks a running daemon for its state over /api/v1/stats."""

    def test_status_json_human_and_token(self, daemon: Daemon, cli: CliRunner, tmp_path: Path) -> None:
        """--json is the daemon's stats object; the human form is aligned lines; a missing token is exit 2."""
        good = status_config(tmp_path, daemon.url, "s3cr3t-token")
        r = cli("status", "--config", str(good), "--json")
        assert r.returncode == 0, r
        data = r.json()
        for k in ("files_synced", "queue_depth", "in_flight", "last_reconcile"):
            assert k in data, data
        assert ESC not in r.stdout

        human = cli("status", "--config", str(good))
        assert human.returncode == 0, human
        assert re.search(r"^\s+queue_depth: \d+$", human.stdout, re.M), human

        explicit = cli("status", "--url", daemon.url, "--json", env={"S3SYNC_API__TOKEN": "s3cr3t-token"})
        assert explicit.returncode == 0, explicit
        assert "files_synced" in explicit.json()

        bad = cli("status", "--config", str(status_config(tmp_path, daemon.url, None)))
        assert bad.returncode == 2, bad
        assert "token" in one_stderr_line(bad)
        assert bad.stdout == ""

    def test_no_daemon_is_exit_1_with_json_error(self, cli: CliRunner, tmp_path: Path) -> None:
        """Nothing listening: one stderr line, exit 1, and a JSON error object with --json."""
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            port = s.getsockname()[1]
        r = cli("status", "--url", f"http://127.0.0.1:{port}", "--json")
        assert r.returncode == 1, r
        assert "cannot reach the daemon" in one_stderr_line(r)
        assert r.json()["error"] == "unreachable"


class TestMetrics:
    """/metrics of a real daemon follows Prometheus naming and has what the dashboards use."""

    def test_names_types_and_required_families(self, daemon: Daemon) -> None:
        """s3sync_ prefix; counters end _total; durations are _seconds histograms; key gauges exist."""
        from prometheus_client.parser import text_string_to_metric_families

        req = urllib.request.Request(daemon.url + "/metrics",
                                     headers={"Authorization": "Bearer s3cr3t-token"})
        with urllib.request.urlopen(req, timeout=10) as resp:
            assert resp.headers["Content-Type"].startswith("text/plain")
            text = resp.read().decode()
        families = {f.name: f for f in text_string_to_metric_families(text)}
        for name, fam in families.items():
            assert name.startswith("s3sync_"), name
            for sample in fam.samples:
                if fam.type == "counter":
                    assert sample.name.endswith(("_total", "_created")), sample.name
        types = {n: f.type for n, f in families.items()}
        assert types["s3sync_transfer_duration_seconds"] == "histogram"
        assert types["s3sync_event_to_file_seconds"] == "histogram"
        assert types["s3sync_queue_depth"] == "gauge"
        assert types["s3sync_last_reconcile_success_timestamp_seconds"] == "gauge"
        assert types["s3sync_bytes_downloaded"] == "counter"  # exposed as s3sync_bytes_downloaded_total
        assert "s3sync_bytes_downloaded_total" in text


class TestJsonOutput:
    """With --json, stdout is exactly one JSON document even when logs are verbose."""

    def test_sync_and_verify_stdout_is_pure_json(
        self, cli: CliRunner, s3: Any, bucket: str, mirror: Path
    ) -> None:
        """DEBUG logs go to stderr as JSON lines; stdout parses as one object with the documented keys."""
        seed(s3, bucket, {"x/1.bin": b"1" * 100, "x/2.bin": b"2" * 200})
        env = {"S3SYNC_LOG__LEVEL": "DEBUG"}
        r = cli.sync(bucket, mirror, "--json", env=env)
        assert r.returncode == 0, r
        report = json.loads(r.stdout)
        assert {k: report[k] for k in ("downloaded", "failed", "bytes")} == {
            "downloaded": 2, "failed": 0, "bytes": 300}
        assert set(report) >= {"deleted", "skipped", "unchanged", "seconds", "dry_run", "aborted", "errors"}
        assert r.stderr.strip(), "DEBUG logs should be on stderr"
        for line in r.stderr.splitlines():
            assert isinstance(json.loads(line), dict)  # JSON logs when stderr is not a terminal

        v = cli.verify(bucket, mirror, "--json", env=env)
        assert v.returncode == 0, v
        vj = json.loads(v.stdout)
        assert vj.get("identical") is True, vj

        (mirror / "x" / "1.bin").write_bytes(b"tampered")
        drift = cli.verify(bucket, mirror, "--json")
        assert drift.returncode == 1, drift
        assert json.loads(drift.stdout).get("identical") is False


class TestProgressBar:
    """The progress bar is for people: terminals only, never in pipes or --json output."""

    def test_no_escape_codes_when_piped(self, cli: CliRunner, s3: Any, bucket: str, mirror: Path) -> None:
        """Piped stdout/stderr carry plain text only."""
        seed(s3, bucket, {f"k{i}": b"z" * 10 for i in range(5)})
        r = cli.sync(bucket, mirror)
        assert r.returncode == 0, r
        assert ESC not in r.stdout and ESC not in r.stderr, r
        assert r.summary()["downloaded"] == 5

    @pytest.mark.skipif(not hasattr(os, "openpty"), reason="needs a pseudo-terminal")
    def test_bar_on_a_terminal_summary_stays_clean(
        self, moto_endpoint: str, s3: Any, bucket: str, mirror: Path, tmp_path: Path
    ) -> None:
        """With stderr on a pty the bar (files/s, MB/s, ETA) is drawn there; stdout keeps one plain line."""
        seed(s3, bucket, {f"p/{i:03d}": b"q" * 2048 for i in range(60)})
        primary, secondary = os.openpty()
        env = clean_environ() | {"COLUMNS": "160", "TERM": "xterm"}
        proc = subprocess.Popen(
            [sys.executable, "-m", "s3sync", "sync", "--bucket", bucket, "--endpoint-url", moto_endpoint,
             "--dest", str(mirror), "--concurrency", "2"],
            env=env, cwd=tmp_path, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=secondary,
        )
        os.close(secondary)
        chunks: list[bytes] = []

        def drain() -> None:  # a terminal that is not read blocks the writer: always read
            while True:
                try:
                    data = os.read(primary, 65536)
                except OSError:  # EIO: the child closed the terminal
                    return
                if not data:
                    return
                chunks.append(data)

        reader = threading.Thread(target=drain, daemon=True)
        reader.start()
        try:
            out, _ = proc.communicate(timeout=90)
        finally:
            if proc.poll() is None:
                proc.kill()
                proc.wait()
            reader.join(10)
            os.close(primary)
        tty = b"".join(chunks).decode("utf-8", "replace")
        assert proc.returncode == 0, (out, tty)
        assert ESC.encode() not in out
        assert "downloaded 60" in out.decode()
        assert ESC in tty, tty
        assert "files/s" in tty and "ETA" in tty, tty


# --------------------------------------------------------------------------- misconfigurations


REGION = "eu-west-1"


async def _regional_s3(conn: ServerConn) -> None:
    """Behaves like AWS for a bucket in eu-west-1: requests signed for another region get
    400 AuthorizationHeaderMalformed (with the Region field and x-amz-bucket-region header)."""
    req = await conn.read_request()
    if req is None:
        return
    method = req.split(b" ", 1)[0]
    m = re.search(rb"Credential=[^/]+/\d+/([^/]+)/s3/", req)
    signed_for = m.group(1).decode() if m else ""
    if signed_for != REGION:
        body = (
            "<?xml version='1.0' encoding='UTF-8'?><Error><Code>AuthorizationHeaderMalformed</Code>"
            f"<Message>The authorization header is malformed; the region '{signed_for}' is wrong; "
            f"expecting '{REGION}'</Message><Region>{REGION}</Region></Error>"
        ).encode()
        status = 400
    elif method == b"HEAD":
        body, status = b"", 200
    else:
        body = (b"<?xml version='1.0' encoding='UTF-8'?><ListBucketResult><Name>euro</Name>"
                b"<KeyCount>0</KeyCount><IsTruncated>false</IsTruncated></ListBucketResult>")
        status = 200
    headers = [("x-amz-bucket-region", REGION), ("Content-Type", "application/xml"), ("Connection", "close")]
    answer = response(status, body, headers)
    await conn.send(answer[: len(answer) - len(body)] if method == b"HEAD" else answer)


@pytest.fixture
def regional_s3() -> Iterator[str]:
    with RawServer(_regional_s3) as server:
        yield server.url


class TestMisconfigurations:
    """The top five set-up mistakes: one line on stderr naming the fix, exit 2, nothing downloaded."""

    def test_bucket_missing(self, cli: CliRunner, mirror: Path) -> None:
        """NoSuchBucket becomes "bucket 'x' does not exist" for sync and verify, and in --json."""
        r = cli.sync("no-such-bucket-here", mirror)
        assert r.returncode == 2, r
        assert one_stderr_line(r) == "s3sync: bucket 'no-such-bucket-here' does not exist"
        assert r.stdout == ""
        j = cli.verify("no-such-bucket-here", mirror, "--json")
        assert j.returncode == 2, j
        assert j.json() == {"error": "fatal", "message": "bucket 'no-such-bucket-here' does not exist"}
        assert one_stderr_line(j) == "s3sync: bucket 'no-such-bucket-here' does not exist"

    def test_wrong_region_moto(self, cli: CliRunner, s3: Any, mirror: Path) -> None:
        """A bucket created in eu-west-1 but configured as us-west-2 is named with both regions."""
        name = f"eu-{os.urandom(5).hex()}"
        s3.create_bucket(Bucket=name, CreateBucketConfiguration={"LocationConstraint": "eu-west-1"})
        r = cli.sync(name, mirror, "--region", "us-west-2")
        assert r.returncode == 2, r
        assert one_stderr_line(r) == (
            f"s3sync: bucket '{name}' is in region 'eu-west-1', not 'us-west-2' (set s3.region)")
        ok = cli.sync(name, mirror, "--region", "eu-west-1")
        assert ok.returncode == 0, ok

    def test_wrong_region_aws_style(self, cli: CliRunner, regional_s3: str, mirror: Path) -> None:
        """AWS's AuthorizationHeaderMalformed answer (which botocore silently follows) is still reported."""
        r = cli("sync", "--bucket", "euro", "--endpoint-url", regional_s3, "--dest", str(mirror),
                "--region", "us-east-1")
        assert r.returncode == 2, r
        assert "is in region 'eu-west-1', not 'us-east-1'" in one_stderr_line(r)
        v = cli("verify", "--bucket", "euro", "--endpoint-url", regional_s3, "--dest", str(mirror),
                "--region", "us-east-1")
        assert v.returncode == 2, v
        assert "is in region 'eu-west-1'" in one_stderr_line(v)

    def test_no_credentials(self, moto_endpoint: str, bucket: str, mirror: Path, tmp_path: Path) -> None:
        """No key in env, no profile files, no instance metadata: say where credentials come from."""
        env = {k: v for k, v in clean_environ().items() if k not in AWS_ENV}
        env |= {"AWS_SHARED_CREDENTIALS_FILE": "/nonexistent", "AWS_CONFIG_FILE": "/nonexistent",
                "AWS_EC2_METADATA_DISABLED": "true", "AWS_DEFAULT_REGION": "us-east-1"}
        runner = CliRunner(moto_endpoint, cwd=tmp_path, base_env=env)
        r = runner.sync(bucket, mirror)
        assert r.returncode == 2, r
        line = one_stderr_line(r)
        assert "no AWS credentials found" in line and "AWS_ACCESS_KEY_ID" in line

    def test_directory_not_writable(self, cli: CliRunner, bucket: str, tmp_path: Path) -> None:
        """A mirror path below a regular file cannot be created (works even as root)."""
        blocker = tmp_path / "a-file"
        blocker.write_text("not a directory")
        r = cli.sync(bucket, blocker / "mirror")
        assert r.returncode == 2, r
        line = one_stderr_line(r)
        assert "sync.local_dir" in line and str(blocker / "mirror") in line

    @pytest.mark.skipif(os.geteuid() == 0, reason="root ignores directory permissions")
    def test_directory_read_only(self, cli: CliRunner, bucket: str, tmp_path: Path) -> None:
        """A read-only mirror directory is named with the key to fix."""
        ro = tmp_path / "ro"
        ro.mkdir()
        ro.chmod(0o500)
        try:
            r = cli.sync(bucket, ro)
        finally:
            ro.chmod(0o700)
        assert r.returncode == 2, r
        assert "sync.local_dir" in one_stderr_line(r)

    def test_port_in_use(self, cli: CliRunner, bucket: str, mirror: Path) -> None:
        """`serve` on a port someone else listens on exits 2 at once, saying how to find the owner."""
        with socket.socket() as holder:
            holder.bind(("127.0.0.1", 0))
            holder.listen()
            port = holder.getsockname()[1]
            started = time.monotonic()
            r = cli("serve", "--port", str(port), env={
                "S3SYNC_S3__BUCKET": bucket, "S3SYNC_S3__ENDPOINT_URL": cli.endpoint,
                "S3SYNC_SYNC__LOCAL_DIR": str(mirror), "S3SYNC_SYNC__PERIODIC": "false"})
            elapsed = time.monotonic() - started
        assert r.returncode == 2, r
        line = one_stderr_line(r)
        assert f"127.0.0.1:{port}" in line and "address already in use" in line and "api.port" in line
        assert r.stdout == ""
        assert elapsed < 20, elapsed
