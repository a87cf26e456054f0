"""Convergence under chaos: random faults, random bucket changes, lossy notifications.

Each seed (``S3SYNC_CHAOS_SEEDS`` of them, default 3; ``make chaos`` runs 50)
drives one real app through the fault proxy for several rounds. Every round
changes the rules (errors, SlowDown, resets, truncation, corruption, latency,
dropped connections on GET/HEAD/LIST), mutates the bucket (put, overwrite,
delete), and sends notifications for only some of the changes — duplicated,
reordered, some lost — plus reconciles that may fail half-way. After the
faults stop, one reconcile with ``delete=true`` must leave the mirror equal
to the bucket, byte for byte, with no temporary file anywhere.
"""

from __future__ import annotations

import json
import os
import random
from pathlib import Path
from typing import Any

import pytest
from support.eventkit import s3_record
from support.proxy import Proxy
from support.s3kit import temp_files, tree
from support.wait import wait_for

SEEDS = int(os.environ.get("S3SYNC_CHAOS_SEEDS", "3"))
ROUNDS = int(os.environ.get("S3SYNC_CHAOS_ROUNDS", "6"))
SIZES = (0, 1, 100, 4096, 70_000, 300_000, 1_100_000)


def bucket_contents(s3: Any, bucket: str) -> dict[str, bytes]:
    out = {}
    for page in s3.get_paginator("list_objects_v2").paginate(Bucket=bucket):
        for item in page.get("Contents", []):
            out[item["Key"]] = s3.get_object(Bucket=bucket, Key=item["Key"])["Body"].read()
    return out


def random_rules(rng: random.Random, proxy: Proxy) -> None:
    proxy.faults.clear()
    for _ in range(rng.randint(0, 3)):
        action = rng.choice(["status", "status", "reset", "truncate", "corrupt", "latency", "drop"])
        op = rng.choice(["GET", "GET", "HEAD", "LIST", "*"])
        if action in ("reset", "truncate", "corrupt"):
            op = "GET"
        kw: dict[str, Any] = {"op": op, "probability": rng.choice([0.1, 0.3, 0.5])}
        if action == "status":
            kw["status"], kw["code"] = rng.choice([(500, "InternalError"), (503, "SlowDown"),
                                                   (503, "ServiceUnavailable")])
        elif action == "latency":
            kw["seconds"] = rng.choice([0.01, 0.05, 0.2])
        elif action != "drop":
            kw["after_bytes"] = rng.randint(0, 50_000)
        proxy.faults.add(action, **kw)  # type: ignore[arg-type]


@pytest.fixture
async def start_api(aiohttp_client: Any) -> Any:
    from s3sync.daemon.app import create_app

    async def _start(settings: Any) -> Any:
        return await aiohttp_client(create_app(settings))

    return _start


@pytest.mark.parametrize("seed", range(SEEDS))
async def test_chaos_converges(
    seed: int, s3: Any, bucket: str, mirror: Path, proxy: Proxy, proxied_settings: Any, start_api: Any
) -> None:
    rng = random.Random(seed)
    proxy.faults.rng.seed(seed)
    settings = proxied_settings(bucket, mirror, s3={"fast_get": seed % 2 == 0},
                                sync={"retry_attempts": 2, "concurrency": 4, "delete": False})
    client = await start_api(settings)
    names = [f"{rng.choice(['', 'd1/', 'd1/d2/', 'x/'])}k{i:02d}.bin" for i in range(24)]
    live: set[str] = set()
    tally = {"puts": 0, "deletes": 0, "events_sent": 0, "events_lost": 0, "reconciles": 0}

    for _ in range(ROUNDS):
        random_rules(rng, proxy)
        records = []
        for _ in range(rng.randint(3, 10)):
            key = rng.choice(names)
            if key in live and rng.random() < 0.3:
                s3.delete_object(Bucket=bucket, Key=key)
                live.discard(key)
                tally["deletes"] += 1
                rec = s3_record(bucket, "ObjectRemoved:Delete", key)
            else:
                s3.put_object(Bucket=bucket, Key=key, Body=rng.randbytes(rng.choice(SIZES)))
                live.add(key)
                tally["puts"] += 1
                rec = s3_record(bucket, "ObjectCreated:Put", key)
            if rng.random() < 0.25:
                tally["events_lost"] += 1
                continue
            records.append(rec)
            if rng.random() < 0.2:
                records.append(rec)  # duplicate
        rng.shuffle(records)  # reordered
        while records:
            batch, records = records[: rng.randint(1, 4)], records[4:]
            r = await client.post("/api/v1/s3-notification", json={"Records": batch})
            assert r.status == 202, await r.text()
            tally["events_sent"] += len(batch)
        if rng.random() < 0.5:
            tally["reconciles"] += 1
            r = await client.post("/api/v1/sync?background=true&delete=true")
            assert r.status == 202

    proxy.faults.clear()
    await wait_for(lambda: _idle(client), within=60, what="queue idle after the chaos")
    r = await client.post("/api/v1/sync?delete=true")
    result = json.loads(await r.text())
    assert r.status == 200 and result["status"] == "success", result
    expected = bucket_contents(s3, bucket)
    got = tree(mirror)
    assert sorted(got) == sorted(expected), (seed, tally)
    assert all(got[k] == expected[k] for k in expected), seed
    assert temp_files(mirror) == []
    print("CHAOS", json.dumps({"seed": seed, **tally, "faults": dict(proxy.faults.fired),
                               "objects": len(expected)}))


async def _idle(client: Any) -> bool:
    st = json.loads(await (await client.get("/api/v1/stats")).text())
    return bool(st["queue_depth"] == 0 and st["in_flight"] == 0 and not st["reconcile_running"])
