"""Ctrl-C and SIGTERM during a one-shot ``sync``: stop within a second, keep what was done.

Cancelling the pass alone is not enough: the engine's stop drains in-flight transfers for up
to ``drain_timeout_seconds`` (right for the daemon, wrong for someone pressing Ctrl-C at a
slow ``--bwlimit``). So a signal first closes the drain deadline (workers are cancelled at
once; a cancelled download removes its temporary file, or keeps a big one as a resumable
part), then cancels the pass. The report the pass had built so far becomes the summary, and
the exit code is 128 + the signal number (130 for SIGINT, 143 for SIGTERM), as a shell does.
"""

from __future__ import annotations

import asyncio
import signal
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from s3sync.sync.engine import Engine
    from s3sync.sync.report import SyncReport

SIGNALS = (signal.SIGINT, signal.SIGTERM)


def _terminate_early(signum: int, frame: Any) -> None:
    """SIGTERM before the event loop runs (imports, config): leave quietly with 143."""
    raise SystemExit(128 + signum)


def guard_startup() -> None:
    """Until :meth:`Interrupt.install` runs, SIGTERM exits 143 without a traceback (SIGINT
    already raises KeyboardInterrupt, which ``main`` turns into 130)."""
    signal.signal(signal.SIGTERM, _terminate_early)


class Interrupt:
    """Watches SIGINT/SIGTERM for one pass; see the module docstring."""

    def __init__(self) -> None:
        self.signum: int | None = None
        self.report: SyncReport | None = None
        self.engine: Engine | None = None
        self._task: asyncio.Task[Any] | None = None
        self._stopping: asyncio.Task[None] | None = None

    def install(self) -> None:
        loop = asyncio.get_running_loop()
        self._task = asyncio.current_task()
        for sig in SIGNALS:
            loop.add_signal_handler(sig, self._fire, sig)

    def progress(self, report: SyncReport) -> None:
        """The pass hands its report to every progress call: the latest is the summary so far."""
        self.report = report

    def _fire(self, signum: int) -> None:
        if self.signum is not None:
            return  # already stopping: a second Ctrl-C changes nothing (it takes under a second)
        self.signum = signum
        self._stopping = asyncio.ensure_future(self._stop())

    async def _stop(self) -> None:
        if self.engine is not None:
            await self.engine.drain(0)  # fixes the deadline: the engine's stop cancels at once
        if self._task is not None:
            self._task.cancel()

    def summary(self, dry_run: bool) -> SyncReport:
        """The pass so far, marked interrupted; changes the stop cut short are not failures."""
        from s3sync.sync.report import SyncReport

        report = self.report or SyncReport(dry_run=dry_run)
        stopped = [e for e in report.errors if e.get("error") == "stopped"]
        report.failed -= len(stopped)
        report.errors = [e for e in report.errors if e.get("error") != "stopped"]
        report.details = [d for d in report.details if d.get("message") != "daemon stopping"]
        name = signal.Signals(self.signum or signal.SIGINT).name
        report.aborted = f"interrupted by {name}"
        return report.finish()

    @property
    def exit_code(self) -> int:
        return 128 + (self.signum or signal.SIGINT)


__all__ = ["Interrupt", "guard_startup"]
