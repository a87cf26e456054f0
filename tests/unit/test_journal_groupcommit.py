"""Journal group commit: concurrent appends share WAL commits, each caller still gets its own ids."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from s3sync.model import Change, ChangeKind, ChangeSource
from s3sync.state.store import StateStore


def _ch(i: int) -> Change:
    return Change(f"k/{i:04d}", ChangeKind.UPSERT, ChangeSource.NOTIFICATION)


@pytest.fixture
async def store(tmp_path: Path) -> AsyncIterator[StateStore]:
    s = StateStore(tmp_path / "state" / "s3sync.db")
    await s.open()
    try:
        yield s
    finally:
        await s.close()


class TestJournalGroupCommit:
    """Appends that arrive during a commit go out together in the next one."""

    async def test_concurrent_appends_share_commits(self, store: StateStore) -> None:
        commits: list[str] = []
        store.conn.set_trace_callback(lambda sql: commits.append(sql) if sql == "COMMIT" else None)
        ids = await asyncio.gather(*(store.journal_append([_ch(i)]) for i in range(200)))
        store.conn.set_trace_callback(None)
        assert all(len(x) == 1 for x in ids)
        flat = [x[0] for x in ids]
        assert len(set(flat)) == 200
        assert len(commits) < 200  # shared: one WAL fsync for many notifications
        pending = await store.journal_pending()
        by_id = {jid: c.key for jid, c in pending}
        assert [by_id[j] for j in flat] == [_ch(i).key for i in range(200)]

    async def test_a_lone_append_commits_alone(self, store: StateStore) -> None:
        ids = await store.journal_append([_ch(1), _ch(2)])
        assert len(ids) == 2
        assert [c.key for _, c in await store.journal_pending()] == ["k/0001", "k/0002"]

    async def test_a_cancelled_caller_does_not_strand_the_others(self, store: StateStore) -> None:
        tasks = [asyncio.ensure_future(store.journal_append([_ch(i)])) for i in range(50)]
        await asyncio.sleep(0)
        tasks[0].cancel()
        done = await asyncio.wait_for(asyncio.gather(*tasks[1:]), 30)
        assert len(done) == 49
        keys = {c.key for _, c in await store.journal_pending()}
        assert {_ch(i).key for i in range(1, 50)} <= keys
