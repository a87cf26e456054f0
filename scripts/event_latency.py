"""Measure event → file-visible latency on loopback: moto S3 + the real daemon (``s3sync serve``).

Every object is PUT into moto first (S3 write time is not part of event → file);
then one S3-shaped notification per object is POSTed to the daemon's HTTP
endpoint *open-loop* at ``--rate`` by ``bench/eventgen.py`` in its own process,
and this process polls the mirror until each file exists with the right size.
Client-side latency runs from the generator's send time (CLOCK_MONOTONIC, shared
by both processes) to the first poll that sees the file; the daemon's own
``event_latency_seconds`` p50/p99 from ``/api/v1/stats`` are printed next to
them. The achieved send rate is printed, and the run is INVALID (exit 2) when
it is below 95% of ``--rate``.

    .venv/bin/python scripts/event_latency.py --rate 200 --count 2000

Everything stays on 127.0.0.1. Note that moto answers a GET in ~1-3 ms of CPU;
at high rates it, not the daemon, can be the limit: bench/run.py's W5 uses
``rclone serve s3`` instead.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import socket
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any
from urllib.parse import quote_plus

EVENTGEN = Path(__file__).resolve().parent.parent / "bench" / "eventgen.py"

AWS_ENV = {
    "AWS_ACCESS_KEY_ID": "testing",
    "AWS_SECRET_ACCESS_KEY": "testing",
    "AWS_DEFAULT_REGION": "us-east-1",
}


def _quantile(data: list[float], q: float) -> float:
    s = sorted(data)
    return s[min(len(s) - 1, max(0, round(q * (len(s) - 1))))]


def _event(bucket: str, key: str, size: int, etag: str) -> dict[str, Any]:
    return {
        "Records": [
            {
                "eventVersion": "2.1",
                "eventSource": "aws:s3",
                "awsRegion": "us-east-1",
                "eventName": "ObjectCreated:Put",
                "s3": {
                    "bucket": {"name": bucket},
                    "object": {"key": quote_plus(key, safe="/"), "size": size, "eTag": etag},
                },
            }
        ]
    }


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


async def _wait_http(url: str, http: Any, proc: asyncio.subprocess.Process, what: str) -> None:
    import aiohttp

    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        if proc.returncode is not None:
            raise SystemExit(f"{what} exited with {proc.returncode}")
        try:
            async with http.get(url) as resp:
                if resp.status < 500:
                    return
        except aiohttp.ClientError:
            pass
        await asyncio.sleep(0.1)
    raise SystemExit(f"{what} did not come up at {url}")


async def _run(args: argparse.Namespace) -> dict[str, Any]:
    """moto and the daemon each in their own process, so neither steals the client's GIL."""
    import aiohttp
    import boto3

    env = {k: v for k, v in os.environ.items() if not k.startswith(("S3SYNC_", "AWS_"))} | AWS_ENV
    os.environ.update(AWS_ENV)
    workdir = Path(tempfile.mkdtemp(prefix="s3sync-latency-"))
    mirror = workdir / "mirror"
    moto_port, api_port = _free_port(), _free_port()
    endpoint = f"http://127.0.0.1:{moto_port}"
    url = f"http://127.0.0.1:{api_port}"
    procs: list[asyncio.subprocess.Process] = []
    devnull = asyncio.subprocess.DEVNULL
    try:
        async with aiohttp.ClientSession() as http:
            moto = await asyncio.create_subprocess_exec(
                sys.executable,
                "-c",
                "import sys; from moto.server import main; sys.exit(main(sys.argv[1:]))",
                "-H",
                "127.0.0.1",
                "-p",
                str(moto_port),
                env=env,
                stdout=devnull,
                stderr=devnull,
            )
            procs.append(moto)
            await _wait_http(endpoint + "/moto-api/", http, moto, "moto")
            s3 = boto3.client("s3", endpoint_url=endpoint, region_name="us-east-1")
            bucket = "latency-bench"
            s3.create_bucket(Bucket=bucket)
            body = os.urandom(args.size)
            keys = [f"lat/{i // 100:03d}/obj-{i:05d}.bin" for i in range(args.count)]
            etags = {}
            for k in keys:  # seeded up front: S3 write time is not part of event → file
                etags[k] = s3.put_object(Bucket=bucket, Key=k, Body=body)["ETag"].strip('"')

            config = workdir / "s3sync.toml"
            config.write_text(
                f'[s3]\nbucket = "{bucket}"\nendpoint_url = "{endpoint}"\n'
                f"[sync]\nlocal_dir = {json.dumps(str(mirror))}\nperiodic = false\n"
                f"concurrency = {args.concurrency}\n"
                f"[api]\nport = {api_port}\n"
                '[log]\nlevel = "WARNING"\nformat = "json"\n'
            )
            daemon = await asyncio.create_subprocess_exec(
                sys.executable,
                "-m",
                "s3sync",
                "serve",
                "--config",
                str(config),
                env=env,
                stdout=devnull,
                stderr=devnull,
            )
            procs.append(daemon)
            await _wait_http(url + "/ping", http, daemon, "s3sync serve")

            # The notifications go out open-loop from bench/eventgen.py in its own
            # process (a slow 202 never delays the next send, and the sender never
            # shares a GIL with the poller below); event i is due at start + i/rate.
            start_at = time.monotonic() + 1.0
            spec = workdir / "events.json"
            spec.write_text(
                json.dumps(
                    {
                        "host": "127.0.0.1",
                        "port": api_port,
                        "path": "/api/v1/s3-notification",
                        "rate": args.rate,
                        "start_at": start_at,
                        "bodies": [json.dumps(_event(bucket, k, args.size, etags[k])) for k in keys],
                    }
                )
            )
            gen = await asyncio.create_subprocess_exec(
                sys.executable, str(EVENTGEN), str(spec), stdout=asyncio.subprocess.PIPE
            )
            seen: dict[int, float] = {}

            async def watch() -> None:
                """Poll each key from its due time on (the client's view of 'file visible')."""
                pending: list[int] = []
                nxt = 0
                while len(seen) < len(keys):
                    due = min(len(keys), max(0, int((time.monotonic() - start_at) * args.rate) + 1))
                    pending.extend(range(nxt, due))
                    nxt = max(nxt, due)
                    still = []
                    for i in pending:
                        try:
                            if (mirror / keys[i]).stat().st_size == args.size:
                                seen[i] = time.monotonic()
                                continue
                        except FileNotFoundError:
                            pass
                        still.append(i)
                    pending = still
                    await asyncio.sleep(args.poll)

            watcher = asyncio.create_task(watch())
            out, _ = await gen.communicate()
            sent = json.loads(out)
            try:
                await asyncio.wait_for(watcher, 120)
            except TimeoutError:
                pass
            latencies = [seen[i] - sent["sent_at"][i] for i in seen]
            async with http.get(f"{url}/api/v1/stats") as resp:
                stats = await resp.json()
    finally:
        for proc in reversed(procs):
            if proc.returncode is None:
                proc.terminate()
                await proc.wait()

    daemon = stats["event_latency_seconds"]
    achieved = sent["achieved_rate"]
    return {
        "events": args.count,
        "target_rate_per_s": args.rate,
        "achieved_rate_per_s": round(achieved, 1),
        "valid": achieved >= 0.95 * args.rate,
        "generator_max_late_ms": sent["max_late_ms"],
        "generator_connections": sent["connections_opened"],
        "http_statuses": sent["statuses"],
        "missing": args.count - len(seen),
        "client_p50_ms": round(_quantile(latencies, 0.5) * 1000, 2),
        "client_p99_ms": round(_quantile(latencies, 0.99) * 1000, 2),
        "client_mean_ms": round(statistics.fmean(latencies) * 1000, 2),
        "client_max_ms": round(max(latencies) * 1000, 2),
        "poll_interval_ms": args.poll * 1000,
        "daemon_count": daemon["count"],
        "daemon_p50_ms": round(daemon["p50"] * 1000, 2) if daemon["p50"] is not None else None,
        "daemon_p99_ms": round(daemon["p99"] * 1000, 2) if daemon["p99"] is not None else None,
        "files_synced": stats["files_synced"],
    }


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--rate", type=float, default=200.0, help="events per second (default 200)")
    p.add_argument("--count", type=int, default=2000, help="number of objects/events (default 2000)")
    p.add_argument("--size", type=int, default=4096, help="bytes per object (default 4096)")
    p.add_argument("--concurrency", type=int, default=32, help="daemon sync.concurrency (default 32)")
    p.add_argument("--poll", type=float, default=0.001, help="client poll interval, seconds (default 0.001)")
    p.add_argument("--json", action="store_true", help="print one JSON object instead of a table")
    args = p.parse_args(argv)
    result = asyncio.run(_run(args))
    if args.json:
        print(json.dumps(result))
    else:
        for k, v in result.items():
            print(f"{k:>22}: {v}")
    if not result["valid"]:
        print(
            f"INVALID: the generator held only {result['achieved_rate_per_s']}/s of {args.rate}/s",
            file=sys.stderr,
        )
        return 2
    return 0 if result["missing"] == 0 else 1


if __name__ == "__main__":
    sys.exit(main())
