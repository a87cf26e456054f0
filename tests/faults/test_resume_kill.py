"""SIGKILL in the middle of a 200 MiB download, then a restart that resumes instead of starting over.

Real processes: ``python -m s3sync sync`` through the fault proxy (which counts
the body bytes it forwards) in front of moto. The first run is slowed at the
proxy so the kill lands half-way; the second fetches only what was not on disk.
"""

from __future__ import annotations

import hashlib
import json
import signal
import subprocess
import sys
from pathlib import Path
from typing import Any

from support.proxy import Proxy
from support.s3kit import body_for, clean_environ, seed, temp_files
from support.wait import poll

MiB = 1024 * 1024
SIZE = 200 * MiB


def _sync(proxy: Proxy, bucket: str, mirror: Path) -> subprocess.Popen[bytes]:
    env = clean_environ() | {"S3SYNC_SYNC__FSYNC": "true", "S3SYNC_LOG__LEVEL": "INFO"}
    return subprocess.Popen(
        [
            sys.executable,
            "-m",
            "s3sync",
            "sync",
            "--bucket",
            bucket,
            "--endpoint-url",
            proxy.url,
            "--dest",
            str(mirror),
            "--no-progress",
        ],
        env=env,
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )


def _kill_when(proc: subprocess.Popen[bytes], probe: Any, what: str) -> None:
    """SIGKILL ``proc`` as soon as ``probe()`` holds; its stderr explains a timeout."""
    try:
        poll(probe, within=90, what=what)
        proc.send_signal(signal.SIGKILL)
        proc.wait(30)
    except AssertionError as exc:
        proc.kill()
        _, err = proc.communicate()
        raise AssertionError(f"{exc}\n{err.decode()[-3000:]}") from None
    finally:
        if proc.poll() is None:
            proc.kill()
        proc.communicate()


def _on_disk(mirror: Path) -> int:
    """Bytes the resume sidecar says are safely on disk (0 without one)."""
    total = 0
    for p in (mirror / ".s3sync" / "resume").glob("*.json"):
        try:
            doc = json.loads(p.read_bytes())
        except (OSError, ValueError):
            continue
        total += sum(hi - lo for lo, hi in doc.get("done", []))
    return total


class TestResumeAfterSigkill:
    """A killed big download keeps its verified-later ranges; the restart fetches the rest only."""

    def test_restart_fetches_clearly_fewer_bytes_than_the_object(
        self, s3: Any, bucket: str, mirror: Path, proxy: Proxy
    ) -> None:
        data = seed(s3, bucket, {"huge.bin": body_for("huge", SIZE)})["huge.bin"]
        # each ranged GET trickles at 3 MiB/s (8 in parallel): the whole would take ~8 s
        proxy.faults.add("throttle", op="RANGE", bytes_per_second=3 * MiB)
        first = _sync(proxy, bucket, mirror)
        _kill_when(first, lambda: _on_disk(mirror) >= 80 * MiB, "80 MiB recorded by the sidecar")
        assert not (mirror / "huge.bin").exists(), "the file appears only complete"
        kept = _on_disk(mirror)
        assert temp_files(mirror), "the resumable temp stays behind after SIGKILL"

        proxy.faults.clear()
        proxy.reset_counters()
        second = _sync(proxy, bucket, mirror)
        out, err = second.communicate(timeout=120)
        assert second.returncode == 0, (out.decode(), err.decode()[-3000:])
        fetched = proxy.bytes_out
        assert fetched <= SIZE - kept + 16 * MiB, f"fetched {fetched} bytes though {kept} were on disk"
        assert fetched < SIZE - 60 * MiB, f"restart fetched {fetched / MiB:.0f} MiB of a 200 MiB object"
        got = hashlib.sha256((mirror / "huge.bin").read_bytes()).hexdigest()
        assert got == hashlib.sha256(data).hexdigest()
        assert temp_files(mirror) == []
        assert list((mirror / ".s3sync" / "resume").glob("*")) == []

    def test_changed_object_starts_over(self, s3: Any, bucket: str, mirror: Path, proxy: Proxy) -> None:
        """Replaced between the kill and the restart (new ETag): the old ranges are discarded."""
        seed(s3, bucket, {"huge.bin": body_for("old", 100 * MiB)})
        proxy.faults.add("throttle", op="RANGE", bytes_per_second=2 * MiB)
        first = _sync(proxy, bucket, mirror)
        _kill_when(first, lambda: _on_disk(mirror) >= 20 * MiB, "20 MiB recorded by the sidecar")
        new = seed(s3, bucket, {"huge.bin": body_for("new", 100 * MiB)})["huge.bin"]
        proxy.faults.clear()
        proxy.reset_counters()
        second = _sync(proxy, bucket, mirror)
        out, err = second.communicate(timeout=120)
        assert second.returncode == 0, (out.decode(), err.decode()[-3000:])
        assert proxy.bytes_out >= 100 * MiB, "a changed object is fetched whole"
        assert (mirror / "huge.bin").read_bytes() == new
        assert temp_files(mirror) == []
