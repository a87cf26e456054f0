"""The hooks' outbox rows that ride the state store's batch: each committed exactly once.

A journaled change's outbox row is not written by a commit of its own: it rides
the store's next batch, in the transaction that removes the change's journal
row (:meth:`StateStore.ride`). In a run without a crash that row must reach the
disk once — not twice when a batch commit fails and is tried again, and not
never when the flush that took it is cancelled before the store's thread ran it
(the journal row's removal is put back and goes out later: the change would be
settled with nothing left to tell the hook). A second ``sqlite3`` connection
reads the file, as a restarted daemon would.
"""

from __future__ import annotations

import asyncio
import sqlite3
import threading
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from s3sync.model import Change, ChangeKind, ChangeSource
from s3sync.state.outbox import Outbox
from s3sync.state.store import StateStore


def on_disk(path: Path) -> tuple[list[str], int]:
    """(the outbox documents, how many journal rows) in the file."""
    with sqlite3.connect(path) as conn:
        docs = [d for (d,) in conn.execute("SELECT doc FROM outbox ORDER BY id")]
        return docs, int(conn.execute("SELECT COUNT(*) FROM journal").fetchone()[0])


@pytest.fixture
async def opened(tmp_path: Path) -> AsyncIterator[tuple[StateStore, Outbox, Path]]:
    path = tmp_path / "state.db"
    store = StateStore(path)
    await store.open()
    outbox = Outbox(path)
    await outbox.open(store)
    try:
        yield store, outbox, path
    finally:
        await outbox.close()
        await store.close()


async def _journaled(store: StateStore, key: str) -> list[int]:
    return await store.journal_append([Change(key, ChangeKind.UPSERT, ChangeSource.NOTIFICATION)])


class TestRideOnce:
    async def test_a_flush_cancelled_before_the_store_thread_ran_it_loses_no_row(
        self, opened: tuple[StateStore, Outbox, Path]
    ) -> None:
        store, outbox, path = opened
        ids = await _journaled(store, "k")
        busy, release = threading.Event(), threading.Event()

        def hold(_conn: sqlite3.Connection) -> None:  # the store's one thread, taken by other work
            busy.set()
            release.wait(60)

        holder = asyncio.ensure_future(store.on_writer(hold))
        await asyncio.to_thread(busy.wait, 60)
        outbox.ride([{"key": "k", "op": "upsert"}])
        await store.journal_remove(ids)
        flushing = asyncio.ensure_future(store.flush())  # its commit queues behind ``hold``
        await asyncio.sleep(0.05)
        flushing.cancel()  # a reconcile stopped while its flush waited, say
        with pytest.raises(asyncio.CancelledError):
            await flushing
        release.set()
        await holder
        await store.flush()
        docs, journal_rows = on_disk(path)
        assert docs == ['{"key":"k","op":"upsert"}']  # once: neither lost nor doubled
        assert journal_rows == 0

    async def test_a_batch_whose_commit_failed_commits_its_rows_once_when_tried_again(
        self, opened: tuple[StateStore, Outbox, Path]
    ) -> None:
        store, outbox, path = opened
        ids = await _journaled(store, "k")
        outbox.ride([{"key": "k", "op": "upsert"}])
        await store.journal_remove(ids)
        other = sqlite3.connect(path, isolation_level=None)
        other.execute("BEGIN IMMEDIATE")  # another writer holds the lock past the store's patience
        try:
            with pytest.raises(sqlite3.OperationalError):
                await store.flush()
        finally:
            other.execute("ROLLBACK")
            other.close()
        assert on_disk(path) == ([], 1)  # nothing of the failed batch landed
        await store.flush()  # the rows were put back, and go out with the next batch
        await store.flush()
        assert on_disk(path) == (['{"key":"k","op":"upsert"}'], 0)
