"""Helpers for the fault suite: polling, stdlib HTTP, real daemons, S3 event payloads."""

from __future__ import annotations

import json
import signal
import socket
import subprocess
import sys
import urllib.error
import urllib.request
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

from support.eventkit import s3_record
from support.wait import poll

T = TypeVar("T")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@dataclass
class Http:
    status: int
    headers: dict[str, str]
    body: bytes

    def json(self) -> Any:
        return json.loads(self.body)


def http(method: str, url: str, body: bytes | None = None, timeout: float = 10.0) -> Http:
    """One request with the stdlib (no keep-alive surprises); never raises on 4xx/5xx."""
    req = urllib.request.Request(url, data=body, method=method)
    if body is not None:
        req.add_header("Content-Type", "application/json")
    try:
        with urllib.request.urlopen(req, timeout=timeout) as r:
            return Http(r.status, {k.lower(): v for k, v in r.headers.items()}, r.read())
    except urllib.error.HTTPError as e:
        return Http(e.code, {k.lower(): v for k, v in e.headers.items()}, e.read())


class Daemon:
    """A real ``python -m s3sync serve`` subprocess."""

    def __init__(self, env: dict[str, str], log_path: Path) -> None:
        self.env = env
        self.log_path = log_path
        self.port = int(env["S3SYNC_API__PORT"])
        self.url = f"http://127.0.0.1:{self.port}"
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self, *, wait: bool = True) -> Daemon:
        with self.log_path.open("ab") as fh:
            self.proc = subprocess.Popen(
                [sys.executable, "-m", "s3sync", "serve"],
                env=self.env,
                stdout=fh,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
            )
        if wait:
            poll(self._pinged, within=30, what=f"daemon on {self.url} to answer /ping")
        return self

    def _pinged(self) -> bool:
        assert self.proc is not None
        if self.proc.poll() is not None:
            raise AssertionError(f"daemon exited with {self.proc.returncode}:\n{self.log()}")
        try:
            return http("GET", self.url + "/ping", timeout=2).status == 200
        except OSError:
            return False

    @property
    def pid(self) -> int:
        assert self.proc is not None
        return self.proc.pid

    def get(self, path: str, **kw: Any) -> Http:
        return http("GET", self.url + path, **kw)

    def post(self, path: str, payload: Any = None, **kw: Any) -> Http:
        body = b"" if payload is None else json.dumps(payload).encode()
        return http("POST", self.url + path, body, **kw)

    def stats(self) -> dict[str, Any]:
        r = self.get("/api/v1/stats")
        assert r.status == 200, r
        data: dict[str, Any] = r.json()
        return data

    def kill(self) -> None:
        """SIGKILL: no cleanup, no drain — a crash."""
        assert self.proc is not None
        self.proc.send_signal(signal.SIGKILL)
        self.proc.wait(10)

    def terminate(self, timeout: float = 60) -> int:
        assert self.proc is not None
        self.proc.send_signal(signal.SIGTERM)
        return self.proc.wait(timeout)

    def rss_kib(self) -> int:
        """Resident set size of the daemon, from /proc."""
        with open(f"/proc/{self.pid}/status") as fh:
            for line in fh:
                if line.startswith("VmRSS:"):
                    return int(line.split()[1])
        return 0

    def log(self) -> str:
        try:
            return self.log_path.read_text(errors="replace")[-20_000:]
        except OSError:
            return ""

    def close(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(10)


def s3_event(bucket: str, key: str, name: str = "ObjectCreated:Put", size: int | None = None,
             sequencer: str | None = None) -> dict[str, Any]:
    """One S3 notification record as S3 sends it (key URL-encoded, '+' for space)."""
    return s3_record(bucket, name, key, size=size, sequencer=sequencer)


def notification(bucket: str, *keys: str, name: str = "ObjectCreated:Put") -> dict[str, Any]:
    return {"Records": [s3_event(bucket, k, name) for k in keys]}
