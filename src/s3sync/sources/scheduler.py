"""Periodic reconcile: S3 sends no event for lifecycle expirations, so this is not optional."""

from __future__ import annotations

import asyncio
import time

import structlog

from s3sync.sync.engine import Engine

log = structlog.get_logger(__name__)


class Scheduler:
    """Runs a reconcile at start and every ``interval`` seconds; ``trigger()`` runs one now."""

    def __init__(self, engine: Engine, interval: float, *, run_at_start: bool = True) -> None:
        self.engine = engine
        self.interval = interval
        self.run_at_start = run_at_start
        self._wake = asyncio.Event()
        self._task: asyncio.Task[None] | None = None

    def start(self) -> None:
        self._task = asyncio.create_task(self._loop(), name="scheduler")

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            try:
                await self._task
            except asyncio.CancelledError:
                pass
            self._task = None

    def trigger(self) -> None:
        self._wake.set()

    async def _loop(self) -> None:
        first = True
        while True:
            if not (first and self.run_at_start):
                self.engine.stats.health.next_reconcile_at = time.time() + self.interval
                try:
                    await asyncio.wait_for(self._wake.wait(), self.interval)
                except TimeoutError:
                    pass
                self._wake.clear()
            first = False
            try:
                await self.engine.reconcile()
            except asyncio.CancelledError:
                raise
            except Exception as exc:  # a failed pass must never stop the schedule
                log.error("reconcile crashed", error=str(exc))
