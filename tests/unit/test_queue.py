"""KeyedCoalescingQueue: one pending change per key (the newest), one operation per key at a time.

The example tests pin each rule; a hypothesis state machine then drives random
put/get/done/drain sequences against a plain-Python model of the same rules and
checks, after every step, that no key is handed out twice at once and that
what comes out is what the model says should.
"""

from __future__ import annotations

import asyncio
import dataclasses
from typing import Any

from hypothesis import settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, invariant, precondition, rule

from s3sync.model import Change, ChangeKind, ChangeSource, compare_sequencers
from s3sync.sync.queue import KeyedCoalescingQueue


def change(key: str, seq: str | None = None, kind: ChangeKind = ChangeKind.UPSERT, etag: str = "") -> Change:
    return Change(key, kind, ChangeSource.NOTIFICATION, etag=etag or None, sequencer=seq)


async def turns(n: int = 5) -> None:
    """Let other tasks run ``n`` loop iterations (no wall-clock wait)."""
    for _ in range(n):
        await asyncio.sleep(0)


class TestCoalescing:
    """A burst on one key collapses into one pending change: the newest one."""

    async def test_latest_change_replaces_pending_one(self) -> None:
        """Without sequencers the last hint to arrive wins; a remove that cannot prove it is
        newer than the pending upsert leaves an upsert hint that asks S3 (sync.queue.COALESCE)."""
        q = KeyedCoalescingQueue()
        assert q.put_nowait(change("k", etag="1")) is False
        assert q.put_nowait(change("k", etag="2")) is True
        assert (await q.get()).change.etag == "2"
        q.done("k")
        assert q.put_nowait(change("k", etag="3")) is False
        assert q.put_nowait(change("k", etag="4")) is True
        assert q.put_nowait(change("k", kind=ChangeKind.REMOVE)) is True
        assert q.depth == 1
        work = await q.get()
        assert (work.change.kind, work.change.etag, work.change.listed) == (ChangeKind.UPSERT, None, False)
        assert (work.coalesced, q.coalesced_total) == (2, 3)

    async def test_older_sequencer_does_not_replace_newer(self) -> None:
        """A late, reordered event with a smaller sequencer keeps the newer change pending."""
        q = KeyedCoalescingQueue()
        q.put_nowait(change("k", seq="0055AED6DCD90281E6", etag="new"))
        q.put_nowait(change("k", seq="0055aed6dcd90281e5", etag="old"))  # lower-case, still older
        assert (await q.get()).change.etag == "new"

    async def test_newer_sequencer_replaces_and_padding_is_respected(self) -> None:
        """Sequencers compare right-padded: ``1`` is ``10`` and older than ``11``."""
        q = KeyedCoalescingQueue()
        q.put_nowait(change("k", seq="11", etag="new"))
        q.put_nowait(change("k", seq="1", etag="older"))
        assert (await q.get()).change.etag == "new"

    async def test_change_without_sequencer_replaces(self) -> None:
        """A reconcile hint (no sequencer) is never provably older, so it replaces."""
        q = KeyedCoalescingQueue()
        q.put_nowait(change("k", seq="FF", etag="event"))
        q.put_nowait(change("k", etag="listing"))
        assert (await q.get()).change.etag == "listing"

    async def test_waiters_and_journal_ids_move_to_the_survivor(self) -> None:
        """Everybody waiting on a replaced change, and its journal rows, ride on the one that stays."""
        loop = asyncio.get_running_loop()
        w1, w2, w3 = (loop.create_future() for _ in range(3))
        q = KeyedCoalescingQueue()
        q.put_nowait(change("k", seq="02"), w1, [10])
        q.put_nowait(change("k", seq="01"), w2, [11, 12])  # older: dropped, but its waiter stays
        q.put_nowait(change("k", seq="03"), w3)
        work = await q.get()
        assert work.change.sequencer == "03"
        assert work.waiters == [w1, w2, w3]
        assert work.journal_ids == [10, 11, 12]


class TestOneOperationPerKey:
    """A key in flight is held back; a change arriving meanwhile waits for done()."""

    async def test_key_in_flight_is_not_handed_out_again(self) -> None:
        """While ``k`` is in flight its new change waits; other keys go ahead."""
        q = KeyedCoalescingQueue()
        q.put_nowait(change("k", etag="1"))
        first = await q.get()
        q.put_nowait(change("k", etag="2"))
        q.put_nowait(change("other"))
        assert (await q.get()).change.key == "other"
        blocked = asyncio.create_task(q.get())
        await turns()
        assert not blocked.done()
        q.done(first.change.key)
        second = await asyncio.wait_for(blocked, 10)
        assert (second.change.key, second.change.etag) == ("k", "2")

    async def test_change_during_flight_coalesces_into_one_follow_up(self) -> None:
        """Many changes during one operation cost exactly one more operation, with the newest hint."""
        q = KeyedCoalescingQueue()
        q.put_nowait(change("k"))
        await q.get()
        for i in range(5):
            q.put_nowait(change("k", etag=str(i)))
        assert (q.depth, q.in_flight) == (1, 1)
        q.done("k")
        follow_up = await q.get()
        assert follow_up.change.etag == "4"
        q.done("k")
        assert (q.depth, q.in_flight) == (0, 0)

    async def test_done_without_pending_change_just_releases(self) -> None:
        """done() on a key with nothing pending frees it; a later put is served normally."""
        q = KeyedCoalescingQueue()
        q.put_nowait(change("k"))
        await q.get()
        q.done("k")
        assert q.in_flight == 0
        q.put_nowait(change("k", etag="again"))
        assert (await q.get()).change.etag == "again"


class TestOrdering:
    """Keys are served first come, first served; coalescing keeps a key's place."""

    async def test_fifo_over_keys(self) -> None:
        """Keys come out in the order they first became ready."""
        q = KeyedCoalescingQueue()
        for k in "cab":
            q.put_nowait(change(k))
        q.put_nowait(change("c", etag="newer"))  # coalesces: c keeps its first place
        got = [(await q.get()).change for _ in range(3)]
        assert [c.key for c in got] == ["c", "a", "b"]
        assert got[0].etag == "newer"

    async def test_released_key_goes_to_the_back(self) -> None:
        """A follow-up change becomes ready at done() time, behind keys already waiting."""
        q = KeyedCoalescingQueue()
        q.put_nowait(change("k"))
        await q.get()
        q.put_nowait(change("k"))
        q.put_nowait(change("x"))
        q.done("k")
        assert [(await q.get()).change.key for _ in range(2)] == ["x", "k"]


class TestBackpressureAndDrain:
    """A bounded queue blocks producers of new keys; drain_pending empties what has not started."""

    async def test_put_blocks_while_full_and_resumes_after_get(self) -> None:
        """With maxsize=2 a third key waits until a get() makes room."""
        q = KeyedCoalescingQueue(maxsize=2)
        await q.put(change("a"))
        await q.put(change("b"))
        third = asyncio.create_task(q.put(change("c")))
        await turns()
        assert not third.done() and q.depth == 2
        await q.get()
        await asyncio.wait_for(third, 10)
        assert q.depth == 2

    async def test_put_for_a_pending_key_never_blocks(self) -> None:
        """A full queue still accepts a newer change for a key it already holds (it coalesces)."""
        q = KeyedCoalescingQueue(maxsize=1)
        await q.put(change("a", etag="1"))
        assert await asyncio.wait_for(q.put(change("a", etag="2")), 10) is True
        assert (await q.get()).change.etag == "2"

    async def test_drain_returns_everything_not_started(self) -> None:
        """drain_pending hands back the pending work (with its waiters) and leaves in-flight keys alone."""
        fut: asyncio.Future[Any] = asyncio.get_running_loop().create_future()
        q = KeyedCoalescingQueue()
        q.put_nowait(change("running"))
        await q.get()
        q.put_nowait(change("running", etag="follow-up"))
        q.put_nowait(change("waiting"), fut)
        drained = q.drain_pending()
        assert sorted((w.change.key, w.change.etag) for w in drained) == [
            ("running", "follow-up"),
            ("waiting", None),
        ]
        assert next(w for w in drained if w.change.key == "waiting").waiters == [fut]
        assert (q.depth, q.in_flight) == (0, 1)
        q.done("running")
        blocked = asyncio.create_task(q.get())
        await turns()
        assert not blocked.done(), "a drained change must not come back after done()"
        blocked.cancel()


SEQS = st.one_of(st.none(), st.text("0123456789ABCDEFabcdef", min_size=1, max_size=4))


class QueueModel(RuleBasedStateMachine):
    """Random put/get/done/drain sequences against a model of the queue's rules."""

    def __init__(self) -> None:
        super().__init__()
        self.loop = asyncio.new_event_loop()
        self.q = KeyedCoalescingQueue()
        self.pending: dict[str, Change] = {}
        self.put_count: dict[str, int] = {}
        self.ready: list[str] = []
        self.in_flight: set[str] = set()
        self.serial = 0

    def teardown(self) -> None:
        self.loop.close()

    @rule(key=st.sampled_from("abc"), seq=SEQS)
    def put(self, key: str, seq: str | None) -> None:
        self.serial += 1
        c = change(key, seq, etag=str(self.serial))
        coalesced = self.q.put_nowait(c)
        assert coalesced == (key in self.pending)
        old = self.pending.get(key)
        older = (
            old is not None
            and bool(seq and old.sequencer)
            and compare_sequencers(seq or "", old.sequencer or "") < 0
        )
        if old is None:
            self.pending[key] = c
            self.put_count[key] = 1
            if key not in self.in_flight:
                self.ready.append(key)
        else:
            self.put_count[key] += 1
            if not older:
                # a fold not proven by sequencers leaves a survivor without one (sync.queue.fold)
                self.pending[key] = c if seq and old.sequencer else dataclasses.replace(c, sequencer=None)

    @precondition(lambda self: bool(self.ready))
    @rule()
    def get(self) -> None:
        work = self.loop.run_until_complete(asyncio.wait_for(self.q.get(), 10))
        key = self.ready.pop(0)
        assert work.change.key == key, "FIFO over ready keys"
        assert key not in self.in_flight, "a key was handed out while in flight"
        assert work.change == self.pending.pop(key), "not the newest change"
        assert work.coalesced == self.put_count.pop(key) - 1
        self.in_flight.add(key)

    @precondition(lambda self: not self.ready)
    @rule()
    def get_blocks_when_nothing_is_ready(self) -> None:
        async def probe() -> bool:
            t = asyncio.ensure_future(self.q.get())
            await turns()
            blocked = not t.done()
            t.cancel()
            await asyncio.gather(t, return_exceptions=True)
            return blocked

        assert self.loop.run_until_complete(probe())

    @precondition(lambda self: bool(self.in_flight))
    @rule(data=st.data())
    def done(self, data: st.DataObject) -> None:
        key = data.draw(st.sampled_from(sorted(self.in_flight)))
        self.q.done(key)
        self.in_flight.discard(key)
        if key in self.pending:
            self.ready.append(key)

    @rule()
    def drain(self) -> None:
        drained = {w.change.key: w.change for w in self.q.drain_pending()}
        assert drained == self.pending
        self.pending.clear()
        self.put_count.clear()
        self.ready.clear()

    @invariant()
    def counters_agree(self) -> None:
        assert self.q.depth == len(self.pending)
        assert self.q.in_flight == len(self.in_flight)


TestQueueModel = QueueModel.TestCase
TestQueueModel.settings = settings(max_examples=40, stateful_step_count=40, deadline=None)


async def test_burst_on_one_key_costs_two_operations() -> None:
    """N events on one key during a transfer cost the one in flight plus one follow-up."""
    n = 1000
    q = KeyedCoalescingQueue()
    q.put_nowait(change("hot", etag="0"))
    await q.get()
    for i in range(1, n):
        q.put_nowait(change("hot", etag=str(i)))
    q.done("hot")
    last = await q.get()
    q.done("hot")
    assert (last.change.etag, last.coalesced, q.depth, q.in_flight) == (str(n - 1), n - 2, 0, 0)
