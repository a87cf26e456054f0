"""The sync core, assembled as the daemon assembles it, for tests that drive it directly.

:func:`core` opens a real state store, a real mirror directory and a real
:class:`~s3sync.s3.bucket.Bucket` (either GET path) against moto, and builds an
:class:`~s3sync.sync.engine.Engine` *without starting its workers*: a test can
queue changes first (so they meet in the coalescing queue in the order it
chooses) and then call ``engine.start()``. Unwinds like ``sync.engine.open_engine``.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

from s3sync.local.mirror import Mirror
from s3sync.s3.bucket import Bucket
from s3sync.state.store import StateStore
from s3sync.stats import SyncStats
from s3sync.sync.engine import Engine
from s3sync.sync.reconcile.inventory_pass import ReportSource


@asynccontextmanager
async def core(
    settings: Any, stats: SyncStats | None = None, *, drain_timeout: float = 10
) -> AsyncIterator[Engine]:
    """An Engine on real parts, workers not started (see the module docstring).

    On exit the engine stops after at most ``drain_timeout`` seconds of draining;
    work still in flight then is cancelled (and stays in the journal).
    """
    stats = stats or SyncStats()
    mirror = Mirror(settings.sync.local_dir, fsync=settings.sync.fsync, backup_dir=settings.sync.backup_dir)
    mirror.ensure_root()
    state = StateStore(settings.sync.resolved_state_path)
    await state.open()
    try:
        async with Bucket(settings.s3, fast_get=settings.s3.fast_get, timeout=30) as bucket:
            reports = ReportSource.of(settings.inventory, settings.s3, settings.sync.download_timeout_seconds)
            engine = Engine(
                settings.sync, bucket, state, mirror, stats, prefix=settings.s3.prefix, reports=reports
            )
            try:
                yield engine
            finally:
                await engine.stop(drain_timeout=drain_timeout)
    finally:
        await state.close()


async def idle(engine: Engine) -> bool:
    """No queued, in-flight or journaled work left."""
    q = engine.queue
    return q.depth == 0 and q.in_flight == 0 and not await engine.state.journal_pending()
