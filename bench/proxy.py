"""The W7 delay proxy: HAProxy holding every request a fixed time before forwarding.

Real S3 answers a small GET in 10-30 ms; on loopback ``rclone serve s3`` answers
in well under a millisecond, so W1 measures CPU and W7 measures how well a tool
hides latency (how many requests it keeps in flight). The same proxy sits in
front of every tool.

Why HAProxy and not a Python proxy: 256 requests in flight at 20 ms is ~12,800
requests/s, more than a Python proxy does on 2 shared cores, and a proxy that is
itself the bottleneck would measure the proxy. HAProxy (a Debian package) runs a
Lua action, ``core.msleep(ms)``, which *yields* the request's task for ``ms``
milliseconds without blocking the thread, so thousands of requests can be held at
once. The delay is per request (the request head is held before it is
forwarded), not per byte: a 1 GiB body is not slowed beyond its first 20 ms.

``find_haproxy`` locates the binary, or installs the Debian package when running
as root with apt-get available; when neither works W7 is skipped with the reason.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import time
from pathlib import Path

from server import free_port, wait_http

_LUA = """\
-- Hold every request DELAY_MS before HAProxy forwards it (W7 of bench/run.py).
-- core.msleep yields this request's task; other requests keep flowing.
local delay = tonumber(os.getenv("BENCH_DELAY_MS") or "20")
core.register_action("bench_delay", { "http-req" }, function(txn)
  if delay > 0 then
    core.msleep(delay)
  end
end, 0)
"""


def find_haproxy(log: object = None) -> tuple[str | None, str]:
    """Return (path to haproxy, "") or (None, why it is unavailable)."""
    for cand in (shutil.which("haproxy"), "/usr/sbin/haproxy", "/usr/local/sbin/haproxy"):
        if cand and os.access(cand, os.X_OK):
            return cand, ""
    apt = shutil.which("apt-get")
    if apt is None or os.geteuid() != 0:
        return None, "haproxy not found (install the Debian package: apt-get install -y haproxy)"
    if callable(log):
        log("W7: haproxy not found; installing the Debian package (apt-get install -y haproxy)")
    env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
    try:
        subprocess.run(
            [apt, "install", "-y", "-q", "haproxy"],
            env=env,
            check=True,
            capture_output=True,
            timeout=300,
        )
    except (OSError, subprocess.SubprocessError) as exc:
        return None, f"haproxy not found and `apt-get install -y haproxy` failed: {exc}"
    found = shutil.which("haproxy") or "/usr/sbin/haproxy"
    if os.access(found, os.X_OK):
        return found, ""
    return None, "haproxy still not found after apt-get install"


def haproxy_supports_lua(binary: str) -> bool:
    try:
        out = subprocess.run([binary, "-vv"], capture_output=True, text=True, timeout=30).stdout
    except (OSError, subprocess.SubprocessError):
        return False
    return "+LUA" in out or "Built with Lua" in out


def haproxy_version(binary: str) -> str:
    try:
        out = subprocess.run([binary, "-v"], capture_output=True, text=True, timeout=30).stdout
    except (OSError, subprocess.SubprocessError) as exc:
        return f"unavailable ({exc})"
    return out.strip().splitlines()[0] if out.strip() else "unknown"


class DelayProxy:
    """HAProxy on a free loopback port in front of ``backend_port``, delaying each request.

    Restarted (with the delay wanted) before every timed pass, like the server, so
    no pass inherits another's server-side connections.
    """

    def __init__(
        self,
        binary: str,
        work_dir: Path,
        backend_port: int,
        log_file: Path,
        checksum: tuple[str, str] | None = None,
    ) -> None:
        self.binary = binary
        self.checksum = checksum  # W4c: (path, CRC64NVME) announced on that object's whole answers
        self.work_dir = work_dir
        self.backend_port = backend_port
        self.log_file = log_file
        self.port = free_port()
        self.delay_ms = 0
        self._proc: subprocess.Popen[bytes] | None = None
        self.lua = work_dir / "delay.lua"
        self.cfg = work_dir / "haproxy.cfg"
        self.lua.write_text(_LUA)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def _config(self) -> str:
        # nbthread 2: the machine has 2 cores. lua-load-per-thread gives each
        # thread its own Lua state (no global Lua lock). Keep-alive on both sides
        # and server-side connection reuse, so the proxy adds no connection set-up
        # that a direct run would not pay. Generous maxconn: the tools, not the
        # proxy, decide how many requests are in flight (4,096 connections per
        # side fits the 20,000-descriptor limit seen here; HAProxy needs two
        # descriptors per proxied connection).
        return f"""\
global
    nbthread 2
    maxconn 4096
    lua-load-per-thread {self.lua}
    tune.bufsize 65536

defaults
    mode http
    option http-keep-alive
    http-reuse always
    timeout connect 10s
    timeout client 600s
    timeout server 600s
    timeout http-keep-alive 600s
    maxconn 4096

frontend bench_in
    bind 127.0.0.1:{self.port}
    http-request lua.bench_delay
{self._checksum_rules()}    default_backend bench_s3

backend bench_s3
    server rclone 127.0.0.1:{self.backend_port} maxconn 4096
"""

    def _checksum_rules(self) -> str:
        """W4c: a full-object CRC64NVME on whole-object GET/HEAD 200s of one path, as AWS sends it.

        Only when the request asks (``x-amz-checksum-mode: ENABLED``) and carries no
        Range: AWS sends no checksum with a partial range (aws-truth topics 1, 2).
        """
        if self.checksum is None:
            return ""
        path, value = self.checksum
        return f"""\
    http-request set-var(txn.w4c) bool(true) if {{ path {path} }} !{{ req.hdr(range) -m found }} \
{{ req.hdr(x-amz-checksum-mode) -i ENABLED }}
    http-response set-header x-amz-checksum-crc64nvme {value} if {{ var(txn.w4c) -m bool }} {{ status 200 }}
    http-response set-header x-amz-checksum-type FULL_OBJECT if {{ var(txn.w4c) -m bool }} {{ status 200 }}
"""

    def start(self, delay_ms: int) -> None:
        self.delay_ms = delay_ms
        self.cfg.write_text(self._config())
        env = {**os.environ, "BENCH_DELAY_MS": str(delay_ms)}
        log = self.log_file.open("ab")
        for _attempt in range(3):
            self._proc = subprocess.Popen(
                [self.binary, "-db", "-f", str(self.cfg)],
                env=env,
                stdout=log,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
            )
            try:
                wait_http("127.0.0.1", self.port, 15.0)
                log.close()
                return
            except RuntimeError:
                self.stop()
                self.port = free_port()
                self.cfg.write_text(self._config())
        log.close()
        raise RuntimeError(f"haproxy did not start; see {self.log_file}")

    def stop(self) -> None:
        if self._proc is None:
            return
        self._proc.terminate()
        try:
            self._proc.wait(10)
        except subprocess.TimeoutExpired:
            self._proc.kill()
            self._proc.wait()
        self._proc = None

    def restart(self, delay_ms: int) -> None:
        self.stop()
        time.sleep(0.01)
        self.start(delay_ms)
