"""Group durability for renames: each touched directory fsynced once per batch.

A rename is durable only once its directory is fsynced; :class:`DirSync` lets
many commits share those fsyncs.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import os
import sys
import threading

from s3sync.errors import LocalIOError

_syncfs_fn: object | None = None
_syncfs_checked = False


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
    return _load_syncfs() is not None


def _load_syncfs() -> object | None:
    global _syncfs_fn, _syncfs_checked
    if _syncfs_checked:
        return _syncfs_fn
    _syncfs_checked = True
    if not sys.platform.startswith("linux") or not _kernel_at_least(5, 8):
        return None
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6", use_errno=True)
        fn = libc.syncfs
        fn.argtypes = [ctypes.c_int]
        fn.restype = ctypes.c_int
        _syncfs_fn = fn
    except (OSError, AttributeError):
        _syncfs_fn = None
    return _syncfs_fn


def syncfs(fd: int) -> None:
    """Make everything written to ``fd``'s filesystem durable (data, inodes, directory entries).

    Raises OSError when the kernel reports a writeback error, or when syncfs is unavailable.
    """
    fn = _load_syncfs()
    if fn is None:
        raise OSError(38, "syncfs is not available")  # ENOSYS
    if fn(fd) != 0:  # type: ignore[operator]
        err = ctypes.get_errno()
        raise OSError(err, os.strerror(err))


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


class FilesystemSync(DirSync):
    """A :class:`DirSync` that makes its directories durable with one ``syncfs`` per filesystem.

    For a batch of many renames (local.groupcommit): fsyncing each directory
    costs a journal commit per directory, one ``syncfs`` covers every entry of
    the filesystem at once. Directories on different filesystems (a mount
    inside the mirror) each get their own.
    """

    def add(self, dirfd: int) -> None:
        dev = os.fstat(dirfd).st_dev
        with self._lock:
            if (dev, 0) not in self._fds:
                self._fds[(dev, 0)] = os.dup(dirfd)

    def flush(self) -> None:
        with self._lock:
            fds, self._fds = list(self._fds.values()), {}
        first: OSError | None = None
        for fd in fds:
            try:
                syncfs(fd)
            except OSError as exc:
                first = first or exc
            finally:
                os.close(fd)
        if first is not None:
            raise LocalIOError(f"filesystem sync failed: {first.strerror or first}") from first


__all__ = ["DirSync", "FilesystemSync", "syncfs", "syncfs_available"]
