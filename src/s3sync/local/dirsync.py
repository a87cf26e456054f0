"""Group durability for renames: each touched directory fsynced once per batch.

A rename is durable only once its directory is fsynced; :class:`DirSync` lets
many commits share those fsyncs.
"""

from __future__ import annotations

import os
import threading

from s3sync.errors import LocalIOError


class DirSync:
    """Directories whose entries changed but are not durable yet; each fsynced once.

    A rename is durable only once its directory is fsynced. Committing one file
    and fsyncing its directory is the simple case (:meth:`SafeFS.fsync_dir`).
    For group durability a caller committing many files passes one ``DirSync``
    to every commit, which only records the directory (by device and inode, an
    ``fstat`` and a ``dup``), then calls :meth:`flush` once: N renames into one
    directory cost one directory fsync. Thread-safe, so the workers of a batch
    may share one. Use as a context manager to flush on exit.
    """

    def __init__(self) -> None:
        self._fds: dict[tuple[int, int], int] = {}
        self._lock = threading.Lock()

    def add(self, dirfd: int) -> None:
        st = os.fstat(dirfd)
        ident = (st.st_dev, st.st_ino)
        with self._lock:
            if ident not in self._fds:
                self._fds[ident] = os.dup(dirfd)

    def __len__(self) -> int:
        return len(self._fds)

    def flush(self) -> None:
        """fsync every recorded directory; all fds are closed even if one fsync fails."""
        with self._lock:
            fds, self._fds = list(self._fds.values()), {}
        first: OSError | None = None
        for fd in fds:
            try:
                os.fsync(fd)
            except OSError as exc:
                first = first or exc
            finally:
                os.close(fd)
        if first is not None:
            raise LocalIOError(f"directory fsync failed: {first.strerror or first}") from first

    def __enter__(self) -> DirSync:
        return self

    def __exit__(self, *exc: object) -> None:
        self.flush()


__all__ = ["DirSync"]
