"""Daemon harness: ``s3sync serve`` as a subprocess (:class:`Daemon`) or the app in-process (:class:`App`).

Both give a test the daemon's HTTP surface on a loopback port and nothing
else, so a test judges the daemon exactly as an operator, S3, SNS or the Lambda
forwarder would. Pick the subprocess for real signals (SIGKILL, SIGTERM,
SIGHUP), the process's own log file, its memory, its start-up and refusals;
pick the in-process app when the test needs the app object (its services) or
many quick starts. Both are configured from the same ``section__key`` settings
(:func:`daemon_env` for the subprocess, ``make_settings`` for the app), and both
wait for the daemon to answer (:mod:`support.wait`) before handing it over.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import signal
import socket
import ssl
import subprocess
import sys
import urllib.error
import urllib.request
from collections.abc import AsyncIterator, Callable, Mapping
from dataclasses import dataclass
from http.client import HTTPException
from pathlib import Path
from typing import Any

import aiohttp
from aiohttp import web
from support.s3kit import clean_environ
from support.wait import poll, wait_for


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


# --------------------------------------------------------------------------- configuration


def daemon_env(
    *, bucket: str, endpoint: str, local_dir: Path, port: int | None = None, **settings: Any
) -> dict[str, str]:
    """A clean environment configuring ``serve`` (``sync__concurrency=4`` → ``S3SYNC_SYNC__CONCURRENCY``).

    Periodic reconciliation and fsync are off and S3 connects time out fast, as
    in every fixture; the API listens on ``port`` (a free one if not given).
    """
    env = clean_environ()
    env.update(
        {
            "S3SYNC_S3__BUCKET": bucket,
            "S3SYNC_S3__ENDPOINT_URL": endpoint,
            "S3SYNC_S3__CONNECT_TIMEOUT_SECONDS": "3",
            "S3SYNC_SYNC__LOCAL_DIR": str(local_dir),
            "S3SYNC_SYNC__PERIODIC": "false",
            "S3SYNC_SYNC__FSYNC": "false",
            "S3SYNC_API__PORT": str(port or free_port()),
            "S3SYNC_LOG__FORMAT": "json",
        }
    )
    for name, value in settings.items():
        env[f"S3SYNC_{name.upper()}"] = str(value).lower() if isinstance(value, bool) else str(value)
    return env


def write_config(
    path: Path,
    bucket: str,
    endpoint: str,
    mirror: Path,
    log_file: Path,
    *,
    token: str | None = None,
    level: str = "INFO",
) -> Path:
    """A TOML config for ``serve --config``: port 0 (the daemon logs its URL), a JSON log file."""
    token_line = f'token = "{token}"\n' if token else ""
    path.write_text(
        f'[s3]\nbucket = "{bucket}"\nendpoint_url = "{endpoint}"\n'
        f'[sync]\nlocal_dir = "{mirror}"\nperiodic = false\n'
        f"[api]\nport = 0\n{token_line}"
        f'[log]\nlevel = "{level}"\nformat = "json"\nfile = "{log_file}"\n'
    )
    return path


# --------------------------------------------------------------------------- stdlib HTTP


@dataclass
class Http:
    status: int
    headers: dict[str, str]
    body: bytes

    def json(self) -> Any:
        return json.loads(self.body)


def http(
    method: str,
    url: str,
    body: bytes | None = None,
    timeout: float = 10.0,
    *,
    context: ssl.SSLContext | None = None,
) -> Http:
    """One request with the stdlib (no keep-alive surprises); never raises on 4xx/5xx."""
    req = urllib.request.Request(url, data=body, method=method)
    if body is not None:
        req.add_header("Content-Type", "application/json")
    try:
        with urllib.request.urlopen(req, timeout=timeout, context=context) as r:
            return Http(r.status, {k.lower(): v for k, v in r.headers.items()}, r.read())
    except urllib.error.HTTPError as e:
        return Http(e.code, {k.lower(): v for k, v in e.headers.items()}, e.read())


# --------------------------------------------------------------------------- the subprocess


class Daemon:
    """A real ``python -m s3sync serve`` subprocess; its stdout and stderr go to ``log_path``.

    Configured by ``env`` (see :func:`daemon_env`) and optionally a config file.
    When the port is known (``port``, or ``env`` names it), :meth:`start` waits for
    ``/ping``; otherwise (port 0 in the config) it reads the URL from the
    ``listening`` line of ``log_file``, the JSON log the config names.
    """

    def __init__(
        self,
        env: Mapping[str, str],
        log_path: Path,
        *,
        config: Path | None = None,
        log_file: Path | None = None,
        port: int | None = None,
        context: ssl.SSLContext | None = None,
    ) -> None:
        self.env = dict(env)
        self.log_path = log_path
        self.config = config
        self.log_file = log_file
        self.context = context  # the API serves TLS: the client context that trusts its certificate
        port = port or self.env.get("S3SYNC_API__PORT")
        self.url = f"{'https' if context else 'http'}://127.0.0.1:{port}" if port else ""
        self.proc: subprocess.Popen[bytes] | None = None

    @classmethod
    def from_config(cls, config: Path, log_file: Path, env: Mapping[str, str]) -> Daemon:
        """Started from a config file (see :func:`write_config`), its URL read from its log."""
        out = config.with_name(config.name + ".out")  # stdout and stderr, beside the config
        return cls(env, out, config=config, log_file=log_file).start()

    def start(self, *, wait: bool = True) -> Daemon:
        args = [sys.executable, "-m", "s3sync", "serve"]
        if self.config is not None:
            args += ["--config", str(self.config)]
        with self.log_path.open("ab") as fh:
            self.proc = subprocess.Popen(
                args, env=self.env, stdout=fh, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL
            )
        if wait:
            if self.url:
                poll(self._pinged, within=30, what=f"daemon on {self.url} to answer /ping")
            else:
                self.url = poll(self._listening, within=60, what="serve to log 'listening'")
        return self

    def _alive(self) -> None:
        assert self.proc is not None
        if self.proc.poll() is not None:
            raise AssertionError(f"daemon exited with {self.proc.returncode}:\n{self.log()}")

    def _pinged(self) -> bool:
        self._alive()
        try:
            return http("GET", self.url + "/ping", timeout=2, context=self.context).status == 200
        except (OSError, HTTPException):
            return False

    def _listening(self) -> str | None:
        self._alive()
        return next((str(ln["url"]) for ln in self.lines() if ln.get("event") == "listening"), None)

    @property
    def pid(self) -> int:
        assert self.proc is not None
        return self.proc.pid

    def lines(self, path: Path | None = None) -> list[dict[str, Any]]:
        """The JSON log lines of ``path`` (default: the config's log file)."""
        p = path or self.log_file
        if p is None or not p.exists():
            return []
        return [json.loads(ln) for ln in p.read_text().splitlines() if ln.strip()]

    def log(self) -> str:
        """The tail of what the process wrote to stdout and stderr."""
        try:
            return self.log_path.read_text(errors="replace")[-20_000:]
        except OSError:
            return ""

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

    def kill(self) -> int:
        """SIGKILL: no cleanup, no drain — a crash. The exit code (``-SIGKILL``)."""
        assert self.proc is not None
        self.proc.send_signal(signal.SIGKILL)
        return self.proc.wait(10)

    def terminate(self, timeout: float = 60) -> int:
        """SIGTERM and the exit code (the drain's outcome)."""
        assert self.proc is not None
        self.proc.send_signal(signal.SIGTERM)
        return self.proc.wait(timeout)

    def stop(self) -> int:
        """SIGTERM if still running, the exit code; killed if it does not end within a minute."""
        assert self.proc is not None
        if self.proc.poll() is None:
            self.proc.terminate()
        try:
            return self.proc.wait(timeout=60)
        finally:
            self.close()

    def rss_kib(self) -> int:
        """Resident set size of the daemon, from /proc."""
        with open(f"/proc/{self.pid}/status") as fh:
            for line in fh:
                if line.startswith("VmRSS:"):
                    return int(line.split()[1])
        return 0

    def close(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(10)


# --------------------------------------------------------------------------- in-process


@dataclass
class App:
    """The app running in-process on a loopback port, and an HTTP session to talk to it."""

    url: str
    http: aiohttp.ClientSession
    app: web.Application
    mirror: Path
    runner: web.AppRunner
    stopped: bool = False

    async def stop(self) -> None:
        """Stop listening and shut the app down (gracefully); :func:`run_daemon` does it at the end."""
        if not self.stopped:
            self.stopped = True
            await self.runner.cleanup()

    async def notify(self, payload: Any, *, status: int = 202) -> dict[str, Any]:
        async with self.http.post(f"{self.url}/api/v1/s3-notification", json=payload) as resp:
            text = await resp.text()
            assert resp.status == status, (resp.status, text)
            data: dict[str, Any] = json.loads(text)
            return data

    async def stats(self) -> dict[str, Any]:
        async with self.http.get(f"{self.url}/api/v1/stats") as resp:
            assert resp.status == 200, await resp.text()
            data: dict[str, Any] = await resp.json()
            return data

    async def idle(self, *, within: float = 20.0) -> dict[str, Any]:
        """Wait until every accepted change has been applied (queue, workers and journal empty)."""

        async def probe() -> dict[str, Any] | None:
            st = await self.stats()
            done = st["queue_depth"] == 0 and st["in_flight"] == 0 and st["journal_pending"] == 0
            return st if done else None

        result: dict[str, Any] = await wait_for(probe, within=within, what="daemon idle")
        return result

    async def reconcile(self, *, delete: bool = True) -> dict[str, Any]:
        q = "?delete=true" if delete else ""
        async with self.http.post(f"{self.url}/api/v1/sync{q}") as resp:
            assert resp.status == 200, await resp.text()
            data: dict[str, Any] = await resp.json()
            return data

    @property
    def services(self) -> Any:
        from s3sync.api import keys as K

        return self.app[K.SERVICES]


@contextlib.asynccontextmanager
async def run_daemon(settings: Any, *, headers: Mapping[str, str] | None = None) -> AsyncIterator[App]:
    """Start ``create_app(settings)`` on a free loopback port; stop it (gracefully) afterwards.

    ``headers`` go with every request of the app's session (a bearer token, say).
    """
    from s3sync.daemon.app import create_app

    app = create_app(settings)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = runner.addresses[0][1]
    async with aiohttp.ClientSession(headers=headers) as session:
        handle = App(f"http://127.0.0.1:{port}", session, app, Path(settings.sync.local_dir), runner)
        try:
            yield handle
        finally:
            await handle.stop()


#: ``make(config, port, log)`` → a :class:`Daemon` on that config file (the ``config_daemon`` fixture)
MakeDaemon = Callable[[Path, int, Path], Daemon]


def serve_toml(bucket: str, endpoint: str, mirror: Path, port: int) -> str:
    """The ``[s3]``, ``[sync]`` and ``[api]`` head of a ``serve --config`` file on a known port.

    A test appends the sections it is about (``[hooks]``, ``[log]``) to it.
    """
    return (
        f'[s3]\nbucket = "{bucket}"\nendpoint_url = "{endpoint}"\n'
        f"[sync]\nlocal_dir = {json.dumps(str(mirror))}\nperiodic = false\n"
        f"[api]\nport = {port}\n"
    )


async def notify(daemon: Daemon, payload: Any, *, within: float) -> dict[str, Any]:
    """POST a notification until accepted (503 while the engine is still opening); the 202 body."""

    async def accepted() -> dict[str, Any] | None:
        r = await asyncio.to_thread(daemon.post, "/api/v1/s3-notification", payload)
        if r.status == 503:
            return None
        assert r.status == 202, r
        data: dict[str, Any] = r.json()
        return data

    result: dict[str, Any] = await wait_for(accepted, within=within, what="202 from the daemon")
    return result
