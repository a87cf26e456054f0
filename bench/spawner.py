#!/usr/bin/env python3
"""Run the timed children from a process that stays small, so their peak RSS is their own.

Linux keeps a process's RSS high-water mark across ``execve``, and a forked
child starts from its parent's: a child spawned by a harness that holds a
10⁶-entry manifest reports that harness's RSS as its own ``ru_maxrss``. (A
300 MB Python parent running ``/bin/true`` reads 313 MB.) So the harness starts
this helper first thing, while it is ~10 MB, and asks it to run every timed
pass; the helper forks, waits with ``os.wait4`` and answers with the child's
exit code, wall time, CPU time and peak RSS.

Protocol: one JSON object per line on stdin (``argv``, ``env``, ``log``,
``timeout``), one JSON answer per line on stdout. Standard library only.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any


def run(req: dict[str, Any]) -> dict[str, Any]:
    with Path(req["log"]).open("wb") as out:
        t0 = time.perf_counter()
        proc = subprocess.Popen(
            req["argv"], env=req["env"], stdout=out, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL
        )
        timer = threading.Timer(float(req["timeout"]), proc.kill)
        timer.start()
        try:
            _pid, status, usage = os.wait4(proc.pid, 0)
        finally:
            timer.cancel()
        wall = time.perf_counter() - t0
    return {
        "rc": os.waitstatus_to_exitcode(status),
        "wall": wall,
        "cpu": usage.ru_utime + usage.ru_stime,
        "rss_mb": usage.ru_maxrss / 1024.0,
    }


def main() -> None:
    for line in sys.stdin:
        if not line.strip():
            continue
        try:
            answer = run(json.loads(line))
        except Exception as exc:  # the harness reports it as a failed pass
            answer = {"rc": 127, "wall": 0.0, "cpu": 0.0, "rss_mb": 0.0, "error": repr(exc)}
        sys.stdout.write(json.dumps(answer) + "\n")
        sys.stdout.flush()


class Spawner:
    """The harness's handle on one helper process (started while the harness is small)."""

    def __init__(self) -> None:
        self._proc = subprocess.Popen(
            [sys.executable, "-S", str(Path(__file__).resolve())],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
            bufsize=1,
        )
        self._lock = threading.Lock()

    def run(
        self, argv: list[str], env: dict[str, str], log: Path, timeout: float
    ) -> tuple[int, float, float, float]:
        """(exit code, wall s, cpu s, peak RSS MB) of one child, as ``run.run_child`` returns them."""
        req = {"argv": argv, "env": env, "log": str(log), "timeout": timeout}
        with self._lock:
            assert self._proc.stdin is not None and self._proc.stdout is not None
            self._proc.stdin.write(json.dumps(req) + "\n")
            self._proc.stdin.flush()
            answer = json.loads(self._proc.stdout.readline())
        if "error" in answer:
            raise RuntimeError(f"spawner could not run {argv[0]}: {answer['error']}")
        return answer["rc"], answer["wall"], answer["cpu"], answer["rss_mb"]

    def close(self) -> None:
        if self._proc.stdin is not None:
            self._proc.stdin.close()
        self._proc.wait(10)


_SPAWNER: Spawner | None = None


def spawner() -> Spawner:
    """The process-wide helper; the first call should come before the harness grows."""
    global _SPAWNER
    if _SPAWNER is None:
        _SPAWNER = Spawner()
    return _SPAWNER


if __name__ == "__main__":
    main()
