"""A minimal inotify reader (ctypes, standard library only) for W5's "the file is in place" clock.

Why not polling: W5 used to ``stat`` every outstanding path every ~0.5 ms. Once
the daemon fell a little behind, hundreds of paths were outstanding and the
poller itself took a whole core of the two, which made the daemon fall further
behind — the measurement fed the thing it measured. s3sync puts each file in
place with one ``rename``, so an ``IN_MOVED_TO`` on the file's directory is the
moment it appears with its full size; the reader blocks in ``poll`` and costs
nothing between events.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import os
import select
import struct
import sys

IN_CLOSE_WRITE = 0x00000008
IN_MOVED_TO = 0x00000080
IN_CREATE = 0x00000100
IN_Q_OVERFLOW = 0x00004000
IN_ONLYDIR = 0x01000000
_EVENT = struct.Struct("iIII")


class Inotify:
    """One inotify instance: watch directories, read (wd, mask, name) events."""

    def __init__(self) -> None:
        if not sys.platform.startswith("linux"):
            raise OSError("inotify is Linux-only")
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6", use_errno=True)
        self._add = libc.inotify_add_watch
        self._add.argtypes = [ctypes.c_int, ctypes.c_char_p, ctypes.c_uint32]
        self._add.restype = ctypes.c_int
        fd = libc.inotify_init1(os.O_NONBLOCK | os.O_CLOEXEC)
        if fd < 0:
            err = ctypes.get_errno()
            raise OSError(err, os.strerror(err))
        self.fd = fd
        self._poll = select.poll()
        self._poll.register(fd, select.POLLIN)
        self.paths: dict[int, str] = {}

    def watch(self, path: str, mask: int = IN_MOVED_TO | IN_CLOSE_WRITE) -> int:
        wd = self._add(self.fd, os.fsencode(path), mask | IN_ONLYDIR)
        if wd < 0:
            err = ctypes.get_errno()
            raise OSError(err, os.strerror(err), path)
        self.paths[wd] = path
        return wd

    def read(self, timeout_ms: int) -> list[tuple[str, int, str]]:
        """Events as (directory, mask, name); [] after ``timeout_ms`` without any."""
        if not self._poll.poll(timeout_ms):
            return []
        try:
            buf = os.read(self.fd, 1 << 16)
        except BlockingIOError:
            return []
        out = []
        off = 0
        while off + _EVENT.size <= len(buf):
            wd, mask, _cookie, length = _EVENT.unpack_from(buf, off)
            raw = buf[off + _EVENT.size : off + _EVENT.size + length]
            off += _EVENT.size + length
            out.append((self.paths.get(wd, ""), mask, raw.rstrip(b"\0").decode("utf-8", "surrogateescape")))
        return out

    def close(self) -> None:
        os.close(self.fd)
