#!/usr/bin/env python3
"""Open-loop S3-notification generator for W5 (and scripts/event_latency.py).

Runs in its own process so the harness's file poller and this sender never share
a GIL, and sends on a fixed schedule: event ``i`` is due at ``start + i / rate``
whatever the daemon does. A slow ``202`` never delays the next send (that would
be a closed loop, which hides queueing: the generator would slow down exactly
when the daemon falls behind). All connections are opened before the clock
starts; each send goes out on an idle keep-alive connection, or, when every one
is busy, pipelined (HTTP/1.1) behind the answers due on the least-loaded one, so
the send rate is held even when responses are slow. (Opening a new connection
instead made sends wait for the daemon's accept backlog: once it was behind,
the generator fell behind too and the run was INVALID for the generator's sake.)
Request bytes are built before the clock starts, so sending costs one ``write``
per event.

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
    """One keep-alive connection; requests on it are answered in order (HTTP/1.1 pipelining)."""

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.reader = reader
        self.writer = writer
        self.outstanding = 0
        self.broken = False


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
    statuses: dict[str, int] = {}
    sent = [0.0] * len(requests)
    done = asyncio.Event()
    answered = 0
    n = len(requests)

    async def replies(conn: _Conn) -> None:
        """Read this connection's answers in order, for as long as the run lasts."""
        nonlocal answered
        while True:
            try:
                status = await _read_response(conn)
            except (OSError, asyncio.IncompleteReadError, ValueError, IndexError) as exc:
                if conn.outstanding:  # requests written but never answered
                    statuses[type(exc).__name__] = statuses.get(type(exc).__name__, 0) + conn.outstanding
                    answered += conn.outstanding
                    conn.outstanding = 0
                conn.broken = True
                if answered >= n:
                    done.set()
                return
            statuses[str(status)] = statuses.get(str(status), 0) + 1
            conn.outstanding -= 1
            answered += 1
            if answered >= n:
                done.set()

    # Every connection is opened before the clock starts, so a send never waits for a
    # connect (a daemon behind on its accept backlog made the old generator's sends late,
    # which closed the loop). A send goes to the connection with the fewest requests
    # outstanding — an idle one when there is one, otherwise it is pipelined behind the
    # answers still due on that connection, so the schedule holds whatever the daemon does.
    conns: list[_Conn] = []
    for _ in range(int(spec.get("connections", 64))):
        reader, writer = await asyncio.open_connection(host, port)
        conns.append(_Conn(reader, writer))
    readers = [asyncio.ensure_future(replies(c)) for c in conns]
    start = float(spec["start_at"])
    interval = 1.0 / rate
    max_late = 0.0
    pipelined = 0
    i = 0
    while i < n:
        now = time.monotonic()
        due = start + i * interval
        if now < due:
            await asyncio.sleep(due - now)
            continue
        # Send everything that is due now (a late wake-up sends a small burst,
        # which keeps the average rate exact).
        while i < n and start + i * interval <= now:
            live = [c for c in conns if not c.broken]
            if not live:
                raise RuntimeError("every connection to the daemon was closed")
            conn = min(live, key=lambda c: c.outstanding)
            pipelined += conn.outstanding > 0
            t = time.monotonic()
            max_late = max(max_late, t - (start + i * interval))
            conn.writer.write(requests[i])
            conn.outstanding += 1
            sent[i] = t
            i += 1
    try:
        await asyncio.wait_for(done.wait(), timeout=60)
    except TimeoutError:
        pass
    unanswered = sum(c.outstanding for c in conns)
    for task in readers:
        task.cancel()
    for c in conns:
        c.writer.close()
    span = sent[-1] - sent[0] if n > 1 else 0.0
    return {
        "sent_at": sent,
        "statuses": statuses,
        "achieved_rate": (n - 1) / span if span > 0 else 0.0,
        "target_rate": rate,
        "max_late_ms": round(max_late * 1000, 3),
        "connections_opened": len(conns),
        "pipelined": pipelined,
        "unanswered": unanswered,
    }


def main(argv: list[str]) -> int:
    with open(argv[1]) as f:
        spec = json.load(f)
    result = asyncio.run(_run(spec))
    json.dump(result, sys.stdout)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
