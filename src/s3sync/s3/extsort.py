"""External merge sort with bounded memory, for streams too big to hold in RAM.

An S3 Inventory report of 10⁹ objects does not promise any order across (or
within) its data files, but the reconcile is a sorted merge. Holding every key
in a list would cost ~300 bytes per object; instead items are buffered up to
``run_size``, sorted, and spilled to a temporary file as pickled chunks; the
runs are then merged with :func:`heapq.merge`, reading one small chunk per run
at a time. When there are more runs than ``fan_in`` (more open files and
chunk buffers than we want), groups of runs are merged into longer runs first,
so memory stays ``O(run_size + fan_in * chunk)`` whatever the input size.

Items are sorted in their natural order, with no key function, so every
comparison stays in C: the inventory reader hands in one ``str`` per row, the
key first and the other fields after a NUL (which sorts below every other
character, so ``"a\0…"`` sorts before ``"a/b\0…"`` exactly as ``a`` before
``a/b``). Python compares code points, which orders valid UTF-8 exactly as S3
does, byte by byte. One ``str`` per row is also ~2.5x smaller than a tuple of
fields, which is what bounds the run size in memory.
"""

from __future__ import annotations

import heapq
import os
import pickle
import tempfile
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import IO, Any

Item = Any  # anything mutually comparable and picklable: str rows, or tuples in tests


def _write_run(items: Iterable[Item], directory: Path, chunk: int) -> Path:
    fd, name = tempfile.mkstemp(prefix="run-", suffix=".bin", dir=directory)
    with os.fdopen(fd, "wb", buffering=1 << 20) as out:
        buf: list[Item] = []
        for item in items:
            buf.append(item)
            if len(buf) >= chunk:
                pickle.dump(buf, out, protocol=pickle.HIGHEST_PROTOCOL)
                buf = []
        if buf:
            pickle.dump(buf, out, protocol=pickle.HIGHEST_PROTOCOL)
    return Path(name)


def _read_run(path: Path, opened: list[IO[bytes]]) -> Iterator[Item]:
    fh = path.open("rb", buffering=1 << 16)
    opened.append(fh)
    try:
        while True:
            try:
                chunk: list[Item] = pickle.load(fh)
            except EOFError:
                return
            yield from chunk
    finally:
        fh.close()


class ExternalSorter:
    """Collects items, then yields them in key order; spills sorted runs to ``directory``.

    Not thread-safe: one thread at a time adds or iterates (the inventory reader
    hands it from the event loop to worker threads strictly one call at a time).
    """

    def __init__(
        self,
        directory: Path | None = None,
        *,
        run_size: int = 50_000,
        fan_in: int = 64,
        chunk: int = 512,
    ) -> None:
        if run_size < 1 or fan_in < 2 or chunk < 1:
            raise ValueError("run_size >= 1, fan_in >= 2 and chunk >= 1 are required")
        self._tmp = tempfile.TemporaryDirectory(prefix="s3sync-sort-", dir=directory)
        self._dir = Path(self._tmp.name)
        self._run_size = run_size
        self._fan_in = fan_in
        self._chunk = chunk
        self._buf: list[Item] = []
        self._runs: list[Path] = []
        self._opened: list[IO[bytes]] = []
        self.count = 0

    @property
    def runs(self) -> int:
        """How many sorted runs have been spilled so far (for tests and stats)."""
        return len(self._runs)

    def add(self, item: Item) -> None:
        self._buf.append(item)
        self.count += 1
        if len(self._buf) >= self._run_size:
            self._spill()

    def extend(self, items: Iterable[Item]) -> None:
        for item in items:
            self.add(item)

    def _spill(self) -> None:
        self._buf.sort()
        self._runs.append(_write_run(self._buf, self._dir, self._chunk))
        self._buf = []

    def _merge(self, paths: list[Path]) -> Iterator[Item]:
        return heapq.merge(*(_read_run(p, self._opened) for p in paths))

    def sorted(self) -> Iterator[Item]:
        """Every item added, in key order (call once, after the last ``add``)."""
        if not self._runs:
            self._buf.sort()
            items, self._buf = self._buf, []
            yield from items
            return
        if self._buf:
            self._spill()
        # Reduce to at most fan_in runs, level by level.
        while len(self._runs) > self._fan_in:
            level: list[Path] = []
            for i in range(0, len(self._runs), self._fan_in):
                group = self._runs[i : i + self._fan_in]
                level.append(_write_run(self._merge(group), self._dir, self._chunk))
                for p in group:
                    p.unlink()
            self._runs = level
            self._opened.clear()  # every run of the level was read to its end and closed
        yield from self._merge(self._runs)

    def close(self) -> None:
        """Close open run files and remove the temporary directory."""
        for fh in self._opened:
            fh.close()
        self._opened.clear()
        self._buf = []
        self._runs = []
        self._tmp.cleanup()

    def __enter__(self) -> ExternalSorter:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
