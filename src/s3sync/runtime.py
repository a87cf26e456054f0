"""Wiring shared by the CLI one-shot commands and the daemon: settings → running Engine."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from s3sync.bucket import Bucket
from s3sync.config import Settings
from s3sync.engine import Engine
from s3sync.errors import FatalError
from s3sync.mirror import Mirror
from s3sync.state import StateStore
from s3sync.stats import SyncStats


@asynccontextmanager
async def open_engine(settings: Settings, stats: SyncStats | None = None) -> AsyncIterator[Engine]:
    """Open state, mirror and bucket, start the workers; unwind in reverse order."""
    stats = stats or SyncStats()
    mirror = Mirror(settings.sync.local_dir, fsync=settings.sync.fsync)
    try:
        mirror.ensure_root()
    except OSError as exc:
        raise FatalError(
            f"sync.local_dir: cannot create {str(settings.sync.local_dir)!r}: {exc.strerror}"
        ) from exc
    stats.directory_writable = mirror.is_writable()
    if not stats.directory_writable:
        raise FatalError(f"sync.local_dir: {str(mirror.root)!r} is not writable")
    state = StateStore(settings.sync.resolved_state_path)
    try:
        await state.open()
    except Exception as exc:
        raise FatalError(f"sync.state_path: cannot open {str(state.path)!r}: {exc}") from exc
    try:
        async with Bucket(
            settings.s3, fast_get=settings.s3.fast_get, timeout=settings.sync.download_timeout_seconds
        ) as bucket:
            engine = Engine(settings, bucket, state, mirror, stats)
            await engine.start()
            try:
                yield engine
            finally:
                await engine.stop()
    finally:
        await state.close()
