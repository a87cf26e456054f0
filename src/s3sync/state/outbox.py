"""The change hooks' outbox: applied changes kept in SQLite until a hook acknowledges them.

At least once, never lost (docs/freshness.md, "Change hooks"). The table lives in
the state store's database file and is written three ways, all by the store's
own thread on its writing connection (SQLite has one write lock per database; a
second writer that finds it taken sleeps in the busy handler, 1, 2, 5 ms ... —
and so did the journal commits events wait for, W5's p99 at 200/s 6 → 16 ms):

- :meth:`Outbox.ride` — a journaled change's document joins the store's next
  batch, in the transaction that removes its journal row
  (:meth:`StateStore.ride`): no commit, no thread hop of its own (~10 µs of CPU
  a change against ~100 µs for a commit of its own, measured). Until that batch
  commits, the journal row holds the change and a crash replays it.
- :meth:`Outbox.add` / :meth:`Outbox.settle` — changes no journal holds (a
  pass's, a wait's fetch) are written at once, durable on return: a provisional
  row before the apply, made final or dropped after. Writes that arrive while a
  commit runs go out together in the next one (group commit), and rows riding
  the store's batch are committed first (per-key order).

Commits use ``synchronous=NORMAL`` like the store's batches: a process crash
loses nothing committed, and because the WAL is written in order, a power loss
that keeps a later journal removal also keeps an earlier insert. The delivery
side — reading the oldest rows, deleting acknowledged ones, a few times a second
at most — has a connection and a thread of its own, so a large batch read never
queues in front of the sync.
"""

from __future__ import annotations

import asyncio
import functools
import json
import sqlite3
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

from s3sync.state.store import StateStore, connect_writer

#: A document with this field set is provisional: a change being applied (not delivered yet).
PROVISIONAL = "provisional"

_PROVISIONAL_MARK = f'"{PROVISIONAL}":true'  # as _dumps writes it
_Write = tuple[list[dict[str, Any]], list[tuple[int, dict[str, Any] | None]], "asyncio.Future[list[int]]"]


def _dumps(doc: dict[str, Any]) -> str:
    return json.dumps(doc, separators=(",", ":"))


_INSERT = "INSERT INTO outbox (doc) VALUES (?)"
_SCHEMA = "CREATE TABLE IF NOT EXISTS outbox (id INTEGER PRIMARY KEY AUTOINCREMENT, doc TEXT NOT NULL)"


class Outbox:
    """Durable FIFO of change documents (JSON objects), acknowledged by id."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="s3sync-outbox")
        self._conn: sqlite3.Connection | None = None
        self._store: StateStore | None = None  # whose thread and connection write the appends
        self._waiting: list[_Write] = []
        self._busy = False
        self._riding = False  # rows queued with ride() since the last immediate write
        self._task: asyncio.Task[None] | None = None

    async def _run(self, fn: Any, *args: Any) -> Any:
        return await asyncio.get_running_loop().run_in_executor(self._executor, fn, *args)

    # -- lifecycle -----------------------------------------------------------
    async def open(self, store: StateStore) -> None:
        """Open (creating the table). ``store`` (open) writes the appends; it must stay
        open while changes are applied."""
        self._store = store
        await self._run(self._open_sync)

    def _open_sync(self) -> None:
        conn = connect_writer(self.path, busy_ms=10000)
        conn.execute(_SCHEMA)
        self._conn = conn

    async def count(self) -> int:
        """How many changes wait (at start-up: from an earlier run)."""
        return int(await self._run(lambda: self.conn.execute("SELECT COUNT(*) FROM outbox").fetchone()[0]))

    async def close(self) -> None:
        if self._task is not None:
            await asyncio.gather(self._task, return_exceptions=True)
        if self._conn is not None:
            await self._run(self._conn.close)
            self._conn = None
        self._executor.shutdown(wait=True)

    @property
    def conn(self) -> sqlite3.Connection:
        if self._conn is None:
            raise RuntimeError("Outbox is not open")
        return self._conn

    @property
    def store(self) -> StateStore:
        if self._store is None:
            raise RuntimeError("Outbox is not open")
        return self._store

    # -- writing ---------------------------------------------------------------
    async def add(self, docs: list[dict[str, Any]]) -> list[int]:
        """Commit ``docs`` (in order); returns their row ids once they are durable."""
        return await self._write(docs, [])

    def ride(self, docs: list[dict[str, Any]]) -> None:
        """Queue ``docs`` for the state store's next batch, committed in the transaction that
        removes the journal rows settled after this call (so for a journaled change, never
        after its journal row is gone): no commit and no thread hop of their own."""
        self.store.ride(_INSERT, [(_dumps(d),) for d in docs])
        self._riding = True

    async def settle(self, row_id: int, doc: dict[str, Any] | None) -> None:
        """Make a provisional row final with ``doc``, or drop it (None); durable on return."""
        await self._write([], [(row_id, doc)])

    async def _write(
        self, docs: list[dict[str, Any]], settles: list[tuple[int, dict[str, Any] | None]]
    ) -> list[int]:
        if not docs and not settles:
            return []
        fut: asyncio.Future[list[int]] = asyncio.get_running_loop().create_future()
        self._waiting.append((docs, settles, fut))
        if not self._busy:
            self._busy = True  # its own task: a cancelled caller must not strand the others
            self._task = asyncio.ensure_future(self._drain())
        return await asyncio.shield(fut)

    async def _drain(self) -> None:
        try:
            while self._waiting:
                batch, self._waiting = self._waiting, []
                rows = [(_dumps(d),) for docs, _, _ in batch for d in docs]
                updates = [(_dumps(d), i) for _, s, _ in batch for i, d in s if d is not None]
                drops = [(i,) for _, s, _ in batch for i, d in s if d is None]
                try:
                    if self._riding:  # rows riding the store's batch were applied first: per-key order
                        self._riding = False
                        try:
                            await self.store.flush()
                        except Exception:
                            self._riding = True
                            raise
                    last = await self.store.on_writer(
                        functools.partial(self._write_sync, rows=rows, updates=updates, drops=drops)
                    )
                except Exception as exc:
                    for _, _, fut in batch:
                        if not fut.done():
                            fut.set_exception(exc)
                    continue
                next_id = last - len(rows) + 1  # one transaction, one writer: consecutive ids
                for docs, _, fut in batch:
                    if not fut.done():
                        fut.set_result(list(range(next_id, next_id + len(docs))))
                    next_id += len(docs)
        finally:
            self._busy = False

    @staticmethod
    def _write_sync(
        conn: sqlite3.Connection,
        rows: list[tuple[str]],
        updates: list[tuple[str, int]],
        drops: list[tuple[int]],
    ) -> int:
        """One transaction; the id of the last row inserted (0 when none)."""
        conn.execute("BEGIN IMMEDIATE")
        try:
            if updates:
                conn.executemany("UPDATE outbox SET doc = ? WHERE id = ?", updates)
            if drops:
                conn.executemany("DELETE FROM outbox WHERE id = ?", drops)
            last = 0
            if rows:
                conn.executemany(_INSERT, rows)
                last = int(conn.execute("SELECT last_insert_rowid()").fetchone()[0])
            conn.execute("COMMIT")
        except BaseException:
            conn.execute("ROLLBACK")
            raise
        return last

    # -- reading and acknowledging ----------------------------------------------
    async def peek(self, limit: int) -> list[tuple[int, str]]:
        """The oldest ``limit`` unacknowledged changes (their JSON text), in the order added.

        Text, not parsed: delivery splices it into the batch document as it is (no
        parse and re-encode per change). Provisional rows are passed over: their
        change is still being applied, and no later change of the same key can be in
        the outbox before it settles (one writer per key), so per-key order holds.
        Their mark is found in the text — a key's own quotes are escaped in it.
        """
        rows = await self._run(self._peek_sync, limit)
        return [(int(i), doc) for i, doc in rows if _PROVISIONAL_MARK not in doc]

    async def provisional(self) -> list[tuple[int, dict[str, Any]]]:
        """Every provisional row: at start-up, the changes a crash caught being applied."""
        rows = await self._run(lambda: list(self.conn.execute("SELECT id, doc FROM outbox ORDER BY id")))
        docs = ((int(i), json.loads(doc)) for i, doc in rows)
        return [(i, d) for i, d in docs if d.get(PROVISIONAL)]

    def _peek_sync(self, limit: int) -> list[tuple[int, str]]:
        return list(self.conn.execute("SELECT id, doc FROM outbox ORDER BY id LIMIT ?", (limit,)))

    async def ack(self, ids: list[int]) -> None:
        await self._run(self._ack_sync, ids)

    def _ack_sync(self, ids: list[int]) -> None:
        conn = self.conn
        conn.execute("BEGIN IMMEDIATE")
        try:
            conn.executemany("DELETE FROM outbox WHERE id = ?", [(i,) for i in ids])
            conn.execute("COMMIT")
        except BaseException:
            conn.execute("ROLLBACK")
            raise

    async def journal_ids(self) -> set[int]:
        """Ids of the journal rows on disk now (before a replay: the changes it will replay)."""
        rows = await self._run(lambda: list(self.conn.execute("SELECT id FROM journal")))
        return {int(r[0]) for r in rows}


__all__ = ["PROVISIONAL", "Outbox"]
