"""TransferPool (sync/pool.py): journal rows, requeue of transient failures, one change per key, stop.

The pool is given its apply function (that is its contract: it knows nothing of
what a change means), so each test passes one that records what it was handed
and answers what the test needs; the state store is a real SQLite file, and the
journal is read back from it.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from support.wait import wait_for

from s3sync.model import Change, ChangeKind, ChangeSource
from s3sync.state.store import StateStore
from s3sync.stats import SyncStats
from s3sync.sync.pool import TransferPool
from s3sync.sync.queue import Work
from s3sync.sync.report import OpResult


def upsert(key: str) -> Change:
    return Change(key, ChangeKind.UPSERT, ChangeSource.NOTIFICATION)


def ok(work: Work) -> OpResult:
    return OpResult(work.change.key, "download", "success", "ok")


def failed(work: Work, code: str) -> OpResult:
    return OpResult(work.change.key, "download", "failed", code, error=code)


@pytest.fixture
async def state(tmp_path: Path) -> AsyncIterator[StateStore]:
    s = StateStore(tmp_path / "state.db")
    await s.open()
    yield s
    await s.close()


async def journal_keys(state: StateStore) -> list[str]:
    return [c.key for _, c in await state.journal_pending()]


class TestJournal:
    """A journaled change leaves the journal once it settles, never before."""

    async def test_applied_change_settles_its_row(self, state: StateStore) -> None:
        seen: list[str] = []

        async def apply(work: Work) -> OpResult:
            seen.append(work.change.key)
            return ok(work)

        pool = TransferPool(apply, state, SyncStats(), concurrency=2, drain_timeout=5)
        pool.start()
        assert await pool.intake([upsert("a"), upsert("b")]) == 2
        await wait_for(lambda: pool.queue.depth == 0 and pool.queue.in_flight == 0, within=20)
        await state.flush()
        assert sorted(seen) == ["a", "b"] and await journal_keys(state) == []
        await pool.stop()

    async def test_transient_failure_is_requeued_until_it_succeeds(self, state: StateStore) -> None:
        """A retryable failure keeps the row and tries again later; the success settles it."""
        calls = 0
        retry_may_finish = asyncio.Event()  # the retry holds until the journal has been looked at

        async def apply(work: Work) -> OpResult:
            nonlocal calls
            calls += 1
            if calls == 1:
                return failed(work, "retryable")
            await retry_may_finish.wait()
            return ok(work)

        stats = SyncStats()
        pool = TransferPool(apply, state, stats, concurrency=1, drain_timeout=5)
        pool.start()
        await pool.intake([upsert("k")])
        await wait_for(lambda: calls >= 1, within=20)
        assert await journal_keys(state) == ["k"]  # failed, still owed (the retry cannot settle it yet)
        await wait_for(lambda: calls == 2, within=20, what="the requeued retry")
        assert await journal_keys(state) == ["k"]  # in flight again, still owed
        retry_may_finish.set()
        await wait_for(lambda: pool.queue.in_flight == 0, within=20)
        assert await journal_keys(state) == [] and stats.journal_pending == 0
        await pool.stop()

    async def test_permanent_failure_settles_instead_of_looping(self, state: StateStore) -> None:
        """An integrity failure (a mismatch that repeated) is final: the row settles, no requeue."""
        calls = 0

        async def apply(work: Work) -> OpResult:
            nonlocal calls
            calls += 1
            return failed(work, "integrity")

        pool = TransferPool(apply, state, SyncStats(), concurrency=1, drain_timeout=5)
        pool.start()
        await pool.intake([upsert("k")])
        await wait_for(lambda: calls == 1 and pool.queue.in_flight == 0, within=20)
        assert await journal_keys(state) == []
        assert not pool._requeue_handles  # nothing scheduled to try it again
        await pool.stop()
        assert calls == 1

    async def test_stop_keeps_unapplied_rows_and_replay_applies_them(self, state: StateStore) -> None:
        """Work never started when the pool stops stays journaled; a new pool replays it."""
        started = asyncio.Event()
        release = asyncio.Event()

        async def slow(work: Work) -> OpResult:
            started.set()
            await release.wait()
            return ok(work)

        first = TransferPool(slow, state, SyncStats(), concurrency=1, drain_timeout=0)
        first.start()
        await first.intake([upsert("a"), upsert("b")])
        await started.wait()
        waiter = first.submit(upsert("c"))
        await first.stop(drain_timeout=0)
        assert (await waiter).error == "stopped"
        assert sorted(await journal_keys(state)) == ["a", "b"]
        seen: list[str] = []

        async def apply(work: Work) -> OpResult:
            seen.append(work.change.key)
            return ok(work)

        second = TransferPool(apply, state, SyncStats(), concurrency=2, drain_timeout=5)
        second.start()
        assert await second.replay_journal() == 2
        await wait_for(lambda: len(seen) == 2 and second.queue.in_flight == 0, within=20)
        assert sorted(seen) == ["a", "b"] and await journal_keys(state) == []
        await second.stop()


class TestWorkers:
    """One operation per key at a time, and a bug costs one change, never a worker."""

    async def test_one_operation_per_key(self, state: StateStore) -> None:
        running: dict[str, int] = {}
        worst = 0

        async def apply(work: Work) -> OpResult:
            nonlocal worst
            key = work.change.key
            running[key] = running.get(key, 0) + 1
            worst = max(worst, running[key])
            await asyncio.sleep(0.01)
            running[key] -= 1
            return ok(work)

        pool = TransferPool(apply, state, SyncStats(), concurrency=8, drain_timeout=5)
        pool.start()
        futs = [pool.submit(upsert(k)) for k in "aabbaab"]
        await asyncio.sleep(0.005)
        futs += [pool.submit(upsert(k)) for k in "abab"]
        results = await asyncio.gather(*futs)
        assert all(r.status == "success" for r in results) and worst == 1
        await pool.stop()

    async def test_a_crashing_apply_costs_one_change(self, state: StateStore) -> None:
        async def apply(work: Work) -> OpResult:
            if work.change.key == "bug":
                raise RuntimeError("boom")
            return ok(work)

        stats = SyncStats()
        pool = TransferPool(apply, state, stats, concurrency=1, drain_timeout=5)
        pool.start()
        bad = await pool.submit(upsert("bug"))
        good = await pool.submit(upsert("fine"))
        assert (bad.status, bad.error, good.status) == ("failed", "internal", "success")
        assert stats.failed["internal"] == 1
        await pool.stop()
