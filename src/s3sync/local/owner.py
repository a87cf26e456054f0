"""Who is writing a temp file (or a sidecar being saved), and whether it is provably gone.

N hosts may share one ``local_dir`` (docs/scale.md: one shard each). A start-up
sweep that removed every temporary name in the tree removed the others'
in-progress downloads too. So every temp and every sidecar being written carries
its owner in its name (:func:`s3sync.local.keys.temp_name_for`), as a tag::

    <host>-<K>of<N>-<pid>-<start>        e.g.  3fa2c41b-0of4-21807-9c02e6d1

``host`` is 8 hex digits of SHA-256 of the host name, ``K``/``N`` the shard,
``pid`` the process id and ``start`` 8 hex digits of SHA-256 of the kernel's boot
id and the process's start time (``/proc/<pid>/stat`` field 22), so a recycled pid
or a reboot is not mistaken for the same process.

A sweep may remove a temp only when :meth:`Owner.may_remove` says so: the temp
is its own, or its owner is *proven gone* — the same host and shard, and no
process with that pid and start time runs here (pid absent, reused, or the
machine rebooted). Another host's temps are never proven gone from here: that
host's own next start removes them. Another shard's are left alone too, even on
the same host: two containers sharing a host name (and a kernel) see different
pid namespaces, so only the shard's own successor may judge a pid.
"""

from __future__ import annotations

import functools
import hashlib
import os
import re
import socket
from dataclasses import dataclass

_TAG = re.compile(r"([0-9a-f]{8})-(\d+)of(\d+)-(\d+)-([0-9a-f]{8})")
UNKNOWN_START = "0" * 8  # no /proc: liveness by pid alone (a recycled pid then keeps the temp)


def _h8(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()[:8]


@functools.cache
def _boot_id() -> bytes:
    try:
        with open("/proc/sys/kernel/random/boot_id", "rb") as fh:
            return fh.read().strip()
    except OSError:
        return b""


def process_start(pid: int) -> str | None:
    """The start tag of the process ``pid`` as seen from here; None when no such process runs."""
    try:
        with open(f"/proc/{pid}/stat", "rb") as fh:
            raw = fh.read()
    except FileNotFoundError:
        return None
    except OSError:
        raw = b""
    if not raw:  # no /proc (not Linux): ask the kernel whether the pid exists at all
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            return None
        except OSError:
            pass  # EPERM: it exists, owned by someone else
        return UNKNOWN_START
    # the command name (field 2) is in parentheses and may hold spaces or ')': cut at the last one
    fields = raw[raw.rindex(b")") + 2 :].split()
    starttime = fields[19]  # field 22 of proc(5); fields[0] is field 3
    return _h8(_boot_id() + b"\0" + starttime)


@dataclass(frozen=True, slots=True)
class Owner:
    """One writer of temps: host, shard and process (see the module docstring)."""

    host: str
    shard_index: int
    shard_count: int
    pid: int
    start: str

    @classmethod
    def here(cls, shard_index: int = 0, shard_count: int = 1) -> Owner:
        """This process, as the owner of shard ``shard_index`` of ``shard_count``."""
        pid = os.getpid()
        return cls(_host(), shard_index, shard_count, pid, process_start(pid) or UNKNOWN_START)

    @property
    def tag(self) -> str:
        return f"{self.host}-{self.shard_index}of{self.shard_count}-{self.pid}-{self.start}"

    @classmethod
    def parse(cls, tag: str) -> Owner | None:
        m = _TAG.fullmatch(tag)
        if m is None:
            return None
        host, k, n, pid, start = m.groups()
        return cls(host, int(k), int(n), int(pid), start)

    def same_shard(self, other: Owner) -> bool:
        return (self.host, self.shard_index, self.shard_count) == (
            other.host,
            other.shard_index,
            other.shard_count,
        )

    def is_me(self, other: Owner) -> bool:
        return self.same_shard(other) and (self.pid, self.start) == (other.pid, other.start)

    def may_remove(self, other: Owner) -> bool:
        """May this owner's sweep remove ``other``'s temp? Its own, or ``other`` proven gone."""
        if self.is_me(other):
            return True
        if not self.same_shard(other):
            return False  # another host or another shard: never proven gone from here
        if other.pid == self.pid:
            return True  # our pid, another start: a previous life of this process id
        return process_start(other.pid) != other.start

    def may_take(self, tag: str | None) -> bool:
        """May this owner remove or reuse a temp whose name carries ``tag``?

        ``None`` is a temp of the old, unowned format: swept as it always was (a
        version mix on one directory therefore still loses an old writer's temps).
        """
        if tag is None:
            return True
        other = Owner.parse(tag)
        return other is None or self.may_remove(other)


def _host() -> str:
    return _h8(socket.gethostname().encode("utf-8", "surrogateescape"))


__all__ = ["UNKNOWN_START", "Owner", "process_start"]
