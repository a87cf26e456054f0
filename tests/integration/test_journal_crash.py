"""202 means durable: SIGKILL right after the 202 loses nothing; the journal replays at start.

A real ``python -m s3sync serve`` subprocess is killed with SIGKILL immediately
after the notification is acknowledged. To be sure the change lives *only* in
the journal at that moment, the daemon talks to moto through a proxy that holds
every object GET for a minute: the transfer cannot have happened. The proxy is
then made fast, the daemon restarted, and the files must appear with no event
sent again.
"""

from __future__ import annotations

import asyncio
import json
import signal
import sqlite3
from pathlib import Path
from typing import Any

import aiohttp
from support.daemon import Daemon, free_port
from support.eventkit import s3_event, s3_record
from support.proxy import Proxy
from support.s3kit import clean_environ, tree
from support.wait import wait_for


async def notify(http: aiohttp.ClientSession, url: str, payload: Any) -> dict[str, Any]:
    """POST until accepted (503 while the engine is still opening)."""

    async def post() -> dict[str, Any] | None:
        async with http.post(f"{url}/api/v1/s3-notification", json=payload) as resp:
            if resp.status == 503:
                return None
            assert resp.status == 202, await resp.text()
            data: dict[str, Any] = await resp.json()
            return data

    result: dict[str, Any] = await wait_for(post, within=30, what="202 from the daemon")
    return result


class TestSigkillAfter202:
    """A change acknowledged with 202 survives SIGKILL and is applied after restart."""

    async def test_journal_replayed_after_sigkill(
        self, s3: Any, bucket: str, mirror: Path, tmp_path: Path, moto_endpoint: str
    ) -> None:
        """Kill -9 right after the 202; the restarted daemon downloads every accepted key."""
        objects = {"a.txt": b"alpha", "dir/b c.txt": b"bravo", "ü/+.txt": b"charlie"}
        for k, v in objects.items():
            s3.put_object(Bucket=bucket, Key=k, Body=v)
        port = free_port()
        async with Proxy(moto_endpoint) as proxy, aiohttp.ClientSession() as http:
            delay = proxy.faults.add("latency", op="OBJECT", seconds=60.0)
            config = tmp_path / "s3sync.toml"
            config.write_text(
                f'[s3]\nbucket = "{bucket}"\nendpoint_url = "{proxy.url}"\n'
                f"[sync]\nlocal_dir = {json.dumps(str(mirror))}\nperiodic = false\n"
                f"[api]\nport = {port}\n"
                '[log]\nformat = "json"\n'
            )
            daemon = Daemon(clean_environ(), tmp_path / "serve.log", config=config, port=port)
            await asyncio.to_thread(daemon.start)
            event = s3_event(*(s3_record(bucket, "ObjectCreated:Put", k) for k in objects))
            ack = await notify(http, daemon.url, event)
            assert await asyncio.to_thread(daemon.kill) == -signal.SIGKILL
            assert ack == {"accepted": 3, "ignored": 0}
            assert tree(mirror) == {}  # the GETs were being held: nothing was transferred

            db = sqlite3.connect(mirror / ".s3sync" / "state.db")
            try:
                journaled = sorted(r[0] for r in db.execute("SELECT key FROM journal"))
            finally:
                db.close()
            assert journaled == sorted(objects)

            delay.seconds = 0.0
            await asyncio.to_thread(daemon.start)
            await wait_for(lambda: tree(mirror) == objects, within=30, what="replayed files")

            async def drained() -> bool:
                async with http.get(f"{daemon.url}/api/v1/stats") as resp:
                    st = await resp.json()
                return bool(st["journal_pending"] == 0 and st["queue_depth"] == 0 and st["in_flight"] == 0)

            await wait_for(drained, what="journal drained")
            assert await asyncio.to_thread(daemon.terminate, 30) == 0
