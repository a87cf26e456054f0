"""Group durability for renames: each touched directory fsynced once per batch.

A rename is durable only once its directory is fsynced; :class:`DirSync` lets
many commits share those fsyncs.
"""

from __future__ import annotations

import ctypes
import functools
import os
import sys
import threading
from collections.abc import Callable, Sequence
from typing import Protocol

from s3sync.errors import LocalIOError
from s3sync.local import libc


def _kernel_at_least(major: int, minor: int) -> bool:
    try:
        parts = os.uname().release.split(".")
        return (int(parts[0]), int("".join(c for c in parts[1] if c.isdigit()) or 0)) >= (major, minor)
    except (ValueError, IndexError):
        return False


def syncfs_available() -> bool:
    """Whether :func:`syncfs` can stand in for per-file fsyncs.

    Linux only, and only from 5.8: older kernels return 0 from ``syncfs`` even
    when writeback failed, which would let a lost write look durable.
    """
    return _syncfs_fn() is not None


@functools.cache
def _syncfs_fn() -> Callable[[int], int] | None:
    if not sys.platform.startswith("linux") or not _kernel_at_least(5, 8):
        return None
    fn: Callable[[int], int] | None = libc.function("syncfs", ctypes.c_int)
    return fn


def syncfs(fd: int) -> None:
    """Make everything written to ``fd``'s filesystem durable (data, inodes, directory entries).

    Raises OSError when the kernel reports a writeback error, or when syncfs is unavailable.
    """
    fn = _syncfs_fn()
    if fn is None:
        raise OSError(38, "syncfs is not available")  # ENOSYS
    if fn(fd) != 0:
        libc.raise_errno()


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

    #: what the batch's sync is called in an error message
    what = "directory fsync"

    def __init__(self) -> None:
        self._fds: dict[tuple[int, int], int] = {}
        self._lock = threading.Lock()

    def _ident(self, st: os.stat_result) -> tuple[int, int]:
        """Which recorded directories one sync covers: each directory, by device and inode."""
        return (st.st_dev, st.st_ino)

    def _sync(self, fd: int) -> None:
        os.fsync(fd)

    def add(self, dirfd: int) -> None:
        ident = self._ident(os.fstat(dirfd))
        with self._lock:
            if ident not in self._fds:
                self._fds[ident] = os.dup(dirfd)

    def __len__(self) -> int:
        return len(self._fds)

    def _sync_close(self, fd: int) -> OSError | None:
        try:
            self._sync(fd)
            return None
        except OSError as exc:
            return exc
        finally:
            os.close(fd)

    def _sync_all(self, fds: list[int]) -> list[OSError | None]:
        """Sync (and close) every fd; a subclass may spread this over threads."""
        return [self._sync_close(fd) for fd in fds]

    def flush(self) -> None:
        """Sync every recorded directory; all fds are closed even if one sync fails."""
        with self._lock:
            fds, self._fds = list(self._fds.values()), {}
        errors = [e for e in self._sync_all(fds) if e is not None]
        if errors:
            raise LocalIOError(f"{self.what} failed: {errors[0].strerror or errors[0]}") from errors[0]

    def __enter__(self) -> DirSync:
        return self

    def __exit__(self, *exc: object) -> None:
        self.flush()


class FilesystemSync(DirSync):
    """A :class:`DirSync` that makes its directories durable with one ``syncfs`` per filesystem.

    For a batch of many renames (local.groupcommit): fsyncing each directory
    costs a journal commit per directory, one ``syncfs`` covers every entry of
    the filesystem at once. Directories on different filesystems (a mount
    inside the mirror) each get their own.
    """

    what = "filesystem sync"

    def _ident(self, st: os.stat_result) -> tuple[int, int]:
        return (st.st_dev, 0)

    def _sync(self, fd: int) -> None:
        syncfs(fd)


class BatchDirs(FilesystemSync):
    """The directories of one group-commit batch, each opened once, and their renames' ``syncfs``.

    Why: a batch of 32 small files mostly lands in a few directories, and walking
    down from the root for every file (``openat`` of the root and of each
    component, then ``close``), ``fstat``-ing every temp for its filesystem and
    ``fstat``+``dup``-ing its directory for the rename's durability was 5-6
    system calls per file beyond the create, write, rename themselves. Each is a
    GIL hand-over in the batch's thread, which the event loop pays for as much
    as the thread. Here a directory is opened (without following links, as
    ever) the first time a file of the batch needs it and its filesystem is
    read once; temps borrow the fd (:class:`~s3sync.local.temps.TempFile` does
    not close it), :meth:`add` of a directory opened here costs no system call
    once its filesystem is recorded, and :meth:`close` ends them after every
    temp of the batch has been committed or discarded. Held for one batch only:
    a directory swapped for a link between batches is met afresh by the next.
    """

    def __init__(self) -> None:
        super().__init__()
        self._open: dict[tuple[str, ...], int] = {}
        self._dev: dict[int, int] = {}  # dirfd -> st_dev

    def open(self, fs: SafeFSLike, parts: tuple[str, ...], key: str) -> int:
        """The fd of ``local_dir/parts`` (created if missing), opened at most once per batch."""
        fd = self._open.get(parts)
        if fd is None:
            fd = fs.open_dir(parts, create=True, key=key)
            try:
                self._dev[fd] = os.fstat(fd).st_dev
            except OSError:
                os.close(fd)
                raise
            self._open[parts] = fd
        return fd

    def device(self, dirfd: int) -> int:
        """The filesystem of a directory opened here."""
        return self._dev[dirfd]

    def add(self, dirfd: int) -> None:
        dev = self._dev.get(dirfd)
        if dev is None:
            super().add(dirfd)
            return
        with self._lock:
            if (dev, 0) not in self._fds:
                self._fds[(dev, 0)] = os.dup(dirfd)

    def close(self) -> None:
        """Close the batch's directories (every temp borrowing one has ended)."""
        fds, self._open, self._dev = list(self._open.values()), {}, {}
        for fd in fds:
            try:
                os.close(fd)
            except OSError:
                pass


class SafeFSLike(Protocol):
    def open_dir(self, parts: Sequence[str], *, create: bool = False, key: str = "") -> int: ...


__all__ = ["BatchDirs", "DirSync", "FilesystemSync", "syncfs", "syncfs_available"]
