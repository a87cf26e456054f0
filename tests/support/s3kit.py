"""Helpers for black-box tests: seeding buckets, reading mirrors, running the CLI.

Nothing here imports s3sync: the tests judge the product only through its
public surfaces (CLI, HTTP API, files on disk).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import random
import re
import subprocess
import sys
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

AWS_ENV: dict[str, str] = {
    "AWS_ACCESS_KEY_ID": "testing",
    "AWS_SECRET_ACCESS_KEY": "testing",
    "AWS_DEFAULT_REGION": "us-east-1",
}

STATE_DIR = ".s3sync"
TEMP_MARKER = ".s3sync-tmp-"

def clean_environ() -> dict[str, str]:
    """The current environment minus anything that could redirect s3sync or AWS calls."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("S3SYNC_", "AWS_"))}
    for legacy in (
        "S3_BUCKET_NAME",
        "LOCAL_DOWNLOAD_DIR",
        "SYNC_INTERVAL_HOURS",
        "ENABLE_PERIODIC_SYNC",
        "MAX_FILE_SIZE_MB",
        "API_HOST",
        "API_PORT",
        "LOG_LEVEL",
        "LOG_FILE",
    ):
        env.pop(legacy, None)
    env.update(AWS_ENV)
    env["PYTHONUNBUFFERED"] = "1"
    return env


# --------------------------------------------------------------------------- bucket


def body_for(key: str, size: int) -> bytes:
    """Deterministic, key-dependent bytes, so a mix-up between two keys is caught."""
    return random.Random(key).randbytes(size)


def seed(s3: Any, bucket: str, objects: Mapping[str, bytes]) -> dict[str, bytes]:
    for key, data in objects.items():
        s3.put_object(Bucket=bucket, Key=key, Body=data)
    return dict(objects)


def nested_objects(n: int = 50, size: int = 4096) -> dict[str, bytes]:
    """``n`` objects spread over several levels of prefixes, with varied sizes."""
    out: dict[str, bytes] = {}
    for i in range(n):
        depth = i % 4
        parts = [f"lvl{d}-{(i + d) % 3}" for d in range(depth)]
        key = "/".join([*parts, f"file-{i:03d}.bin"])
        out[key] = body_for(key, size + i * 7)
    return out


def delete_objects(s3: Any, bucket: str, keys: Iterable[str]) -> None:
    for key in keys:
        s3.delete_object(Bucket=bucket, Key=key)


# --------------------------------------------------------------------------- mirror


def tree(root: Path) -> dict[str, bytes]:
    """Every regular file under ``root`` as key → bytes, ignoring the ``.s3sync`` state dir."""
    out: dict[str, bytes] = {}
    if not root.exists():
        return out
    for dirpath, dirnames, filenames in os.walk(root):
        rel_dir = Path(dirpath).relative_to(root)
        if rel_dir == Path("."):
            dirnames[:] = [d for d in dirnames if d != STATE_DIR]
        for name in filenames:
            rel = (rel_dir / name).as_posix()
            try:
                out[rel] = (Path(dirpath) / name).read_bytes()
            except FileNotFoundError:
                continue  # a temp renamed (or a file deleted) while we walked: a live mirror moves
    return out


def temp_files(root: Path) -> list[str]:
    """Leftover in-progress download files (there must never be any after a run)."""
    return [
        str(p.relative_to(root))
        for p in root.rglob("*")
        if TEMP_MARKER in p.name and STATE_DIR not in p.relative_to(root).parts[:1]
    ]


def all_paths(root: Path) -> set[str]:
    """Every path (files and directories) under ``root``, relative."""
    return {p.relative_to(root).as_posix() for p in root.rglob("*")}


# --------------------------------------------------------------------------- CLI

_COUNT_RE = {
    name: re.compile(rf"\b{name}\s*[:=]?\s*(\d+)", re.IGNORECASE)
    for name in ("downloaded", "deleted", "failed", "skipped", "unchanged")
}


class CliResult(str):
    """One CLI run. The str value is the full report (command, exit code, stdout, stderr)
    so that ``assert cond, res`` shows everything instead of a truncated repr."""

    args: list[str]
    returncode: int
    stdout: str
    stderr: str

    def __new__(cls, args: list[str], returncode: int, stdout: str, stderr: str) -> CliResult:
        report = (
            f"\n$ s3sync {' '.join(args)}\n-> exit {returncode}\n"
            f"--- stdout\n{stdout}\n--- stderr\n{stderr}"
        )
        self = super().__new__(cls, report)
        self.args = args
        self.returncode = returncode
        self.stdout = stdout
        self.stderr = stderr
        return self

    @property
    def output(self) -> str:
        return self.stdout + self.stderr

    def summary(self) -> dict[str, int]:
        """Counts from the human summary line (the last non-empty stdout line)."""
        lines = [ln for ln in self.stdout.splitlines() if ln.strip()]
        assert lines, f"no stdout; stderr was:\n{self.stderr}"
        last = lines[-1]
        counts: dict[str, int] = {}
        for name, rx in _COUNT_RE.items():
            m = rx.search(last)
            assert m, f"summary line lacks {name!r}: {last!r}\nstderr:\n{self.stderr}"
            counts[name] = int(m.group(1))
        return counts

    def json(self) -> dict[str, Any]:
        try:
            data = json.loads(self.stdout)
        except json.JSONDecodeError as exc:
            raise AssertionError(
                f"stdout is not one JSON object ({exc}):\n{self.stdout}\nstderr:\n{self.stderr}"
            ) from None
        assert isinstance(data, dict), data
        return data


class CliRunner:
    """``python -m s3sync`` in a subprocess with a clean environment."""

    def __init__(self, endpoint: str, *, cwd: Path, base_env: dict[str, str]) -> None:
        self.endpoint = endpoint
        self.cwd = cwd
        self.base_env = base_env

    def __call__(
        self, *args: str, env: Mapping[str, str] | None = None, timeout: float = 60
    ) -> CliResult:
        full_env = dict(self.base_env)
        if env:
            full_env.update(env)
        proc = subprocess.run(
            [sys.executable, "-m", "s3sync", *args],
            env=full_env,
            cwd=self.cwd,
            capture_output=True,
            text=True,
            timeout=timeout,
            stdin=subprocess.DEVNULL,
            check=False,
        )
        return CliResult(list(args), proc.returncode, proc.stdout, proc.stderr)

    def sync(self, bucket: str, dest: Path, *extra: str, **kw: Any) -> CliResult:
        return self(
            "sync", "--bucket", bucket, "--endpoint-url", self.endpoint, "--dest", str(dest),
            *extra, **kw,
        )

    def verify(self, bucket: str, dest: Path, *extra: str, **kw: Any) -> CliResult:
        return self(
            "verify", "--bucket", bucket, "--endpoint-url", self.endpoint, "--dest", str(dest),
            *extra, **kw,
        )


# --------------------------------------------------------------------------- raw HTTP


async def raw_http(host: str, port: int, request_line: str, headers: str = "") -> tuple[int, bytes]:
    """Send one request byte-for-byte (no client-side path normalisation); return status, body."""
    reader, writer = await asyncio.open_connection(host, port)
    try:
        writer.write(
            f"{request_line}\r\nHost: {host}:{port}\r\n{headers}Connection: close\r\n\r\n".encode(
                "latin-1"
            )
        )
        await writer.drain()
        data = await asyncio.wait_for(reader.read(), timeout=10)
    finally:
        writer.close()
        with contextlib.suppress(ConnectionError, OSError):
            await writer.wait_closed()
    head, _, body = data.partition(b"\r\n\r\n")
    status_line = head.split(b"\r\n", 1)[0].decode("latin-1")
    status = int(status_line.split()[1])
    if b"transfer-encoding: chunked" in head.lower():
        body = _dechunk(body)
    return status, body


def _dechunk(data: bytes) -> bytes:
    out = bytearray()
    while data:
        size_line, _, rest = data.partition(b"\r\n")
        size = int(size_line.split(b";")[0] or b"0", 16)
        if size == 0:
            break
        out += rest[:size]
        data = rest[size + 2 :]
    return bytes(out)
