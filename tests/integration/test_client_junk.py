"""Client junk against a real ``s3sync serve`` (issue 23 bug 4, issue 19): JSON 4xx, one WARNING.

Each request is sent byte for byte over a socket to the daemon process; the daemon's JSON
log file must then hold one WARNING line about it and no ERROR and no traceback. The 400s
aiohttp writes before the application runs are JSON too, as the README says of every error.
"""

from __future__ import annotations

import gzip
import json
import socket
import time
import zlib
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import pytest
from support.daemon import Daemon, write_config
from support.s3kit import clean_environ

N = "/api/v1/s3-notification"
EVENT = json.dumps({"Records": [{"eventSource": "aws:s3", "eventName": "ObjectCreated:Put"}] * 40}).encode()


@pytest.fixture
def daemon(tmp_path: Path, bucket: str, moto_endpoint: str, mirror: Path) -> Iterator[Daemon]:
    log_file = tmp_path / "daemon.log"
    cfg = write_config(tmp_path / "c.toml", bucket, moto_endpoint, mirror, log_file)
    d = Daemon.from_config(cfg, log_file, clean_environ())
    try:
        yield d
    finally:
        d.stop()


def _send(d: Daemon, data: bytes, *, close_early: bool = False) -> tuple[int, dict[str, str], bytes]:
    u = urlsplit(d.url)
    with socket.create_connection((u.hostname, u.port), timeout=15) as s:
        s.sendall(data)
        if close_early:
            return 0, {}, b""
        out = b""
        while chunk := s.recv(65536):
            out += chunk
    head, _, body = out.partition(b"\r\n\r\n")
    lines = head.decode("latin-1").split("\r\n")
    headers = dict(ln.split(": ", 1) for ln in lines[1:] if ": " in ln)
    return int(lines[0].split()[1]), {k.lower(): v for k, v in headers.items()}, body


def _post(headers: str, body: bytes) -> bytes:
    return f"POST {N} HTTP/1.1\r\nHost: x\r\n{headers}Connection: close\r\n\r\n".encode() + body


def _new_lines(d: Daemon, before: int, within: float = 30) -> list[dict[str, Any]]:
    """The log lines written after ``before`` once a WARNING is among them (or the deadline)."""
    deadline = time.monotonic() + within
    while True:
        lines = d.lines()[before:]
        if any(ln.get("level") == "warning" for ln in lines) or time.monotonic() > deadline:
            time.sleep(0.3)  # anything logged right after it (a second line, a traceback) too
            return d.lines()[before:]
        time.sleep(0.05)


def _gz_cut() -> bytes:
    gz = gzip.compress(EVENT * 4)
    return gz[: len(gz) // 2]


CASES = {
    "content-length abc": _post("Content-Length: abc\r\n", b"{}"),
    "bad chunk size": _post("Transfer-Encoding: chunked\r\n", b"zz\r\nabc\r\n0\r\n\r\n"),
    "request line too long": b"GET /" + b"a" * 20000 + b" HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n",
    "header too long": b"GET /ping HTTP/1.1\r\nHost: x\r\nX-Long: "
    + b"a" * 20000
    + b"\r\nConnection: close\r\n\r\n",
    "gzip that is not gzip": _post("Content-Encoding: gzip\r\nContent-Length: 14\r\n", b'{"Records":[]}'),
    "truncated gzip": _post(f"Content-Encoding: gzip\r\nContent-Length: {len(_gz_cut())}\r\n", _gz_cut()),
    "truncated gzip, chunked": _post(
        "Content-Encoding: gzip\r\nTransfer-Encoding: chunked\r\n",
        b"%x\r\n" % len(_gz_cut()) + _gz_cut() + b"\r\n0\r\n\r\n",
    ),
    "truncated deflate": _post(
        "Content-Encoding: deflate\r\nContent-Length: 40\r\n", zlib.compress(EVENT * 4)[:40]
    ),
    "unknown content-encoding": _post("Content-Encoding: bogus\r\nContent-Length: 14\r\n", b'{"Records":[]}'),
    "content-length over the cap": _post("Content-Length: 999999999\r\n", b"{" * 100),
}


@pytest.mark.parametrize("name", list(CASES))
def test_junk_is_a_json_4xx_and_one_warning(daemon: Daemon, name: str) -> None:
    before = len(daemon.lines())
    status, headers, body = _send(daemon, CASES[name])
    assert 400 <= status < 500, (status, body)
    assert headers.get("content-type", "").startswith("application/json"), (headers, body)
    err = json.loads(body)
    assert set(err) == {"error", "message"} and "\n" not in err["message"], err
    assert "aaaa" not in err["message"]  # the client's bytes are not echoed back
    lines = _new_lines(daemon, before)
    warnings = [ln for ln in lines if ln.get("level") == "warning"]
    assert len(warnings) == 1, lines
    assert not [ln for ln in lines if ln.get("level") in ("error", "critical")], lines
    assert not [ln for ln in lines if "exception" in ln or "Traceback" in json.dumps(ln)], lines


def test_disconnect_mid_body(daemon: Daemon) -> None:
    before = len(daemon.lines())
    _send(
        daemon,
        _post("Content-Length: 100000\r\n", b"{" * 1000).replace(b"Connection: close\r\n", b""),
        close_early=True,
    )
    lines = _new_lines(daemon, before)
    assert [ln["event"] for ln in lines if ln.get("level") == "warning"] == [
        "client disconnected before sending the whole body"
    ], lines
    assert not [ln for ln in lines if ln.get("level") in ("error", "critical") or "exception" in ln], lines
    assert _send(daemon, b"GET /ping HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")[0] == 200
