#!/usr/bin/env python3
"""Open-loop S3-notification generator for W5 (and scripts/event_latency.py).

Runs in its own process so the harness's file poller and this sender never share
a GIL, and sends on a fixed schedule: event ``i`` is due at ``start + i / rate``
whatever the daemon does. A slow ``202`` never delays the next send (that would
be a closed loop, which hides queueing: the generator would slow down exactly
when the daemon falls behind). Each send goes out on an idle keep-alive
connection; when every connection is busy a new one is opened, so the send rate
is held even if responses are slow. Request bytes are built before the clock
starts, so sending costs one ``write`` per event.

Input: a JSON file ``{"host", "port", "path", "rate", "start_at", "bodies": [...]}``
(``start_at`` is a ``time.monotonic()`` value: CLOCK_MONOTONIC is system-wide on
Linux, so the parent process can compare it with its own clock). Output, one
JSON object on stdout: the monotonic send time of every event, the HTTP status
counts, the achieved rate and the worst lateness against the schedule.

Standard library only.
"""

from __future__ import annotations

import asyncio
import json
import sys
import time
from typing import Any


class _Conn:
    """One keep-alive connection; at most one request outstanding (no pipelining)."""

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.reader = reader
        self.writer = writer


async def _read_response(conn: _Conn) -> int:
    head = await conn.reader.readuntil(b"\r\n\r\n")
    lines = head.split(b"\r\n")
    status = int(lines[0].split(b" ", 2)[1])
    length = 0
    for line in lines[1:]:
        name, _, value = line.partition(b":")
        if name.strip().lower() == b"content-length":
            length = int(value.strip())
    if length:
        await conn.reader.readexactly(length)
    return status


async def _run(spec: dict[str, Any]) -> dict[str, Any]:
    host, port, path, rate = spec["host"], int(spec["port"]), spec["path"], float(spec["rate"])
    bodies: list[str] = spec["bodies"]
    requests = []
    for body in bodies:
        raw = body.encode()
        requests.append(
            (
                f"POST {path} HTTP/1.1\r\nHost: {host}:{port}\r\n"
                f"Content-Type: application/json\r\nContent-Length: {len(raw)}\r\n\r\n"
            ).encode()
            + raw
        )
    idle: list[_Conn] = []
    opened = 0
    statuses: dict[str, int] = {}
    sent = [0.0] * len(requests)
    inflight: set[asyncio.Task[None]] = set()

    async def connect() -> _Conn:
        nonlocal opened
        reader, writer = await asyncio.open_connection(host, port)
        opened += 1
        return _Conn(reader, writer)

    async def await_reply(conn: _Conn) -> None:
        try:
            status = await _read_response(conn)
        except (OSError, asyncio.IncompleteReadError, ValueError, IndexError) as exc:
            statuses[type(exc).__name__] = statuses.get(type(exc).__name__, 0) + 1
            conn.writer.close()
            return
        statuses[str(status)] = statuses.get(str(status), 0) + 1
        idle.append(conn)

    for _ in range(int(spec.get("connections", 16))):
        idle.append(await connect())
    start = float(spec["start_at"])
    interval = 1.0 / rate
    max_late = 0.0
    i = 0
    n = len(requests)
    while i < n:
        now = time.monotonic()
        due = start + i * interval
        if now < due:
            await asyncio.sleep(due - now)
            continue
        # Send everything that is due now (a late wake-up sends a small burst,
        # which keeps the average rate exact).
        while i < n and start + i * interval <= now:
            conn = idle.pop() if idle else await connect()
            t = time.monotonic()
            max_late = max(max_late, t - (start + i * interval))
            conn.writer.write(requests[i])
            sent[i] = t
            task = asyncio.ensure_future(await_reply(conn))
            inflight.add(task)
            task.add_done_callback(inflight.discard)
            i += 1
    if inflight:
        await asyncio.wait(inflight, timeout=60)
    for conn in idle:
        conn.writer.close()
    span = sent[-1] - sent[0] if n > 1 else 0.0
    return {
        "sent_at": sent,
        "statuses": statuses,
        "achieved_rate": (n - 1) / span if span > 0 else 0.0,
        "target_rate": rate,
        "max_late_ms": round(max_late * 1000, 3),
        "connections_opened": opened,
        "unanswered": len(inflight),
    }


def main(argv: list[str]) -> int:
    with open(argv[1]) as f:
        spec = json.load(f)
    result = asyncio.run(_run(spec))
    json.dump(result, sys.stdout)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
