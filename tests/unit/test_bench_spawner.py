"""bench/spawner.py: a timed child's peak RSS is its own, not the harness's.

Linux carries a parent's RSS high-water mark into a forked child across exec,
which is how the W6 figures once grew with the harness's own manifests.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from bench import spawner

CHILD = [sys.executable, "-S", "-c", "pass"]


@pytest.mark.skipif(sys.platform != "linux", reason="the inherited high-water mark is Linux behaviour")
def test_child_rss_is_not_the_harness_rss(tmp_path: Path) -> None:
    helper = spawner.Spawner()  # started while this process is still small
    try:
        ballast = bytearray(300 * 1024 * 1024)
        for i in range(0, len(ballast), 4096):
            ballast[i] = 1  # touch every page: this process now holds ~300 MB
        proc = subprocess.Popen(CHILD)
        _pid, _status, usage = os.wait4(proc.pid, 0)
        direct_mb = usage.ru_maxrss / 1024
        rc, _wall, _cpu, spawned_mb = helper.run(CHILD, dict(os.environ), tmp_path / "log", 30)
        del ballast
    finally:
        helper.close()
    assert rc == 0
    assert direct_mb > 250  # forked straight from the big process: its RSS, not the child's
    assert spawned_mb < 100  # forked by the small helper: the child's own
