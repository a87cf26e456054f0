"""`s3sync status` opens with a person's summary; `--json` stays the daemon's stats object.

The daemon is the real app on loopback (in this process); `s3sync status` is a
real subprocess talking to it with the configured token.
"""

from __future__ import annotations

import asyncio
import json
import sys
from pathlib import Path
from typing import Any

from support.daemon import run_daemon
from support.s3kit import clean_environ, seed

TOKEN = "summary-token"


async def _status(cfg: Path, *extra: str) -> tuple[int, str, str]:
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "s3sync", "status", "--config", str(cfg), *extra,
        env=clean_environ(), stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
    )  # fmt: skip
    out, err = await proc.communicate()
    assert proc.returncode is not None
    return proc.returncode, out.decode(), err.decode()


async def test_summary_first_then_counters(
    s3: Any, bucket: str, mirror: Path, make_settings: Any, tmp_path: Path
) -> None:
    seed(s3, bucket, {"a.txt": b"alpha", "dir/b.txt": b"bravo" * 300})
    async with run_daemon(make_settings(bucket, mirror, api={"token": TOKEN})) as d:
        auth = {"Authorization": f"Bearer {TOKEN}"}
        async with d.http.post(f"{d.url}/api/v1/sync", headers=auth) as resp:
            assert (await resp.json())["downloaded"] == 2
        cfg = tmp_path / "status.toml"
        cfg.write_text(f'[api]\nport = {d.url.rsplit(":", 1)[1]}\ntoken = "{TOKEN}"\n')
        rc, out, err = await _status(cfg)
        assert rc == 0, err
        raw_rc, raw, raw_err = await _status(cfg, "--json")
        assert raw_rc == 0, raw_err

    lines = out.splitlines()
    assert lines[0] == "s3sync is healthy", out
    assert lines[1].split() == ["mirror", f"s3://{bucket}/", "->", str(mirror)], out
    assert lines[2].strip() == "freshness   no events received yet; lag 0.0 s, 0 pending", out
    assert lines[3].strip().startswith("reconciled through 20") and "ago)" in lines[3], out
    assert lines[4].strip().startswith("reconcile   last 20") and "next not scheduled" in lines[4], out
    assert lines[5].strip().startswith("synced      2 files, 1.5 KiB (last minute: "), out
    assert "files/s" in lines[5] and "B/s" in lines[5], out
    assert lines[6].strip() == "0 deleted, 0 failed, 0 skipped, 0 unchanged", out
    assert lines[7].strip() == "queue       0 queued, 0 in flight, 0 journaled", out
    assert any(ln.strip() == "queue_depth: 0" for ln in lines[8:]), out  # the counters follow

    data = json.loads(raw)  # exactly one JSON object, as before
    assert data["files_synced"] == 2 and data["freshness"]["pending"] == 0
