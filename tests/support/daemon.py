"""A real `s3sync serve` subprocess for black-box tests of the daemon's operator surfaces."""

from __future__ import annotations

import json
import subprocess
import sys
import time
from pathlib import Path
from typing import Any


class Daemon:
    """`s3sync serve` in a subprocess with a JSON log file; its URL is read from the log."""

    def __init__(self, config: Path, log_file: Path, env: dict[str, str]) -> None:
        self.log_file = log_file
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "s3sync", "serve", "--config", str(config)],
            env=env, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
        )
        self.url = self._wait_listening()

    def lines(self, path: Path | None = None) -> list[dict[str, Any]]:
        p = path or self.log_file
        if not p.exists():
            return []
        return [json.loads(ln) for ln in p.read_text().splitlines() if ln.strip()]

    def _wait_listening(self) -> str:
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                out, err = self.proc.communicate()
                raise AssertionError(f"serve exited {self.proc.returncode}: {out!r} {err!r}")
            for line in self.lines():
                if line.get("event") == "listening":
                    return str(line["url"])
            time.sleep(0.05)
        raise AssertionError("serve never logged 'listening'")

    def stop(self) -> int:
        if self.proc.poll() is None:
            self.proc.terminate()
        try:
            rc = self.proc.wait(timeout=60)
        finally:
            if self.proc.poll() is None:
                self.proc.kill()
                self.proc.wait()
            for stream in (self.proc.stdout, self.proc.stderr):
                if stream is not None:
                    stream.close()
        return rc


def write_config(path: Path, bucket: str, endpoint: str, mirror: Path, log_file: Path,
                 *, token: str | None = None, level: str = "INFO") -> Path:
    token_line = f'token = "{token}"\n' if token else ""
    path.write_text(
        f'[s3]\nbucket = "{bucket}"\nendpoint_url = "{endpoint}"\n'
        f'[sync]\nlocal_dir = "{mirror}"\nperiodic = false\n'
        f"[api]\nport = 0\n{token_line}"
        f'[log]\nlevel = "{level}"\nformat = "json"\nfile = "{log_file}"\n'
    )
    return path
