"""StateStore on a real SQLite file: batched row writes, sorted reads, and the durable journal.

A second, independent ``sqlite3`` connection reads the same file to see what
is really on disk (as a restarted daemon would), so "pending" and "flushed"
are told apart by the database, not by the store's own bookkeeping.
"""

from __future__ import annotations

import asyncio
import sqlite3
import tempfile
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from s3sync.model import Change, ChangeKind, ChangeSource
from s3sync.state.store import StateRow, StateStore

# characters where byte order, code point order and naive "+1" upper bounds part ways
_EDGE = [
    "a",
    "b",
    "/",
    "-",
    "0",
    "\x7f",
    "\x80",
    "é",
    "\ud7ff",
    "\ue000",
    "\uffff",
    "\U00010000",
    "\U0010ffff",
]
KEY_CHARS = st.one_of(st.sampled_from(_EDGE), st.characters(codec="utf-8"))
KEYS = st.lists(st.text(KEY_CHARS, min_size=1, max_size=6), unique=True, max_size=25)


def row(key: str, etag: str = "e", size: int = 1) -> StateRow:
    return StateRow(key, etag, size, 1_700_000_000.0, synced_at=1.0)


def on_disk(path: Path) -> dict[str, tuple[str | None, int]]:
    """What a fresh process would read: key -> (etag, size), straight from the file."""
    with sqlite3.connect(path) as conn:
        return {k: (e, s) for k, e, s in conn.execute("SELECT key, etag, size FROM objects")}


def utf8_sorted(keys: list[str]) -> list[str]:
    """S3's listing order: by UTF-8 bytes."""
    return sorted(keys, key=lambda k: k.encode("utf-8"))


@pytest.fixture
async def store(tmp_path: Path) -> AsyncIterator[StateStore]:
    s = StateStore(tmp_path / "state" / "s3sync.db")
    s.FLUSH_SECONDS = 3600  # only the batch size or an explicit flush writes (no timer in the tests)
    await s.open()
    yield s
    await s.close()


async def with_rows(keys: list[str]) -> tuple[list[str], dict[str, int]]:
    """Fresh store holding ``keys``; returns iter_sorted() keys and count() for each key-prefix."""
    with tempfile.TemporaryDirectory() as d:
        s = StateStore(Path(d) / "s.db")
        await s.open()
        try:
            for k in keys:
                s.record(row(k))
            listed = [r.key async for r in s.iter_sorted(chunk=4)]
            counts = {k: await s.count(k) for k in keys}
            return listed, counts
        finally:
            await s.close()


async def prefixed(keys: list[str], prefix: str) -> tuple[list[str], int]:
    with tempfile.TemporaryDirectory() as d:
        s = StateStore(Path(d) / "s.db")
        await s.open()
        try:
            for k in keys:
                s.record(row(k))
            return [r.key async for r in s.iter_sorted(prefix, chunk=3)], await s.count(prefix)
        finally:
            await s.close()


class TestBatching:
    """Row writes are queued and written in batches; reads see the queue."""

    async def test_record_is_not_on_disk_until_flushed(self, store: StateStore) -> None:
        """Below the batch size a record stays in memory; flush() writes it."""
        store.record(row("a"))
        await asyncio.sleep(0)
        assert on_disk(store.path) == {}
        await store.flush()
        assert on_disk(store.path) == {"a": ("e", 1)}

    async def test_full_batch_is_written_without_an_explicit_flush(self, store: StateStore) -> None:
        """Reaching BATCH rows wakes the background flusher."""
        store.BATCH = 5
        for i in range(5):
            store.record(row(f"k{i}"))
        loop = asyncio.get_running_loop()
        end = loop.time() + 10
        while len(on_disk(store.path)) < 5:
            assert loop.time() < end, "the flusher never wrote the full batch"
            await asyncio.sleep(0.01)
        assert sorted(on_disk(store.path)) == [f"k{i}" for i in range(5)]

    async def test_get_sees_pending_rows(self, store: StateStore) -> None:
        """get() answers from the queue before the row reaches SQLite."""
        store.record(row("a", etag="v1"))
        assert await store.get("a") == row("a", etag="v1")
        assert on_disk(store.path) == {}

    async def test_get_sees_pending_forget(self, store: StateStore) -> None:
        """A queued forget hides a row that is still on disk."""
        store.record(row("a"))
        await store.flush()
        store.forget("a")
        assert await store.get("a") is None
        assert "a" in on_disk(store.path)
        await store.flush()
        assert on_disk(store.path) == {}

    async def test_latest_queued_write_wins(self, store: StateStore) -> None:
        """Within one batch the last record/forget for a key is what lands."""
        store.record(row("a", etag="v1"))
        store.record(row("a", etag="v2"))
        store.record(row("b"))
        store.forget("b")
        store.forget("c")
        store.record(row("c", etag="back"))
        await store.flush()
        assert on_disk(store.path) == {"a": ("v2", 1), "c": ("back", 1)}

    async def test_unset_synced_at_is_filled_with_the_write_time(self, store: StateStore) -> None:
        """A row recorded without synced_at gets the flush time, never 0."""
        store.record(StateRow("a", "e", 1, 5.0))
        await store.flush()
        got = await store.get("a")
        assert got is not None and got.synced_at > 1_000_000_000

    async def test_close_flushes_and_a_new_store_reads_it(self, tmp_path: Path) -> None:
        """Rows queued at close() survive into the next process's store."""
        path = tmp_path / "s.db"
        first = StateStore(path)
        first.FLUSH_SECONDS = 3600
        await first.open()
        first.record(row("kept", etag="x", size=7))
        await first.close()
        second = StateStore(path)
        await second.open()
        try:
            assert await second.get("kept") == StateRow("kept", "x", 7, 1_700_000_000.0, synced_at=1.0)
        finally:
            await second.close()

    async def test_contains_many_sees_pending_rows(self, store: StateStore) -> None:
        """The extra-file sweep's membership test includes rows not yet flushed."""
        store.record(row("a"))
        store.record(row("b"))
        await store.flush()
        store.forget("b")
        store.record(row("c"))
        assert await store.contains_many(["a", "b", "c", "d"]) == {"a", "c"}


class TestSortedReads:
    """iter_sorted and count agree with S3's UTF-8 byte order and with plain prefix matching."""

    async def test_iter_sorted_pages_in_byte_order(self, store: StateStore) -> None:
        """Rows come back in UTF-8 byte order across page boundaries, pending rows included."""
        keys = ["b", "a/b", "a-b", "a", "\U0001f600", "\uffff", "\ue000", "é", "A"]
        for k in keys:
            store.record(row(k))
        got = [r.key async for r in store.iter_sorted(chunk=2)]
        assert got == utf8_sorted(keys)

    async def test_prefix_is_a_plain_string_prefix(self, store: StateStore) -> None:
        """A prefix selects exactly the keys that start with it (``a/`` excludes ``a-b`` and ``a0``)."""
        for k in ["a", "a-b", "a/", "a/x", "a/y/z", "a0", "b"]:
            store.record(row(k))
        assert [r.key async for r in store.iter_sorted("a/")] == ["a/", "a/x", "a/y/z"]
        assert await store.count("a/") == 3
        assert await store.count() == 7

    @settings(max_examples=30, deadline=None)
    @given(KEYS)
    def test_order_matches_utf8_bytes_for_any_keys(self, keys: list[str]) -> None:
        """For any keys (astral and private-use included) the order is S3's and count(k) matches."""
        listed, counts = asyncio.run(with_rows(keys))
        assert listed == utf8_sorted(keys)
        assert listed == sorted(keys)  # code point order is the same order
        for k, n in counts.items():
            assert n == sum(1 for other in keys if other.startswith(k))

    @settings(max_examples=30, deadline=None)
    @given(
        KEYS,
        st.text(
            st.sampled_from(["a", "b", "/", "é", "\ud7ff", "\ue000", "\uffff", "\U00010000", "\U0010ffff"]),
            max_size=3,
        ),
    )
    def test_prefix_selects_exactly_the_prefixed_keys(self, keys: list[str], prefix: str) -> None:
        """iter_sorted(prefix) and count(prefix) equal a brute-force filter (U+D7FF and U+10FFFF included)."""
        listed, n = asyncio.run(prefixed(keys, prefix))
        expected = utf8_sorted([k for k in keys if k.startswith(prefix)])
        assert listed == expected
        assert n == len(expected)

    async def test_prefix_ending_in_the_last_code_point(self, store: StateStore) -> None:
        """A prefix ending in U+10FFFF still selects its keys (the bound must carry, not overflow)."""
        for k in ["a\U0010ffff", "a\U0010ffffz", "b"]:
            store.record(row(k))
        assert [r.key async for r in store.iter_sorted("a\U0010ffff")] == ["a\U0010ffff", "a\U0010ffffz"]

    async def test_prefix_ending_just_below_the_surrogates(self, store: StateStore) -> None:
        """A prefix ending in U+D7FF selects its keys (the bound must skip the surrogate block)."""
        for k in ["a\ud7ff", "a\ud7ffz", "a\ue000"]:
            store.record(row(k))
        assert await store.count("a\ud7ff") == 2


def change(key: str, **kw: object) -> Change:
    return Change(key, ChangeKind.UPSERT, ChangeSource.NOTIFICATION, received_at=123.5, **kw)  # type: ignore[arg-type]


class TestJournal:
    """Accepted changes are durable before journal_append returns, and replay in order."""

    async def test_append_is_on_disk_when_it_returns(self, store: StateStore) -> None:
        """A 202 may be sent right after append: another connection already sees the rows."""
        ids = await store.journal_append([change("a"), change("b")])
        with sqlite3.connect(store.path) as conn:
            assert [r[0] for r in conn.execute("SELECT key FROM journal ORDER BY id")] == ["a", "b"]
        assert len(ids) == 2 and ids[0] < ids[1]

    async def test_pending_round_trips_every_field_in_order(self, store: StateStore) -> None:
        """journal_pending returns (id, Change) in append order with all fields intact."""
        a = change("a", etag="e1", size=10, sequencer="0055AED6DCD90281E5", version_id="v1")
        b = Change("b", ChangeKind.REMOVE, ChangeSource.SQS, delete_marker=True, received_at=9.25)
        ids = await store.journal_append([a, b])
        assert await store.journal_pending() == list(zip(ids, [a, b], strict=True))

    async def test_remove_settles_only_the_given_ids(self, store: StateStore) -> None:
        """Removing some ids leaves the rest pending, in order."""
        ids = await store.journal_append([change(k) for k in "abcd"])
        await store.journal_remove([ids[0], ids[2]])
        assert [(i, c.key) for i, c in await store.journal_pending()] == [(ids[1], "b"), (ids[3], "d")]

    async def test_empty_append_and_remove_are_no_ops(self, store: StateStore) -> None:
        """Nothing to append returns no ids; nothing to remove changes nothing."""
        assert await store.journal_append([]) == []
        await store.journal_append([change("a")])
        await store.journal_remove([])
        assert [c.key for _, c in await store.journal_pending()] == ["a"]

    async def test_removal_commits_with_the_next_batch_of_rows(self, store: StateStore) -> None:
        """A settled id leaves the table in the same transaction as the next state rows, not before."""
        ids = await store.journal_append([change("a"), change("b")])
        await store.journal_remove(ids[:1])
        store.record(StateRow("a", "e", 1, 1.0))
        raw = sqlite3.connect(store.path)
        try:
            # nothing committed yet: the row is still in the file, the state row not yet either
            assert raw.execute("SELECT COUNT(*) FROM journal").fetchone()[0] == 2
            assert raw.execute("SELECT COUNT(*) FROM objects").fetchone()[0] == 0
            await store.flush()
            assert raw.execute("SELECT id FROM journal").fetchall() == [(ids[1],)]
            assert raw.execute("SELECT key FROM objects").fetchall() == [("a",)]
        finally:
            raw.close()

    async def test_get_never_reads_older_than_the_last_write(self, store: StateStore) -> None:
        """Point reads on the read connection see queued, committing and committed rows alike."""
        store.record(StateRow("k", "e1", 1, 1.0))
        assert (await store.get("k")).etag == "e1"  # type: ignore[union-attr]
        flushing = asyncio.ensure_future(store.flush())
        await asyncio.sleep(0)  # the batch is being committed on the store's thread
        assert (await store.get("k")).etag == "e1"  # type: ignore[union-attr]
        await flushing
        assert (await store.get("k")).etag == "e1"  # type: ignore[union-attr]
        store.forget("k")
        assert await store.get("k") is None
        await store.flush()
        assert await store.get("k") is None

    async def test_ids_keep_growing_after_removal(self, store: StateStore) -> None:
        """A settled id is never handed out again (AUTOINCREMENT), so stale settles cannot hit new rows."""
        first = await store.journal_append([change("a")])
        await store.journal_remove(first)
        second = await store.journal_append([change("b")])
        assert second[0] > first[0]

    async def test_replay_after_restart(self, tmp_path: Path) -> None:
        """Changes appended but not settled are pending again in a new store on the same file."""
        path = tmp_path / "s.db"
        s1 = StateStore(path)
        await s1.open()
        ids = await s1.journal_append([change("x"), change("y")])
        await s1.journal_remove(ids[:1])
        await s1.close()
        s2 = StateStore(path)
        await s2.open()
        try:
            assert [(i, c.key) for i, c in await s2.journal_pending()] == [(ids[1], "y")]
        finally:
            await s2.close()


class TestFlushOrder:
    """A failed flush puts its rows back only where no newer write for the key exists (defect 7)."""

    async def test_failed_older_batch_never_overwrites_a_newer_committed_row(self, store: StateStore) -> None:
        """Batch A (k=old plus a row SQLite refuses) fails while batch B (k=new) is queued behind it.

        Before the fix B was taken while A was on the store's thread, committed k=new,
        and A's handler then put k=old back into the queue: the next flush wrote the
        stale row over the newer one. Flushes now run one at a time, so B is taken
        only after A's rows are back, and the newer write wins.
        """
        store.record(row("k", etag="old"))
        store.record(StateRow("bad", "e", None, 1.0))  # type: ignore[arg-type]  # NOT NULL: the commit fails
        first = asyncio.ensure_future(store.flush())
        await asyncio.sleep(0)  # A is taken and on the store's thread
        store.record(row("k", etag="new"))
        second = asyncio.ensure_future(store.flush())
        results = await asyncio.gather(first, second, return_exceptions=True)
        assert isinstance(results[0], sqlite3.IntegrityError)
        store.record(row("bad"))  # the bad row is replaced; the next flush can commit
        await store.flush()
        assert on_disk(store.path)["k"] == ("new", 1)
        assert (await store.get("k")).etag == "new"  # type: ignore[union-attr]

    async def test_failed_batch_keeps_its_rows_and_settled_ids(self, store: StateStore) -> None:
        """The rows and journal settles of a failed flush are written by the next one, none lost."""
        ids = await store.journal_append([change("a")])
        await store.journal_remove(ids)
        store.record(row("a", etag="v1"))
        store.record(StateRow("bad", "e", None, 1.0))  # type: ignore[arg-type]
        with pytest.raises(sqlite3.IntegrityError):
            await store.flush()
        assert on_disk(store.path) == {}
        store.record(row("bad"))
        await store.flush()
        assert on_disk(store.path) == {"a": ("v1", 1), "bad": ("e", 1)}
        assert await store.journal_pending() == []
