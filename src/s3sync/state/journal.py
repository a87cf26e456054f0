"""The journal: changes accepted from events, kept until applied (202 means durable).

An accepted notification or SQS message is appended here, committed, and only
then acknowledged; its row is removed once the change is applied (or it stays
for a later retry, and is replayed at the next start). These functions run on
the state store's one SQLite thread, on its connection.

"202 means durable" includes a power loss: the connection runs WAL with
``synchronous=NORMAL`` (object rows are batched and repairable by the next
reconcile), but an append switches to ``FULL`` for its own commit, so the WAL
is fsynced before the 202 or the SQS delete.
"""

from __future__ import annotations

import asyncio
import sqlite3
from collections.abc import Awaitable, Callable, Iterable

from s3sync.model import Change, ChangeKind, ChangeSource


def append(conn: sqlite3.Connection, items: list[Change]) -> list[int]:
    """Insert ``items`` in one committed transaction; their journal ids in order."""
    ids: list[int] = []
    conn.execute("PRAGMA synchronous=FULL")  # this commit must survive a power loss
    conn.execute("BEGIN IMMEDIATE")
    try:
        for c in items:
            cur = conn.execute(
                "INSERT INTO journal (key, kind, source, etag, size, sequencer, version_id,"
                " delete_marker, received_at) VALUES (?,?,?,?,?,?,?,?,?)",
                (
                    c.key,
                    c.kind.value,
                    c.source.value,
                    c.etag,
                    c.size,
                    c.sequencer,
                    c.version_id,
                    int(c.delete_marker),
                    c.received_at,
                ),
            )
            ids.append(int(cur.lastrowid or 0))
        conn.execute("COMMIT")
    except BaseException:
        conn.execute("ROLLBACK")
        raise
    finally:
        conn.execute("PRAGMA synchronous=NORMAL")
    return ids


def remove(conn: sqlite3.Connection, items: list[tuple[int]]) -> None:
    conn.executemany("DELETE FROM journal WHERE id = ?", items)


def pending(conn: sqlite3.Connection) -> list[tuple[int, Change]]:
    """Every row still in the journal, oldest first, as (id, change)."""
    cur = conn.execute(
        "SELECT id, key, kind, source, etag, size, sequencer, version_id, delete_marker,"
        " received_at FROM journal ORDER BY id"
    )
    return [
        (
            int(r[0]),
            Change(
                key=r[1],
                kind=ChangeKind(r[2]),
                source=ChangeSource(r[3]),
                etag=r[4],
                size=r[5],
                sequencer=r[6],
                version_id=r[7],
                delete_marker=bool(r[8]),
                received_at=float(r[9]),
            ),
        )
        for r in cur.fetchall()
    ]


class GroupAppender:
    """Journal appends in group commits, on the store's thread via ``commit``.

    Each append is an fsync of the WAL (``synchronous=FULL``), 3-5 ms on a busy
    disk — one commit per notification caps intake at a few hundred per second.
    So an append that finds a commit in progress waits for it and then goes out
    in one transaction with every append that queued meanwhile; each caller
    still returns only after the commit holding its rows. A lone append commits
    at once, alone.
    """

    def __init__(self, commit: Callable[[list[Change]], Awaitable[list[int]]]) -> None:
        self._commit = commit
        self._waiting: list[tuple[list[Change], asyncio.Future[list[int]]]] = []
        self._busy = False
        self._task: asyncio.Task[None] | None = None

    async def append(self, changes: Iterable[Change]) -> list[int]:
        items = list(changes)
        if not items:
            return []
        fut: asyncio.Future[list[int]] = asyncio.get_running_loop().create_future()
        self._waiting.append((items, fut))
        if not self._busy:
            # its own task: a caller cancelled mid-commit must not strand the ones queued behind it
            self._busy = True
            self._task = asyncio.ensure_future(self._drain())
        return await fut

    async def _drain(self) -> None:
        try:
            while self._waiting:
                batch, self._waiting = self._waiting, []
                await self._one(batch)
        finally:
            self._busy = False

    async def _one(self, batch: list[tuple[list[Change], asyncio.Future[list[int]]]]) -> None:
        everything = [c for items, _ in batch for c in items]
        try:
            ids = await self._commit(everything)
        except BaseException as exc:
            for _, fut in batch:
                if not fut.done():
                    fut.set_exception(exc)
            if not isinstance(exc, Exception):
                raise
            return
        start = 0
        for items, fut in batch:
            if not fut.done():
                fut.set_result(ids[start : start + len(items)])
            start += len(items)
