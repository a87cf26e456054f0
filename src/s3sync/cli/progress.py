"""What ``sync`` and ``verify`` draw on a terminal while they work (stderr, TTY only).

``sync``: files done of planned, files/s, MB/s, elapsed, ETA. The report only changes when a
transfer completes, so one big object used to show ``0/?`` and no bytes for its whole download;
the bar now also polls the engine four times a second: bytes as they arrive (counted by the
transfer's throttle, installed with no limit when ``--bwlimit`` is not given, and only when the
bar is shown) and the transfers in flight. ``verify``: a spinner with the elapsed time.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Iterator
from typing import Any


class ProgressBar:
    """A rich progress bar on stderr; see the module docstring."""

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
        self._report: Any = None
        self._engine: Any = None
        self._meter: Any = None
        self._poll: asyncio.Future[None] | None = None

    def follow(self, engine: Any) -> None:
        """Poll ``engine`` between completions: bytes as they arrive, transfers in flight."""
        from s3sync.sync.transfer.throttle import Throttle

        transfer = engine.applier.transfer
        if transfer.throttle is None:
            transfer.throttle = Throttle(0)  # rate 0: no limit, it only counts the bytes
        self._engine, self._meter = engine, transfer.throttle
        self._poll = asyncio.ensure_future(self._tick())

    async def _tick(self) -> None:
        while True:
            await asyncio.sleep(0.25)
            self._draw()

    def update(self, r: Any) -> None:
        self._report = r
        self._draw()

    def _draw(self) -> None:
        r = self._report
        done = (r.downloaded + r.failed + r.skipped + r.unchanged + r.deleted) if r is not None else 0
        files = r.downloaded if r is not None else 0
        nbytes = self._meter.bytes_total if self._meter is not None else (r.bytes if r is not None else 0)
        flying = self._engine.stats.in_flight if self._engine is not None else 0
        planned = (r.planned + r.unchanged + r.skipped) if r is not None else 0
        total = max(done + flying, planned) or None
        elapsed = max(time.monotonic() - self._t0, 1e-6)
        rate = f"{files / elapsed:,.0f} files/s {nbytes / elapsed / 1e6:,.1f} MB/s"
        if flying:
            rate += f" ({flying} in flight)"
        self._progress.update(self._task, completed=done, rate=rate, total=total)

    def stop(self) -> None:
        if self._poll is not None:
            self._poll.cancel()
        self._progress.stop()


@contextlib.contextmanager
def spinner(text: str, show: bool) -> Iterator[None]:
    """``verify``'s sign of life on a terminal: a spinner and the elapsed time."""
    if not show:
        yield
        return
    from rich.console import Console
    from rich.progress import Progress, SpinnerColumn, TextColumn, TimeElapsedColumn

    with Progress(
        SpinnerColumn(), TextColumn(text), TimeElapsedColumn(), console=Console(stderr=True), transient=True
    ) as p:
        p.add_task(text, total=None)
        yield


__all__ = ["ProgressBar", "spinner"]
