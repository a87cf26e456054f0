"""The progress bar ``sync`` draws on a terminal: files done of planned, files/s, MB/s, ETA.

Only on a TTY; stderr, so stdout stays the summary (or the one JSON document).
"""

from __future__ import annotations

import time
from typing import Any


class ProgressBar:
    """A rich progress bar on stderr: files done of planned, files/s, MB/s, elapsed and ETA."""

    def __init__(self) -> None:
        from rich.console import Console
        from rich.progress import (
            BarColumn,
            MofNCompleteColumn,
            Progress,
            TextColumn,
            TimeElapsedColumn,
            TimeRemainingColumn,
        )

        self._progress = Progress(
            TextColumn("[bold]sync"),
            BarColumn(),
            MofNCompleteColumn(),
            TextColumn("{task.fields[rate]}"),
            TimeElapsedColumn(),
            TextColumn("ETA"),
            TimeRemainingColumn(),
            console=Console(stderr=True),
            transient=True,
        )
        self._task = self._progress.add_task("sync", total=None, rate="")
        self._progress.start()
        self._t0 = time.monotonic()

    def update(self, r: Any) -> None:
        done = r.downloaded + r.failed + r.skipped + r.unchanged + r.deleted
        elapsed = max(time.monotonic() - self._t0, 1e-6)
        rate = f"{r.downloaded / elapsed:,.0f} files/s {r.bytes / elapsed / 1e6:,.1f} MB/s"
        self._progress.update(
            self._task, completed=done, rate=rate, total=max(done, r.planned + r.unchanged + r.skipped)
        )

    def stop(self) -> None:
        self._progress.stop()


__all__ = ["ProgressBar"]
