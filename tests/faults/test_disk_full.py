"""ENOSPC on a small tmpfs: that file fails cleanly, the rest land, and it heals when space returns.

Needs permission to mount a tmpfs (root); skipped with the reason otherwise.
"""

from __future__ import annotations

import json
import os
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from support.proxy import Proxy
from support.s3kit import body_for, seed, temp_files, tree
from support.wait import wait_for

MiB = 1024 * 1024
HEADROOM = 600 * 1024  # free bytes left on the tmpfs: enough for the small files only


@pytest.fixture
def small_fs(tmp_path: Path) -> Iterator[Path]:
    """A 16 MiB tmpfs mounted for this test."""
    d = tmp_path / "tmpfs"
    d.mkdir()
    r = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=16m", "tmpfs", str(d)],
                       capture_output=True, text=True, check=False)
    if r.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here: {(r.stderr or r.stdout).strip()}")
    try:
        yield d
    finally:
        subprocess.run(["umount", "-l", str(d)], capture_output=True, check=False)


def fill(fs: Path, leave: int) -> Path:
    """Write a filler file so only ``leave`` bytes stay free."""
    st = os.statvfs(fs)
    free = st.f_bavail * st.f_frsize
    filler = fs / "filler"
    with filler.open("wb") as fh:
        fh.write(b"\0" * max(0, free - leave))
    return filler


@pytest.fixture
async def start_api(aiohttp_client: Any) -> Any:
    from s3sync.daemon.app import create_app

    async def _start(settings: Any) -> Any:
        return await aiohttp_client(create_app(settings))

    return _start


class TestDiskFull:
    """A full disk is one failed file, visible in stats and health, never a partial file."""

    @pytest.mark.parametrize("fast_get", [True, False], ids=["fast_get", "boto_get"])
    async def test_enospc_fails_one_file_and_recovers(
        self, fast_get: bool, small_fs: Path, tmp_path: Path, s3: Any, bucket: str,
        proxy: Proxy, proxied_settings: Any, start_api: Any,
    ) -> None:
        mirror = small_fs / "mirror"
        small = seed(s3, bucket, {f"small/{i}.txt": body_for(f"s{i}", 4096) for i in range(8)})
        big = seed(s3, bucket, {"big-1m.bin": body_for("b1", MiB), "big-9m.bin": body_for("b9", 9 * MiB)})
        settings = proxied_settings(
            bucket, mirror, s3={"fast_get": fast_get},
            sync={"state_path": str(tmp_path / "state.db"), "concurrency": 1},
        )
        mirror.mkdir()
        filler = fill(small_fs, HEADROOM)
        client = await start_api(settings)

        r = await client.post("/api/v1/sync")
        result = json.loads(await r.text())
        assert result["failed_operations"] == 2, result
        assert sorted(e["key"] for e in result["errors"]) == sorted(big)
        assert {e["error"] for e in result["errors"]} == {"local_io"}
        assert tree(mirror) == small, "the rest of the sync went on"
        assert temp_files(mirror) == []

        stats = json.loads(await (await client.get("/api/v1/stats")).text())
        assert stats["failed_by_reason"].get("local_io") == 2, stats
        assert "No space left" in (stats["last_error"] or ""), stats
        h = await client.get("/api/v1/health")
        body = json.loads(await h.text())
        assert h.status == 503 and body["status"] == "degraded", body
        assert "space" in body["reason"].lower(), body

        filler.unlink()
        r = await client.post("/api/v1/sync")
        result = json.loads(await r.text())
        assert result["failed_operations"] == 0, result
        assert tree(mirror) == small | big
        assert temp_files(mirror) == []
        await wait_for(lambda: _healthy(client), within=10, what="health back to 200 once space returned")


async def _healthy(client: Any) -> bool:
    return (await client.get("/api/v1/health")).status == 200
