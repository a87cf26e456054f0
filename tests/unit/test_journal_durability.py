"""A journal append is committed with synchronous=FULL (durable across power loss), rows stay NORMAL."""

from __future__ import annotations

from pathlib import Path

from s3sync.model import Change, ChangeKind, ChangeSource
from s3sync.state.store import StateRow, StateStore


class TestJournalDurability:
    """What SQLite was told, statement by statement, around each commit."""

    async def test_append_commits_full_then_back_to_normal(self, tmp_path: Path) -> None:
        store = StateStore(tmp_path / "state.db")
        await store.open()
        try:
            seen: list[str] = []
            await store._run(store.conn.set_trace_callback, seen.append)
            await store.journal_append([Change("k", ChangeKind.UPSERT, ChangeSource.NOTIFICATION)])
            store.record(StateRow("k", "e", 1, 0.0))
            await store.flush()
            await store._run(store.conn.set_trace_callback, None)
            mode = await store._run(lambda: store.conn.execute("PRAGMA synchronous").fetchone()[0])
        finally:
            await store.close()
        stmts = [s.strip().upper() for s in seen]
        full = stmts.index("PRAGMA SYNCHRONOUS=FULL")
        insert = next(i for i, s in enumerate(stmts) if s.startswith("INSERT INTO JOURNAL"))
        commit = next(i for i in range(insert, len(stmts)) if stmts[i] == "COMMIT")
        back = stmts.index("PRAGMA SYNCHRONOUS=NORMAL")
        assert full < insert < commit < back  # the journal's COMMIT ran under FULL
        assert stmts.count("PRAGMA SYNCHRONOUS=FULL") == 1  # the object-row batch did not
        assert mode == 1  # NORMAL between appends
