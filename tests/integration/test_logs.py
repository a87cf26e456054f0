"""Logs as operators meet them: JSON lines with request id, key, operation and duration from a
real daemon; console rendering on a terminal; the log file reopened on SIGHUP for logrotate."""

from __future__ import annotations

import json
import logging
import os
import signal
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import structlog
from support.daemon import Daemon, write_config
from support.s3kit import clean_environ, seed
from support.wait import poll

TOKEN = "log-test-token-0123"


def post_sync(url: str, request_id: str) -> dict[str, Any]:
    req = urllib.request.Request(
        url + "/api/v1/sync", method="POST", data=b"",
        headers={"Authorization": f"Bearer {TOKEN}", "X-Request-Id": request_id},
    )
    with urllib.request.urlopen(req, timeout=60) as resp:
        assert resp.headers["X-Request-Id"] == request_id
        data: dict[str, Any] = json.loads(resp.read())
        return data


@pytest.fixture
def daemon(moto_endpoint: str, s3: Any, bucket: str, mirror: Path, tmp_path: Path) -> Iterator[Daemon]:
    seed(s3, bucket, {"one.txt": b"1", "sub/two.txt": b"22"})
    log_file = tmp_path / "log" / "s3sync.log"
    cfg = write_config(tmp_path / "cfg.toml", bucket, moto_endpoint, mirror, log_file,
                       token=TOKEN, level="DEBUG")
    d = Daemon.from_config(cfg, log_file, clean_environ())
    try:
        yield d
    finally:
        assert d.stop() == 0


class TestDaemonLogs:
    """A running daemon writes one JSON object per line with the fields operators filter on."""

    def test_request_id_key_operation_duration_then_sighup_reopens(self, daemon: Daemon, s3: Any,
                                                                   bucket: str) -> None:
        """Request lines carry request_id and duration; transfers carry key, operation and duration;
        after logrotate's rename + SIGHUP, new lines land in a new file at the original path."""
        s3.put_object(Bucket=bucket, Key="three.txt", Body=b"333")
        post_sync(daemon.url, "req-abc-123")

        def fields() -> list[dict[str, Any]]:
            return daemon.lines()

        lines = poll(lambda: [ln for ln in fields() if ln.get("request_id") == "req-abc-123"
                              and "duration" in ln], within=30, what="a request line with request_id")
        assert lines[0]["level"] in ("debug", "info")
        applied = poll(lambda: [ln for ln in fields() if ln.get("key") == "three.txt"
                                and "operation" in ln and "duration" in ln],
                       within=30, what="a transfer line")
        assert applied[0]["operation"] in ("upsert", "download", "create")
        assert isinstance(applied[0]["duration"], (int, float))
        for ln in fields():
            assert {"event", "level", "timestamp"} <= set(ln), ln
            assert TOKEN not in json.dumps(ln)

        rotated = daemon.log_file.with_name("s3sync.log.1")
        daemon.log_file.rename(rotated)
        before = rotated.read_text()
        daemon.proc.send_signal(signal.SIGHUP)
        # The reopen happens on the event loop; keep asking until a request is logged anew.
        n = 0

        def reopened() -> bool:
            nonlocal n
            n += 1
            post_sync(daemon.url, f"after-hup-{n}")
            return daemon.log_file.exists() and "after-hup-" in daemon.log_file.read_text()

        poll(reopened, within=30, what="log lines in the reopened file")
        assert daemon.proc.poll() is None
        last = f'"after-hup-{n}"'
        assert last in daemon.log_file.read_text() and last not in rotated.read_text()
        assert rotated.read_text().startswith(before)
        assert all(isinstance(json.loads(x), dict) for x in daemon.log_file.read_text().splitlines())


class TestRendering:
    """One configure() call picks the renderer operators expect where the output goes."""

    @pytest.fixture(autouse=True)
    def _restore_logging(self) -> Iterator[None]:
        root = logging.getLogger()
        handlers, level = list(root.handlers), root.level
        try:
            yield
        finally:
            for h in list(root.handlers):
                root.removeHandler(h)
                h.close()
            for h in handlers:
                root.addHandler(h)
            root.setLevel(level)
            structlog.reset_defaults()

    @pytest.mark.skipif(not hasattr(os, "openpty"), reason="needs a pseudo-terminal")
    def test_console_on_a_terminal_json_in_a_file(self, monkeypatch: pytest.MonkeyPatch,
                                                  tmp_path: Path) -> None:
        """fmt="auto": coloured key=value text on a TTY; JSON when the same process logs to a file."""
        from s3sync import logs

        primary, secondary = os.openpty()
        with os.fdopen(secondary, "w", buffering=1) as tty:
            monkeypatch.setattr("sys.stderr", tty)
            logs.configure("INFO", "auto")
            structlog.get_logger("t").info("hello operator", key="a/b.txt", operation="upsert")
            tty.flush()
            out = os.read(primary, 65536).decode("utf-8", "replace")
        os.close(primary)
        assert "hello operator" in out and "key" in out and "a/b.txt" in out
        assert not out.lstrip().startswith("{")

        log_file = tmp_path / "x.log"
        logs.configure("INFO", "auto", log_file)
        structlog.get_logger("t").info("to a file", key="k", duration=0.5)
        for h in logging.getLogger().handlers:
            h.flush()
        line = json.loads(log_file.read_text().splitlines()[-1])
        assert line["event"] == "to a file" and line["key"] == "k" and line["duration"] == 0.5

    def test_capture_logs_sees_bound_fields(self) -> None:
        """Our processors keep structlog's testing hooks usable: bound key/operation are visible."""
        with structlog.testing.capture_logs() as captured:
            structlog.get_logger("t").bind(key="k1", operation="remove").info("applied", duration=0.01)
        assert captured == [{"key": "k1", "operation": "remove", "duration": 0.01, "event": "applied",
                             "log_level": "info"}]
