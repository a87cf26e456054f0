"""Engine (sync/engine.py) and Reconciler (sync/reconcile/reconciler.py) on real moto and a real mirror.

Both GET paths. The engine is assembled as the daemon assembles it
(``support.core``); outcomes are read from the directory, the state store and
the journal, never from the engine's own bookkeeping alone.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from support.core import core, idle
from support.s3kit import tree
from support.wait import wait_for

from s3sync.model import Change, ChangeKind, ChangeSource

PATHS = pytest.mark.parametrize("fast_get", [True, False], ids=["lean", "boto"])


def event(key: str, kind: ChangeKind = ChangeKind.UPSERT) -> Change:
    return Change(key, kind, ChangeSource.NOTIFICATION)


def settings_for(make_settings: Any, bucket: str, mirror: Path, fast_get: bool, **sync: Any) -> Any:
    return make_settings(bucket, mirror, s3={"fast_get": fast_get}, sync={"fsync": False, **sync})


@PATHS
class TestEngine:
    """Intake journals then applies; a stop leaves the rest journaled; a restart replays it."""

    async def test_intake_applies_and_settles_the_journal(
        self, fast_get: bool, s3: Any, bucket: str, mirror: Path, make_settings: Any
    ) -> None:
        s3.put_object(Bucket=bucket, Key="a/1.txt", Body=b"one")
        s3.put_object(Bucket=bucket, Key="b.txt", Body=b"two")
        async with core(settings_for(make_settings, bucket, mirror, fast_get)) as engine:
            await engine.start()
            assert await engine.intake([event("a/1.txt"), event("b.txt")]) == 2
            await wait_for(lambda: idle(engine), what="applied and settled", within=20)
            assert engine.stats.synced["notification"] == 2
        assert tree(mirror) == {"a/1.txt": b"one", "b.txt": b"two"}

    async def test_journal_survives_a_stop_and_replays(
        self, fast_get: bool, s3: Any, bucket: str, mirror: Path, make_settings: Any
    ) -> None:
        """Accepted before the workers ran, stopped: the rows stay; the next engine applies them."""
        s3.put_object(Bucket=bucket, Key="k", Body=b"bytes")
        settings = settings_for(make_settings, bucket, mirror, fast_get)
        async with core(settings, drain_timeout=0) as engine:  # workers never started
            await engine.intake([event("k")])
        assert not (mirror / "k").exists()
        async with core(settings) as engine:
            await engine.start()
            assert await engine.replay_journal() == 1
            await wait_for(lambda: idle(engine), what="the replayed change settles", within=20)
        assert (mirror / "k").read_bytes() == b"bytes"

    async def test_check_s3_reports_a_missing_bucket(
        self, fast_get: bool, s3: Any, bucket: str, mirror: Path, make_settings: Any
    ) -> None:
        async with core(settings_for(make_settings, bucket, mirror, fast_get)) as engine:
            assert await engine.check_s3() == (True, None)
            assert engine.stats.health.s3_reachable is True
        s3.delete_bucket(Bucket=bucket)
        async with core(settings_for(make_settings, bucket, mirror, fast_get)) as engine:
            ok, why = await engine.check_s3()
            assert not ok and why and engine.stats.health.s3_reachable is False


@PATHS
class TestReconciler:
    """A pass makes the mirror equal the bucket; deletes only with delete on, and only past the guards."""

    async def test_pass_downloads_and_then_finds_nothing_to_do(
        self, fast_get: bool, s3: Any, bucket: str, mirror: Path, make_settings: Any
    ) -> None:
        objects = {f"d{i % 3}/f{i}.bin": bytes([i]) * (i * 100) for i in range(12)}
        for k, v in objects.items():
            s3.put_object(Bucket=bucket, Key=k, Body=v)
        async with core(settings_for(make_settings, bucket, mirror, fast_get)) as engine:
            await engine.start()
            first = await engine.reconcile()
            assert (first.ok, first.downloaded) == (True, 12)
            again = await engine.reconcile()
            assert (again.ok, again.downloaded, again.unchanged) == (True, 0, 12)
        assert tree(mirror) == objects

    async def test_deletes_only_when_asked(
        self, fast_get: bool, s3: Any, bucket: str, mirror: Path, make_settings: Any
    ) -> None:
        for k in ("keep", "gone1", "gone2"):
            s3.put_object(Bucket=bucket, Key=k, Body=k.encode())
        settings = settings_for(make_settings, bucket, mirror, fast_get, max_delete=-1)
        async with core(settings) as engine:
            await engine.start()
            assert (await engine.reconcile()).downloaded == 3
            s3.delete_object(Bucket=bucket, Key="gone1")
            s3.delete_object(Bucket=bucket, Key="gone2")
            kept = await engine.reconcile(delete=False)
            assert kept.deleted == 0 and sorted(tree(mirror)) == ["gone1", "gone2", "keep"]
            dry = await engine.reconcile(delete=True, dry_run=True)
            assert dry.deleted == 2 and sorted(tree(mirror)) == ["gone1", "gone2", "keep"]
            real = await engine.reconcile(delete=True)
            assert real.ok and real.deleted == 2
        assert tree(mirror) == {"keep": b"keep"}

    async def test_empty_listing_deletes_nothing(
        self, fast_get: bool, s3: Any, bucket: str, mirror: Path, make_settings: Any
    ) -> None:
        """A listing that comes back empty while the mirror holds files trips the guard."""
        s3.put_object(Bucket=bucket, Key="only", Body=b"x")
        async with core(settings_for(make_settings, bucket, mirror, fast_get)) as engine:
            await engine.start()
            assert (await engine.reconcile()).ok
            s3.delete_object(Bucket=bucket, Key="only")
            report = await engine.reconcile(delete=True)
            assert not report.ok and report.errors[0]["error"] == "empty_source"
        assert tree(mirror) == {"only": b"x"}
