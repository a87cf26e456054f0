"""sd_notify client against real AF_UNIX datagram sockets standing in for systemd."""

from __future__ import annotations

import asyncio
import os
import signal
import socket
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
from support.daemon import Daemon
from support.rawserver import RawServer, ServerConn, response
from support.wait import poll

from s3sync.daemon.systemd import Notifier, watchdog_loop


class _FakeSystemd:
    """A bound datagram socket that records what a Notifier sends."""

    def __init__(self, sock: socket.socket, env_value: str) -> None:
        self.sock = sock
        self.env_value = env_value

    def recv(self, timeout: float = 5.0) -> dict[str, str]:
        self.sock.settimeout(timeout)
        data = self.sock.recv(4096).decode("utf-8")
        return dict(line.split("=", 1) for line in data.split("\n") if line)

    def pending(self) -> bool:
        self.sock.setblocking(False)
        try:
            self.sock.recv(4096, socket.MSG_PEEK)
        except BlockingIOError:
            return False
        finally:
            self.sock.setblocking(True)
        return True


@pytest.fixture
def fs_systemd(tmp_path: Path) -> Iterator[_FakeSystemd]:
    path = tmp_path / "notify.sock"
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    sock.bind(str(path))
    try:
        yield _FakeSystemd(sock, str(path))
    finally:
        sock.close()


@pytest.fixture
def abstract_systemd() -> Iterator[_FakeSystemd]:
    name = f"s3sync-test-{uuid.uuid4().hex}"
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    sock.bind(b"\0" + name.encode())
    try:
        yield _FakeSystemd(sock, "@" + name)
    finally:
        sock.close()


class TestDisabled:
    """Without NOTIFY_SOCKET every call is a silent no-op."""

    def test_unset_socket_is_disabled(self) -> None:
        n = Notifier.from_env({})
        assert n.enabled is False
        assert n.watchdog_interval is None
        n.ready("x")
        n.status("x")
        n.stopping()
        n.watchdog()
        n.close()

    async def test_watchdog_loop_returns_at_once_when_disabled(self) -> None:
        n = Notifier.from_env({"WATCHDOG_USEC": "1000000"})
        await asyncio.wait_for(watchdog_loop(n), timeout=1)

    def test_defaults_to_os_environ(self, monkeypatch: pytest.MonkeyPatch) -> None:
        monkeypatch.delenv("NOTIFY_SOCKET", raising=False)
        assert Notifier.from_env().enabled is False


class TestMessages:
    """Each call sends the documented sd_notify fields in one datagram."""

    def test_ready_with_status(self, fs_systemd: _FakeSystemd) -> None:
        n = Notifier.from_env({"NOTIFY_SOCKET": fs_systemd.env_value})
        assert n.enabled
        n.ready("serving 127.0.0.1:8888")
        assert fs_systemd.recv() == {"READY": "1", "STATUS": "serving 127.0.0.1:8888"}
        n.close()

    def test_ready_without_status(self, fs_systemd: _FakeSystemd) -> None:
        n = Notifier.from_env({"NOTIFY_SOCKET": fs_systemd.env_value})
        n.ready()
        assert fs_systemd.recv() == {"READY": "1"}
        n.close()

    def test_status_stopping_watchdog(self, fs_systemd: _FakeSystemd) -> None:
        n = Notifier.from_env({"NOTIFY_SOCKET": fs_systemd.env_value})
        n.status("reconciling")
        assert fs_systemd.recv() == {"STATUS": "reconciling"}
        n.stopping("draining 3 transfers")
        assert fs_systemd.recv() == {"STOPPING": "1", "STATUS": "draining 3 transfers"}
        n.watchdog()
        assert fs_systemd.recv() == {"WATCHDOG": "1"}
        n.close()

    def test_abstract_namespace_socket(self, abstract_systemd: _FakeSystemd) -> None:
        n = Notifier.from_env({"NOTIFY_SOCKET": abstract_systemd.env_value})
        n.ready()
        assert abstract_systemd.recv() == {"READY": "1"}
        n.close()

    def test_close_then_send_reopens(self, fs_systemd: _FakeSystemd) -> None:
        n = Notifier.from_env({"NOTIFY_SOCKET": fs_systemd.env_value})
        n.close()
        n.status("again")
        assert fs_systemd.recv() == {"STATUS": "again"}
        n.close()


class TestNeverRaises:
    """A vanished systemd socket is logged, not raised."""

    def test_missing_socket_path(self, tmp_path: Path) -> None:
        n = Notifier.from_env({"NOTIFY_SOCKET": str(tmp_path / "gone.sock")})
        assert n.enabled
        n.ready("x")
        n.watchdog()
        n.close()


class TestWatchdogInterval:
    """WATCHDOG_USEC halves into seconds, only for the pid it names."""

    def test_half_of_usec(self) -> None:
        n = Notifier.from_env({"NOTIFY_SOCKET": "@x", "WATCHDOG_USEC": "30000000"})
        assert n.watchdog_interval == 15.0

    def test_matching_pid(self) -> None:
        env = {"NOTIFY_SOCKET": "@x", "WATCHDOG_USEC": "2000000", "WATCHDOG_PID": str(os.getpid())}
        assert Notifier.from_env(env).watchdog_interval == 1.0

    @pytest.mark.parametrize("pid", ["1", "not-a-pid"])
    def test_other_pid_disables(self, pid: str) -> None:
        env = {"NOTIFY_SOCKET": "@x", "WATCHDOG_USEC": "2000000", "WATCHDOG_PID": pid}
        assert Notifier.from_env(env).watchdog_interval is None

    @pytest.mark.parametrize("usec", ["", "0", "-5", "abc"])
    def test_bad_usec(self, usec: str) -> None:
        n = Notifier.from_env({"NOTIFY_SOCKET": "@x", "WATCHDOG_USEC": usec})
        assert n.watchdog_interval is None


class TestWatchdogLoop:
    """The loop pings repeatedly from the event loop until cancelled."""

    async def test_pings_within_deadline(self, fs_systemd: _FakeSystemd) -> None:
        # 100 ms WATCHDOG_USEC -> a ping every 50 ms.
        n = Notifier.from_env({"NOTIFY_SOCKET": fs_systemd.env_value, "WATCHDOG_USEC": "100000"})
        assert n.watchdog_interval == pytest.approx(0.05)
        task = asyncio.create_task(watchdog_loop(n))
        pings = 0
        deadline = time.monotonic() + 5
        try:
            while pings < 3 and time.monotonic() < deadline:
                if fs_systemd.pending():
                    assert fs_systemd.recv() == {"WATCHDOG": "1"}
                    pings += 1
                else:
                    await asyncio.sleep(0.01)
        finally:
            task.cancel()
            with pytest.raises(asyncio.CancelledError):
                await task
            n.close()
        assert pings >= 3


async def _unavailable(conn: ServerConn) -> None:
    """A stand-in S3 that answers every request at once with 503 (S3 down: serve keeps retrying)."""
    req = await conn.read_request()
    if req is None:
        return
    body = (
        b'<?xml version="1.0" encoding="UTF-8"?><Error><Code>ServiceUnavailable</Code>'
        b"<Message>Please reduce your request rate.</Message></Error>"
    )
    answer = response(503, body, [("Content-Type", "application/xml"), ("Connection", "close")])
    await conn.send(answer[: len(answer) - len(body)] if req.startswith(b"HEAD ") else answer)


@pytest.fixture
def fake_s3() -> Iterator[str]:
    with RawServer(_unavailable) as server:
        yield server.url


class TestServeUnderSystemd:
    """`s3sync serve` speaks sd_notify as the unit file (Type=notify, WatchdogSec) expects."""

    def test_ready_watchdog_reload_stopping(
        self, fs_systemd: _FakeSystemd, fake_s3: str, tmp_path: Path
    ) -> None:
        env = {
            "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
            "NOTIFY_SOCKET": fs_systemd.env_value,
            "WATCHDOG_USEC": "200000",
            "S3SYNC_S3__BUCKET": "unreachable-bucket",
            "S3SYNC_S3__ENDPOINT_URL": fake_s3,
            "S3SYNC_API__PORT": "0",
            "S3SYNC_SYNC__LOCAL_DIR": str(tmp_path / "mirror"),
            "S3SYNC_SYNC__PERIODIC": "false",
            "AWS_ACCESS_KEY_ID": "test",
            "AWS_SECRET_ACCESS_KEY": "test",
        }
        daemon = Daemon(env, tmp_path / "serve.out").start(wait=False)  # READY is what this test waits for
        proc = daemon.proc
        assert proc is not None
        seen: list[dict[str, str]] = []

        def wait_for(field: str) -> None:
            def arrived() -> bool:
                assert proc.poll() is None, daemon.log()
                try:
                    msg = fs_systemd.recv(timeout=1)
                except TimeoutError:
                    return False
                seen.append(msg)
                return field in msg

            try:
                poll(arrived, within=60, interval=0, what=f"{field} from s3sync serve")
            except AssertionError as exc:
                pytest.fail(f"{exc}; got {seen}")

        try:
            wait_for("READY")
            ready = next(m for m in seen if "READY" in m)
            assert ready["READY"] == "1"
            wait_for("WATCHDOG")
            # ExecReload=/bin/kill -HUP $MAINPID must not kill the daemon.
            proc.send_signal(signal.SIGHUP)
            for _ in range(3):
                wait_for("WATCHDOG")
            proc.send_signal(signal.SIGTERM)
            wait_for("STOPPING")
            assert proc.wait(timeout=60) == 0
        finally:
            daemon.close()
