"""Start writeback of freshly written file regions while a large download is still running.

Why: a 1 GiB download written at memory speed leaves up to 1 GiB of dirty page
cache. Two things then go wrong. The final ``fsync`` before the rename has all of
it left to write (seconds on this machine's disk, after the network is done).
And once dirty pages pass the kernel's dirty threshold, ``pwrite`` itself is
throttled (``balance_dirty_pages``), for seconds on a busy disk; the part that
waits stops reading its socket, the HTTP pool pauses the connection, the
kernel's receive queue fills and TCP backs off (0.2 s, 0.4 s, ... doubling), so a
short disk stall becomes a long network one.

``sync_file_range(SYNC_FILE_RANGE_WRITE)`` asks the kernel to start writing a
region now without waiting for it and without dropping it from the page cache
(the hasher reads the region back from there). Dirty data then never piles up,
``pwrite`` is not throttled, and the final fsync only waits for the tail. It is
Linux-only and reached through ctypes (``os`` has no binding); anywhere it is
missing this is a no-op and durability is unchanged: the fsync before the rename
is what guarantees the bytes, never this.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import sys

SYNC_FILE_RANGE_WRITE = 2  # <linux/fs.h>: start writeback of dirty pages in the range, do not wait

_fn: object | None = None
_missing = False


def _load() -> object | None:
    global _fn, _missing
    if _fn is not None or _missing:
        return _fn
    if not sys.platform.startswith("linux"):
        _missing = True
        return None
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6", use_errno=True)
        fn = libc.sync_file_range
        fn.argtypes = [ctypes.c_int, ctypes.c_int64, ctypes.c_int64, ctypes.c_uint]
        fn.restype = ctypes.c_int
        _fn = fn
    except (OSError, AttributeError):
        _missing = True
    return _fn


def start_writeback(fd: int, offset: int, length: int) -> bool:
    """Begin writing ``length`` bytes at ``offset`` of ``fd`` to disk; True if the kernel took it.

    Never raises: a refusal (a filesystem without it, a pipe) only means no head start.
    """
    fn = _load()
    if fn is None or length <= 0:
        return False
    rc = fn(fd, offset, length, SYNC_FILE_RANGE_WRITE)  # type: ignore[operator]
    return bool(rc == 0)


__all__ = ["SYNC_FILE_RANGE_WRITE", "start_writeback"]
