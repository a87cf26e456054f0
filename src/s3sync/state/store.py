"""StateStore: what we last wrote for each key, and the journal of accepted changes.

SQLite in WAL mode on one dedicated thread: every statement runs off the event
loop, in order, on a connection no other thread touches. Object rows are
written in batches (a crash loses at most the last batch, and the reconcile
adopts files whose size and mtime match the listing, so nothing is
re-downloaded); journal appends commit before returning, because an HTTP 202
or an SQS delete promises the change is durable. Journal *removals* ride in
the next batch, in the same transaction as the state rows of the changes they
settle: a row that outlives a crash only replays a change already applied,
which the conditional GET makes a no-op.

Point reads (:meth:`StateStore.get`, one per event) run on the caller's thread
on a second, read-only connection: a primary-key lookup in WAL mode takes
microseconds, a hop to the store's thread and back cost several times that in
wake-ups at 1,000 events/s. Rows not yet committed are answered from memory
first (the queued batch, then the one being committed), so a read never sees
older state than the last write.
"""

from __future__ import annotations

import asyncio
import sqlite3
import threading
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Iterable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

from s3sync.model import Change
from s3sync.state import journal

T = TypeVar("T")
_Riders = list[tuple[str, list[tuple[Any, ...]]]]  # (sql, rows) committed with the next batch

_SCHEMA = """
CREATE TABLE IF NOT EXISTS objects (
    key TEXT PRIMARY KEY,
    etag TEXT,
    size INTEGER NOT NULL,
    last_modified REAL NOT NULL,
    version_id TEXT,
    sequencer TEXT,
    synced_at REAL NOT NULL
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS journal (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    key TEXT NOT NULL,
    kind TEXT NOT NULL,
    source TEXT NOT NULL,
    etag TEXT,
    size INTEGER,
    sequencer TEXT,
    version_id TEXT,
    delete_marker INTEGER NOT NULL DEFAULT 0,
    received_at REAL NOT NULL
);
CREATE TABLE IF NOT EXISTS meta (name TEXT PRIMARY KEY, value TEXT);
"""


@dataclass(frozen=True, slots=True)
class StateRow:
    """What we wrote for a key: enough to tell "unchanged" without touching S3."""

    key: str
    etag: str | None
    size: int
    last_modified: float
    version_id: str | None = None
    sequencer: str | None = None
    synced_at: float = 0.0


class StateStore:
    """Async facade over one SQLite connection living on one thread."""

    BATCH = 500
    FLUSH_SECONDS = 0.2

    def __init__(self, path: Path) -> None:
        self.path = path
        self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="s3sync-state")
        self._conn: sqlite3.Connection | None = None
        self._reader: sqlite3.Connection | None = None  # point reads, on the event loop's thread
        self._pending: dict[str, StateRow | None] = {}
        self._committing: list[dict[str, StateRow | None]] = []  # batches being written, oldest first
        self._journal_done: list[int] = []  # settled journal ids, removed with the next batch
        self._riders: _Riders = []  # see ride()
        self._lock = threading.Lock()
        self._flush_turn = asyncio.Lock()  # one flush at a time: batches commit in the order taken
        self._flusher: asyncio.Task[None] | None = None
        self._wake = asyncio.Event()
        self._closing = False
        # journal group commit: appends waiting for the one in progress share the next commit
        self._appender = journal.GroupAppender(lambda items: self._run(journal.append, self.conn, items))

    # -- lifecycle ---------------------------------------------------------
    async def open(self) -> None:
        await self._run(self._open_sync)
        reader = sqlite3.connect(str(self.path), isolation_level=None)
        reader.execute("PRAGMA query_only=1")
        reader.execute("PRAGMA busy_timeout=5000")
        self._reader = reader
        self._flusher = asyncio.create_task(self._flush_loop(), name="state-flusher")

    def _open_sync(self) -> None:
        conn = connect_writer(self.path, busy_ms=5000)
        conn.executescript(_SCHEMA)
        self._conn = conn

    async def close(self) -> None:
        if self._flusher is not None:
            # Never cancel the flusher mid-flush: a cancelled executor job would drop its batch.
            self._closing = True
            self._wake.set()
            await self._flusher
            self._flusher = None
        if self._conn is not None:
            await self.flush()
            await self._run(self._conn.close)
            self._conn = None
        if self._reader is not None:
            self._reader.close()
            self._reader = None
        self._executor.shutdown(wait=True)

    async def _run(self, fn: Callable[..., T], *args: Any) -> T:
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(self._executor, fn, *args)

    @property
    def conn(self) -> sqlite3.Connection:
        if self._conn is None:
            raise RuntimeError("StateStore is not open")
        return self._conn

    async def on_writer(self, fn: Callable[[sqlite3.Connection], T]) -> T:
        """Run ``fn(conn)`` on the store's thread and connection (the hooks' outbox writes): a second
        writer would contend for SQLite's write lock, its loser sleeping in the busy handler (1, 2, 5 ms)."""
        return await self._run(lambda: fn(self.conn))

    def ride(self, sql: str, rows: list[tuple[Any, ...]]) -> None:
        """``executemany(sql, rows)`` in the next batch's transaction, before its journal removals (the
        outbox rows of journaled changes: no commit of their own). Re-queued if that commit fails."""
        with self._lock:
            self._riders.append((sql, rows))

    # -- object rows -------------------------------------------------------
    def record(self, row: StateRow) -> None:
        """Queue a row write; flushed in batches (see module docstring)."""
        with self._lock:
            self._pending[row.key] = row
            n = len(self._pending)
        if n >= self.BATCH:
            self._wake.set()

    def forget(self, key: str) -> None:
        """Queue a row deletion."""
        with self._lock:
            self._pending[key] = None
            n = len(self._pending)
        if n >= self.BATCH:
            self._wake.set()

    async def _flush_loop(self) -> None:
        while not self._closing:
            try:
                await asyncio.wait_for(self._wake.wait(), self.FLUSH_SECONDS)
            except TimeoutError:
                pass
            self._wake.clear()
            try:
                await asyncio.shield(self.flush())
            except asyncio.CancelledError:
                if self._closing:
                    return
                raise
            except Exception as exc:  # keep the rows; retry on the next tick
                import structlog

                structlog.get_logger(__name__).error("state flush failed", error=str(exc))

    async def flush(self) -> None:
        """Commit the queued rows and journal settles.

        Flushes run one at a time (the flusher's and any caller's): a batch is taken
        only after the previous one committed or, when it failed, after its rows went
        back into the queue under any newer write. So a failed older batch can never
        land after a newer one for the same key (it never leaves the queue while a
        newer batch is in flight). A cancelled flush's commit still runs: :func:`_run_to_end`.
        """
        async with self._flush_turn:
            with self._lock:
                if not self._pending and not self._journal_done and not self._riders:
                    return
                batch, self._pending = self._pending, {}
                done, self._journal_done = self._journal_done, []
                riders, self._riders = self._riders, []
                self._committing.append(batch)
            try:
                await _run_to_end(self._run(self._flush_sync, batch, done, riders))
            except BaseException:
                with self._lock:  # put the batch back under newer writes (all still queued)
                    for k, v in batch.items():
                        self._pending.setdefault(k, v)
                    self._journal_done[:0] = done
                raise
            finally:
                with self._lock:
                    self._committing = [b for b in self._committing if b is not batch]

    def _flush_sync(self, batch: dict[str, StateRow | None], done: list[int], riders: _Riders) -> None:
        conn = self.conn
        now = time.time()
        upserts = [
            (r.key, r.etag, r.size, r.last_modified, r.version_id, r.sequencer, r.synced_at or now)
            for r in batch.values()
            if r is not None
        ]
        deletes = [(k,) for k, r in batch.items() if r is None]
        conn.execute("BEGIN")
        try:
            if upserts:
                conn.executemany("INSERT OR REPLACE INTO objects VALUES (?,?,?,?,?,?,?)", upserts)
            if deletes:
                conn.executemany("DELETE FROM objects WHERE key = ?", deletes)
            for sql, rows in riders:
                conn.executemany(sql, rows)
            if done:
                journal.remove(conn, [(i,) for i in done])
            conn.execute("COMMIT")
        except BaseException:
            with self._lock:  # here, where they surely were not committed (a cancelled flush() runs on)
                self._riders[:0] = riders
            if conn.in_transaction:  # SQLite rolls some errors back itself (disk full, I/O)
                conn.execute("ROLLBACK")
            raise

    def _pending_row(self, key: str) -> tuple[bool, StateRow | None]:
        with self._lock:
            if key in self._pending:
                return True, self._pending[key]
            for batch in reversed(self._committing):  # the newest write wins
                if key in batch:
                    return True, batch[key]
        return False, None

    async def get(self, key: str) -> StateRow | None:
        hit, row = self._pending_row(key)
        if hit:
            return row
        if self._reader is None:
            return await self._run(self._get_sync, key)
        try:
            r = self._reader.execute("SELECT * FROM objects WHERE key = ?", (key,)).fetchone()
        except sqlite3.OperationalError:  # busy past the timeout, say: the store's own thread
            return await self._run(self._get_sync, key)
        return StateRow(*r) if r else None

    def _get_sync(self, key: str) -> StateRow | None:
        cur = self.conn.execute("SELECT * FROM objects WHERE key = ?", (key,))
        r = cur.fetchone()
        return StateRow(*r) if r else None

    async def contains_many(self, keys: list[str]) -> set[str]:
        """Which of ``keys`` are tracked (used by the extra-file sweep)."""
        await self.flush()
        return await self._run(self._contains_sync, keys)

    def _contains_sync(self, keys: list[str]) -> set[str]:
        found: set[str] = set()
        for i in range(0, len(keys), 500):
            chunk = keys[i : i + 500]
            q = f"SELECT key FROM objects WHERE key IN ({','.join('?' * len(chunk))})"
            found.update(r[0] for r in self.conn.execute(q, chunk))
        return found

    async def iter_sorted(self, prefix: str = "", chunk: int = 2000) -> AsyncIterator[StateRow]:
        """Rows in key order (SQLite BINARY collation = UTF-8 byte order = S3's order)."""
        await self.flush()
        after: str | None = None
        while True:
            rows = await self._run(self._page_sync, prefix, after, chunk)
            for r in rows:
                yield r
            if len(rows) < chunk:
                return
            after = rows[-1].key

    def _page_sync(self, prefix: str, after: str | None, limit: int) -> list[StateRow]:
        lo = prefix if after is None else after
        op = ">=" if after is None else ">"
        hi = _prefix_upper_bound(prefix)
        if hi is not None:
            q = f"SELECT * FROM objects WHERE key {op} ? AND key < ? ORDER BY key LIMIT ?"
            cur = self.conn.execute(q, (lo, hi, limit))
        else:
            q = f"SELECT * FROM objects WHERE key {op} ? ORDER BY key LIMIT ?"
            cur = self.conn.execute(q, (lo, limit))
        return [StateRow(*r) for r in cur.fetchall()]

    async def count(self, prefix: str = "") -> int:
        await self.flush()
        return await self._run(self._count_sync, prefix)

    def _count_sync(self, prefix: str) -> int:
        hi = _prefix_upper_bound(prefix)
        if hi is not None:
            cur = self.conn.execute("SELECT COUNT(*) FROM objects WHERE key >= ? AND key < ?", (prefix, hi))
        else:
            cur = self.conn.execute("SELECT COUNT(*) FROM objects WHERE key >= ?", (prefix,))
        return int(cur.fetchone()[0])

    # -- journal -----------------------------------------------------------
    async def journal_append(self, changes: Iterable[Change]) -> list[int]:
        """Durably record accepted changes; returns their journal ids (group commit:
        :class:`~s3sync.state.journal.GroupAppender`)."""
        return await self._appender.append(changes)

    async def journal_remove(self, ids: Iterable[int]) -> None:
        """Settle journal rows: removed with the next batch (see the module docstring)."""
        items = list(ids)
        if not items:
            return
        with self._lock:
            self._journal_done.extend(items)
            n = len(self._journal_done)
        if n >= self.BATCH:
            self._wake.set()

    async def journal_pending(self) -> list[tuple[int, Change]]:
        await self.flush()  # settled rows are not pending, even if their removal is still queued
        return await self._run(journal.pending, self.conn)


async def _run_to_end(commit: Awaitable[None]) -> None:
    """Await a batch's ``commit`` to its end even when the caller is cancelled.

    The commit settles its riders itself: committed, or put back when it fails.
    Cancelled with its caller while it waited for the store's thread (a reconcile
    stopped during its flush, say), it would never run and take its riders with it,
    while the flush put its journal removals back in the queue: a journaled change
    settled with its outbox row gone — a hook never told, in a run without a crash.
    """
    job = asyncio.ensure_future(commit)
    job.add_done_callback(lambda f: f.cancelled() or f.exception())  # retrieved: its caller may be gone
    await asyncio.shield(job)


def connect_writer(path: Path, *, busy_ms: int) -> sqlite3.Connection:
    """A writing connection to the state db, as every writer of it opens one.

    WAL with ``synchronous=NORMAL``: a process crash loses nothing committed, and a power
    loss only the last commits (the WAL is written in order). Autocommit mode: callers
    say ``BEGIN`` themselves. Used from one worker thread at a time, not the loop's.
    """
    path.parent.mkdir(parents=True, exist_ok=True)
    conn = sqlite3.connect(str(path), isolation_level=None, check_same_thread=False)
    conn.execute(f"PRAGMA busy_timeout={int(busy_ms)}")
    conn.execute("PRAGMA journal_mode=WAL")
    conn.execute("PRAGMA synchronous=NORMAL")
    return conn


def _prefix_upper_bound(prefix: str) -> str | None:
    """Smallest string greater than every string starting with ``prefix``; None when none exists.

    Trailing U+10FFFF cannot be incremented, so the bound carries into the character
    before it (``"a\U0010ffff"`` → ``"b"``), and a bound never lands in the surrogate
    block (U+D7FF + 1 is U+E000), which no key can contain and SQLite cannot bind.
    An empty prefix, or one of only U+10FFFF, has no upper bound.
    """
    head = prefix.rstrip("\U0010ffff")
    if not head:
        return None
    nxt = ord(head[-1]) + 1
    if 0xD800 <= nxt <= 0xDFFF:
        nxt = 0xE000
    return head[:-1] + chr(nxt)
