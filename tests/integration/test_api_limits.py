"""Issue 20, slowloris: the API's time limits on heads and bodies and its connection cap.

A real ``s3sync serve`` subprocess and real sockets that trickle bytes. Before the
fix the daemon set no time limit on reading a request and no cap on connections:
each of these clients held its socket for as long as it liked.
"""

from __future__ import annotations

import socket
import time
from collections.abc import Iterator
from contextlib import closing
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import pytest
from support.daemon import Daemon, write_config
from support.s3kit import clean_environ

DEADLINE = 20.0  # generous: the limits below are 1-2 s, the box may be busy


@pytest.fixture
def serve(tmp_path: Path, moto_endpoint: str, bucket: str) -> Iterator[Any]:
    made: list[Daemon] = []

    def _start(**api: str) -> tuple[str, int]:
        n = len(made)
        log_file = tmp_path / f"serve{n}.log"
        cfg = write_config(tmp_path / f"serve{n}.toml", bucket, moto_endpoint, tmp_path / f"m{n}", log_file)
        env = clean_environ()
        env.update({f"S3SYNC_API__{k.upper()}": v for k, v in api.items()})
        d = Daemon.from_config(cfg, log_file, env)
        made.append(d)
        u = urlsplit(d.url)
        assert u.hostname is not None and u.port is not None
        return u.hostname, u.port

    yield _start
    for d in made:
        d.stop()


def connect(addr: tuple[str, int]) -> socket.socket:
    s = socket.create_connection(addr, timeout=DEADLINE)
    s.settimeout(0.2)
    return s


def trickle_until_closed(s: socket.socket, data: bytes, pause: float) -> tuple[int, bytes]:
    """Send ``data`` a byte at a time until the server hangs up; (bytes sent, what came back)."""
    got = b""
    end = time.monotonic() + DEADLINE
    sent = 0
    for b in data:
        if time.monotonic() > end:
            break
        try:
            s.sendall(bytes([b]))
            sent += 1
        except OSError:
            break
        try:
            chunk = s.recv(4096)
            if not chunk:
                return sent, got
            got += chunk
        except TimeoutError:
            pass
        except OSError:
            return sent, got
        time.sleep(pause)
    return sent, got + read_to_eof(s)


def read_to_eof(s: socket.socket) -> bytes:
    got = b""
    end = time.monotonic() + DEADLINE
    while time.monotonic() < end:
        try:
            chunk = s.recv(4096)
        except TimeoutError:
            continue
        except ConnectionResetError:
            return got  # closed with request bytes unread: a reset instead of a FIN
        if not chunk:
            return got
        got += chunk
    raise AssertionError(f"the server never closed the connection (got {got[:200]!r})")


def http(addr: tuple[str, int], raw: bytes) -> bytes:
    with closing(connect(addr)) as s:
        s.sendall(raw)
        return read_to_eof(s)


SLOW = {"header_timeout_seconds": "1", "body_timeout_seconds": "1"}


class TestTimeouts:
    def test_trickled_head_is_cut_off(self, serve: Any) -> None:
        addr = serve(**SLOW)
        head = b"GET /ping HTTP/1.1\r\nHost: x\r\n" + b"X-Slow: " + b"a" * 400 + b"\r\n\r\n"
        with closing(connect(addr)) as s:
            sent, got = trickle_until_closed(s, head, 0.02)
        assert sent < len(head), "the whole trickled head was accepted"
        assert got.startswith(b"HTTP/1.1 408"), got[:200]
        assert b'"request_timeout"' in got

    def test_silent_connection_is_closed(self, serve: Any) -> None:
        addr = serve(**SLOW)
        with closing(connect(addr)) as s:
            got = read_to_eof(s)
        assert got.startswith(b"HTTP/1.1 408"), got[:200]

    def test_trickled_body_is_cut_off(self, serve: Any) -> None:
        addr = serve(**SLOW)
        body = b'{"Records": []}' + b" " * 985
        head = (
            b"POST /api/v1/s3-notification HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
            b"Content-Length: %d\r\n\r\n" % len(body)
        )
        with closing(connect(addr)) as s:
            s.sendall(head)
            sent, got = trickle_until_closed(s, body, 0.02)
        assert sent < len(body), "the whole trickled body was accepted"
        assert got.startswith(b"HTTP/1.1 408"), got[:200]

    def test_prompt_clients_are_unaffected(self, serve: Any) -> None:
        """Keep-alive requests, and a request whose handler outlives the body timeout, still answer."""
        addr = serve(**SLOW)
        with closing(connect(addr)) as s:
            for _ in range(3):
                s.sendall(b"GET /ping HTTP/1.1\r\nHost: x\r\n\r\n")
                got = b""
                end = time.monotonic() + DEADLINE
                while b"\r\n\r\n" not in got and time.monotonic() < end:
                    try:
                        got += s.recv(4096)
                    except TimeoutError:
                        pass
                assert got.startswith(b"HTTP/1.1 200"), got[:200]
                time.sleep(0.3)  # idle between requests: keep-alive, not a head timeout
        body = b'{"Records": []}'
        answer = http(
            addr,
            b"POST /api/v1/s3-notification HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
            b"Content-Length: %d\r\nConnection: close\r\n\r\n%s" % (len(body), body),
        )
        assert answer.split(b"\r\n", 1)[0] in (b"HTTP/1.1 200 OK", b"HTTP/1.1 202 Accepted"), answer[:300]


class TestConnectionCap:
    def test_connections_beyond_the_cap_get_503_and_a_freed_slot_serves_again(self, serve: Any) -> None:
        addr = serve(max_connections="3", header_timeout_seconds="60")
        held = [connect(addr) for _ in range(3)]
        try:
            for s in held:
                s.sendall(b"GET /pi")  # half a head each: they stay open
            extra = http(addr, b"GET /ping HTTP/1.1\r\nHost: x\r\n\r\n")
            assert extra.startswith(b"HTTP/1.1 503"), extra[:200]
            assert b"Retry-After: 1" in extra and b'"too_many_connections"' in extra
            held.pop().close()
            end = time.monotonic() + DEADLINE
            while True:  # the server notices the close on its next loop turn
                answer = http(addr, b"GET /ping HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
                if answer.startswith(b"HTTP/1.1 200") or time.monotonic() > end:
                    break
                time.sleep(0.05)
            assert answer.startswith(b"HTTP/1.1 200"), answer[:200]
        finally:
            for s in held:
                s.close()
