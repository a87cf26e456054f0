"""The temp file of one download: one owner of its fd, closed exactly once, never under a writer.

:class:`s3sync.local.mirror.Mirror` creates, commits, discards and releases these;
nothing else closes their descriptors.
"""

from __future__ import annotations

import os
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any, TypeVar

from s3sync.errors import LocalIOError

T = TypeVar("T")


class TempClosedError(LocalIOError):
    """A temp file was used after it was committed, discarded or released."""


class TempFile:
    """An open temp sibling of one key's final path: the one owner of its fd and directory fd.

    Why an object: a bare fd number is reused by the kernel the moment it is closed,
    so a second ``close`` (or a late ``pwritev``) hits whatever file opened next —
    SQLite, a socket, another worker's temp. Here the fd is closed exactly once:

    * :meth:`Mirror.commit`, :meth:`Mirror.discard` and :meth:`Mirror.release` end
      it; whichever comes first does the work, the others are no-ops (a failed
      commit has already closed and removed it: nothing is left to close twice);
    * threads that read or write it concurrently (the ranged download's part
      writers, its hasher, its checkpoints) enter :meth:`use`; ending it first
      refuses new users and then waits until every current user has left, so no
      thread touches the fd number after it was closed — a cancelled part's
      ``pwritev`` in flight completes into this file, never into another.

    :attr:`fd` is for the single thread driving the file (group commit's batch);
    anything running beside others goes through :meth:`use` or :meth:`run`.
    """

    __slots__ = (
        "_cond",
        "_dirfd",
        "_fd",
        "_on_end",
        "_owns_dir",
        "_state",
        "_users",
        "final",
        "key",
        "name",
        "parts",
        "path",
    )

    def __init__(
        self,
        root: Path,
        key: str,
        parts: tuple[str, ...],
        dirfd: int,
        name: str,
        fd: int,
        on_end: Callable[[TempFile], None] = lambda _t: None,
        *,
        owns_dir: bool = True,
    ) -> None:
        self._on_end = on_end
        # False: ``dirfd`` is borrowed from a group commit's batch (local.dirsync.BatchDirs),
        # which closes it once every temp of the batch has ended
        self._owns_dir = owns_dir
        self.key = key
        self.parts = parts
        self.name = name
        self.final = root.joinpath(*parts)
        self.path = self.final.parent / name
        self._dirfd = dirfd
        self._fd = fd
        self._cond = threading.Condition(threading.Lock())
        self._users = 0
        self._state = "open"  # open -> ending -> committed | discarded | released

    def __repr__(self) -> str:
        return f"<TempFile {self.path} fd={self._fd} {self._state}>"

    @property
    def fd(self) -> int:
        if self._state != "open":
            raise TempClosedError(f"{self.key!r}: temporary file already {self._state}")
        return self._fd

    @property
    def state(self) -> str:
        """``open``, ``ending``, or how it ended: ``committed``, ``discarded``, ``released``."""
        return self._state

    @property
    def closed(self) -> bool:
        return self._state != "open"

    @contextmanager
    def use(self) -> Iterator[int]:
        """The fd, for one operation in any thread; closing waits until every user has left."""
        with self._cond:
            if self._state != "open":
                raise TempClosedError(f"{self.key!r}: temporary file already {self._state}")
            self._users += 1
        try:
            yield self._fd
        finally:
            with self._cond:
                self._users -= 1
                if not self._users:
                    self._cond.notify_all()

    def run(self, fn: Callable[..., T], *args: Any) -> T:
        """``fn(fd, *args)`` inside :meth:`use` (blocking; meant for a worker thread)."""
        with self.use() as fd:
            return fn(fd, *args)

    # -- ending (Mirror only: commit, discard and release own the order) -----
    def _end(self) -> bool:
        """Refuse new users, wait for the current ones; False when it was ended already."""
        with self._cond:
            if self._state != "open":
                return False
            self._state = "ending"
            while self._users:
                self._cond.wait()
        return True

    def _close_fd(self) -> None:
        fd, self._fd = self._fd, -1
        if fd >= 0:
            os.close(fd)

    def _finish(self, state: str) -> None:
        """Close whatever is still open (exactly once) and record how it ended."""
        try:
            self._close_fd()
        finally:
            dirfd, self._dirfd = self._dirfd, -1
            self._state = state
            self._on_end(self)
            if dirfd >= 0 and self._owns_dir:
                os.close(dirfd)


__all__ = ["TempClosedError", "TempFile"]
