"""GET /api/v1/wait end to end: the real app against moto, S3's notification never sent.

The producer PUTs (or DELETEs) and waits; s3sync fetches the key itself. A real
proxy in front of moto counts the GETs (many waiters, one fetch). The waiter
registry is also driven directly with 10,000 idle waiters: parked, they cost no
checks at all (nothing polls), and they leave nothing behind when cancelled.
"""

from __future__ import annotations

import asyncio
import gc
import json
import tracemalloc
from pathlib import Path
from typing import Any
from urllib.parse import urlencode

import aiohttp
import pytest
from support.daemon import run_daemon
from support.proxy import Proxy
from support.s3kit import tree
from support.wait import wait_for


async def _wait(http: aiohttp.ClientSession, url: str, **params: str) -> tuple[int, dict[str, Any]]:
    async with http.get(f"{url}/api/v1/wait?{urlencode(params)}") as resp:
        text = await resp.text()
        assert "Traceback" not in text
        return resp.status, json.loads(text)


def _etag(s3: Any, bucket: str, key: str) -> str:
    return str(s3.head_object(Bucket=bucket, Key=key)["ETag"])


class TestWaitForAKey:
    async def test_returns_when_the_file_is_durable_without_any_event(
        self, s3: Any, bucket: str, mirror: Path, make_settings: Any, moto_endpoint: str
    ) -> None:
        async with Proxy(moto_endpoint) as proxy:
            proxy.faults.add("latency", op="OBJECT", seconds=0.3)
            settings = make_settings(bucket, mirror, s3={"endpoint_url": proxy.url})
            async with run_daemon(settings) as d:
                s3.put_object(Bucket=bucket, Key="out/report.csv", Body=b"v1")
                etag = _etag(s3, bucket, "out/report.csv")
                status, body = await _wait(d.http, d.url, key="out/report.csv", etag=etag)
                assert status == 200, body
                assert body == {
                    "key": "out/report.csv",
                    "status": "present",
                    "etag": etag.strip('"'),
                    "size": 2,
                    "path": "out/report.csv",
                }
                assert (mirror / "out" / "report.csv").read_bytes() == b"v1"

                # many waiters on one key (a new version, quotes left off): one GET between them
                s3.put_object(Bucket=bucket, Key="out/report.csv", Body=b"version two")
                etag2 = _etag(s3, bucket, "out/report.csv").strip('"')
                before = len(proxy.requests("GET", "out/report.csv"))
                answers = await asyncio.gather(
                    *(_wait(d.http, d.url, key="out/report.csv", etag=etag2) for _ in range(25))
                )
                assert {a[0] for a in answers} == {200}
                assert {a[1]["etag"] for a in answers} == {etag2}
                assert len(proxy.requests("GET", "out/report.csv")) - before == 1
                assert (mirror / "out" / "report.csv").read_bytes() == b"version two"

                # neither etag nor absent: whatever S3 has now (HEAD), then fetched
                s3.put_object(Bucket=bucket, Key="out/other.bin", Body=b"zz")
                status, body = await _wait(d.http, d.url, key="out/other.bin")
                assert status == 200 and body["status"] == "present" and body["size"] == 2
                assert (mirror / "out" / "other.bin").read_bytes() == b"zz"

                # absent: deleted in S3, removed from the mirror without an event
                s3.delete_object(Bucket=bucket, Key="out/other.bin")
                status, body = await _wait(d.http, d.url, key="out/other.bin", absent="true")
                assert status == 200, body
                assert body["status"] == "absent" and body["etag"] is None
                assert not (mirror / "out" / "other.bin").exists()
                # neither form on a key S3 no longer has: absent at once
                status, body = await _wait(d.http, d.url, key="out/other.bin")
                assert (status, body["status"]) == (200, "absent")
                engine = d.services.engine()
                assert engine.waiters.keys == 0 and engine.waiters.waiting == 0

    async def test_timeout_answers_504_with_the_state_held(
        self, s3: Any, bucket: str, mirror: Path, make_settings: Any
    ) -> None:
        s3.put_object(Bucket=bucket, Key="k.txt", Body=b"old")
        async with run_daemon(make_settings(bucket, mirror)) as d:
            status, body = await _wait(d.http, d.url, key="k.txt", etag="0" * 32, timeout="1.5")
            assert status == 504, body
            assert body["error"] == "wait_timeout" and body["message"]
            assert body["status"] == "present" and body["key"] == "k.txt"
            assert body["etag"] == _etag(s3, bucket, "k.txt").strip('"')  # it fetched what S3 has
            assert tree(mirror) == {"k.txt": b"old"}
            assert d.services.engine().waiters.keys == 0

    @pytest.mark.parametrize(
        ("params", "code"),
        [
            ({"key": "../escape"}, "unsafe_key"),
            ({"key": "a/../../b", "absent": "true"}, "unsafe_key"),
            ({"key": "elsewhere/x"}, "not_mirrored"),
            ({"key": "in/skip.tmp"}, "not_mirrored"),
            ({"key": "in/x", "timeout": "abc"}, "invalid_parameter"),
            ({"key": "in/x", "timeout": "301"}, "invalid_parameter"),
            ({"key": "in/x", "timeout": "nan"}, "invalid_parameter"),
            ({"key": "in/x", "etag": "abc", "absent": "true"}, "invalid_parameter"),
            ({"key": "in/x", "absent": "maybe"}, "invalid_parameter"),
            ({"key": ""}, "invalid_parameter"),
        ],
    )
    async def test_refusals_are_400_with_a_reason(
        self, bucket: str, mirror: Path, make_settings: Any, params: dict[str, str], code: str
    ) -> None:
        settings = make_settings(bucket, mirror, s3={"prefix": "in/"}, sync={"exclude": ["*.tmp"]})
        async with run_daemon(settings) as d:
            status, body = await _wait(d.http, d.url, **params)
            assert (status, body["error"]) == (400, code), body
            assert body["message"]

    async def test_a_client_that_goes_away_leaves_nothing_behind(
        self, s3: Any, bucket: str, mirror: Path, make_settings: Any
    ) -> None:
        async with run_daemon(make_settings(bucket, mirror)) as d:
            engine = d.services.engine()
            async with aiohttp.ClientSession() as other:
                pending = asyncio.ensure_future(
                    _wait(other, d.url, key="never.txt", etag="1" * 32, timeout="300")
                )
                await wait_for(lambda: engine.waiters.waiting == 1, within=20, what="waiter parked")
                pending.cancel()
            await wait_for(
                lambda: engine.waiters.keys == 0 and engine.waiters.waiting == 0,
                within=30,
                what="the gone client's waiter removed",
            )


class TestIdleWaiters:
    async def test_ten_thousand_idle_waiters_cost_no_checks_and_little_memory(self) -> None:
        """Parked waiters are woken only by wake(): no check runs while nothing is applied."""
        from s3sync.sync.waiters import Held, KeyWaiters, Want

        checks = 0
        never: asyncio.Future[Any] = asyncio.get_running_loop().create_future()

        async def held(key: str) -> Held:
            nonlocal checks
            checks += 1
            return Held(key, present=False)

        waiters = KeyWaiters(held, lambda change: never)
        gc.collect()
        tracemalloc.start()
        base = tracemalloc.get_traced_memory()[0]
        tasks = [
            asyncio.ensure_future(waiters.wait(f"k/{i % 100}", Want(etag="e"), 300)) for i in range(10_000)
        ]
        await wait_for(lambda: checks == 10_000, within=60, what="every waiter checked once")
        await asyncio.sleep(0.5)
        used = tracemalloc.get_traced_memory()[0] - base
        tracemalloc.stop()
        assert checks == 10_000  # idle: nobody checked again
        assert waiters.fetches == 100  # one fetch per key, not per waiter
        assert used < 10_000 * 4096, used  # well under 4 KiB per idle waiter
        waiters.wake("k/7")
        await wait_for(lambda: checks == 10_100, within=30, what="the woken key's waiters re-checked")
        for t in tasks:
            t.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        assert waiters.keys == 0 and waiters.waiting == 0


class TestWaitCli:
    async def test_exit_codes(self, s3: Any, bucket: str, mirror: Path, make_settings: Any) -> None:
        """``s3sync wait``: 0 reached (file there), 1 timed out, 2 a key the mirror never holds."""
        import sys

        from support.s3kit import clean_environ

        async def run(*args: str) -> tuple[int, str, str]:
            proc = await asyncio.create_subprocess_exec(
                sys.executable, "-m", "s3sync", "wait", *args, "--url", d.url,
                env=clean_environ(), stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
            )  # fmt: skip
            out, err = await proc.communicate()
            assert proc.returncode is not None
            return proc.returncode, out.decode(), err.decode()

        async with run_daemon(make_settings(bucket, mirror)) as d:
            s3.put_object(Bucket=bucket, Key="cli/a.txt", Body=b"abc")
            etag = _etag(s3, bucket, "cli/a.txt")
            rc, out, err = await run("cli/a.txt", "--etag", etag, "--json")
            assert rc == 0, err
            assert json.loads(out)["status"] == "present"
            assert (mirror / "cli" / "a.txt").read_bytes() == b"abc"
            rc, out, err = await run("cli/a.txt", "--etag", "f" * 32, "--timeout", "1")
            assert rc == 1 and "present" in err, (out, err)
            rc, out, err = await run("../up", "--absent")
            assert rc == 2 and "never hold" in err, (out, err)
            s3.delete_object(Bucket=bucket, Key="cli/a.txt")
            rc, out, err = await run("cli/a.txt", "--absent")
            assert (rc, out.strip()) == (0, "absent: cli/a.txt"), err


class TestAuth:
    async def test_freshness_and_wait_need_the_token(
        self, bucket: str, mirror: Path, make_settings: Any
    ) -> None:
        async with run_daemon(make_settings(bucket, mirror, api={"token": "tok-123456"})) as d:
            for path in ("/api/v1/freshness", "/api/v1/wait?key=a&absent=true&timeout=0"):
                async with d.http.get(d.url + path) as resp:
                    assert resp.status == 401
                    assert (await resp.json())["error"] == "unauthorized"
                async with d.http.get(d.url + path, headers={"Authorization": "Bearer tok-123456"}) as resp:
                    assert resp.status == 200, await resp.text()
