"""The coalescing table (``sync.queue.COALESCE``): which change survives when two meet on a key.

The property: whatever sequence of changes for one key is folded into one, the
survivor does the job of every change folded in, whichever S3 state it meets
when applied. Concretely, for any fold of removes and upserts, from events
(with or without sequencers) and from listings:

- if S3 answers 404 when the survivor is applied, and an event's change (a
  remove, or an upsert hint, whose 404 deletes) or a listed remove was folded
  in, the survivor deletes our copy (a remove, or a hint upsert): no remove is
  lost to a listed upsert's "gone since it was listed";
- a remove that may delete on a sequencer proof, without asking S3 (an
  event's remove with a sequencer), survives only when it is provably newer
  than every upsert folded in: it never deletes an object that an upsert of
  unknown order may have re-created (a remove without one HEADs first);
- a survivor with a sequencer is never provably older than a change folded in.
"""

from __future__ import annotations

import asyncio

from hypothesis import given, settings
from hypothesis import strategies as st

from s3sync.model import Change, ChangeKind, ChangeSource, ObjectMeta, compare_sequencers
from s3sync.sync.queue import COALESCE, KeyedCoalescingQueue, Role, fold, role

SEQS = st.one_of(st.none(), st.sampled_from(["01", "02", "0A", "1", "10", "FF"]))


@st.composite
def changes(draw: st.DrawFn) -> Change:
    kind = draw(st.sampled_from(ChangeKind))
    listed = draw(st.booleans())
    seq = None if listed else draw(SEQS)  # listings carry no sequencer
    meta = ObjectMeta("k", 3, "e", 1.0) if listed and kind is ChangeKind.UPSERT else None
    source = ChangeSource.RECONCILE if listed else ChangeSource.NOTIFICATION
    return Change(
        "k", kind, source, sequencer=seq, meta=meta, listed=listed, received_at=draw(st.floats(0, 9))
    )


def deletes_on_404(c: Change) -> bool:
    """Applied when S3 has no such key: does it delete our copy? (sync.apply's rules)"""
    return c.kind is ChangeKind.REMOVE or not c.listed


def provably_older(a: Change, b: Change) -> bool:
    return bool(a.sequencer and b.sequencer) and compare_sequencers(a.sequencer or "", b.sequencer or "") < 0


def test_the_table_covers_every_pair() -> None:
    """Every (pending, incoming) pair of roles has an entry: no fold falls through to a default."""
    assert set(COALESCE) == {(p, i) for p in Role for i in Role}


def test_a_listed_upsert_never_replaces_an_events_remove() -> None:
    """Defect 3: the remove folded into a reconcile's upsert becomes a hint, whose 404 deletes."""
    remove = Change("k", ChangeKind.REMOVE, ChangeSource.NOTIFICATION, sequencer="05")
    listed = Change(
        "k", ChangeKind.UPSERT, ChangeSource.RECONCILE, meta=ObjectMeta("k", 1, "e", 1.0), listed=True
    )
    kept = fold(remove, listed)
    assert (kept.kind, kept.listed, kept.meta, kept.sequencer) == (ChangeKind.UPSERT, False, None, None)
    assert role(kept) is Role.HINT


@settings(max_examples=400, deadline=None)
@given(st.lists(changes(), min_size=1, max_size=6))
def test_the_survivor_does_every_folded_changes_job(seq: list[Change]) -> None:
    """Fold a random sequence through the real queue; check the three properties in the docstring."""
    q = KeyedCoalescingQueue()
    for i, c in enumerate(seq):
        q.put_nowait(c, journal_ids=[i])
    (work,) = q.drain_pending()
    kept = work.change
    assert work.journal_ids == list(range(len(seq)))  # every journal row rides on the survivor
    deleters = [c for c in seq if deletes_on_404(c)]
    if deleters and not all(provably_older(c, kept) for c in deleters):
        assert deletes_on_404(kept), f"a 404 would keep the file: {kept} after {seq}"
    if kept.kind is ChangeKind.REMOVE and kept.sequencer:
        for c in seq:
            if c.kind is ChangeKind.UPSERT:
                assert provably_older(c, kept), f"a remove replaced an upsert it is not newer than: {seq}"
    if kept.sequencer:
        assert not any(provably_older(kept, c) for c in seq), seq


def test_waiters_ride_on_a_checked_survivor() -> None:
    """A remove's waiter and journal row move to the hint that replaces it and the listed upsert."""

    async def run() -> None:
        loop = asyncio.get_running_loop()
        w1, w2 = loop.create_future(), loop.create_future()
        q = KeyedCoalescingQueue()
        q.put_nowait(Change("k", ChangeKind.REMOVE, ChangeSource.SQS), w1, [7])
        meta = ObjectMeta("k", 1, "e", 1.0)
        q.put_nowait(Change("k", ChangeKind.UPSERT, ChangeSource.RECONCILE, meta=meta, listed=True), w2)
        work = await q.get()
        assert (work.waiters, work.journal_ids, role(work.change)) == ([w1, w2], [7], Role.HINT)

    asyncio.run(run())
