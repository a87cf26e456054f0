"""Helpers for the model-based test of the sync core (tests/faults/test_model.py).

The model is what S3 holds and what the events said, kept by the test as it
mutates the bucket; :func:`check_mirror` is the oracle of docs/reliability.md's
invariants after quiescence and one reconcile; :class:`FdAudit` compares the
process's open descriptors before and after an example; :class:`FdGuard` watches
every close of a temp file (closed under a thread still in a syscall on it,
closed twice, written after it closed); :class:`Disk` is a small ext4 filesystem
of the test's own that it can freeze (a stalled disk) or fill (ENOSPC).
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import platform
import shutil
import subprocess
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

MiB = 1024 * 1024


@dataclass
class KeyModel:
    """What the test knows about one key: S3's bytes now, every version it ever had, its last delete."""

    live: bytes | None = None
    versions: list[bytes] = field(default_factory=list)
    last_delete: int | None = None  # id of the event of the delete that made it absent
    delivered: set[int] = field(default_factory=set)  # ids of its events handed to the engine

    @property
    def remove_journaled(self) -> bool:
        """Absent in S3, and the event of that delete was accepted (journaled) by the engine."""
        return self.live is None and self.last_delete is not None and self.last_delete in self.delivered


def upload_parts(s3: Any, bucket: str, key: str, sizes: list[int], salt: str = "") -> tuple[bytes, str]:
    """A multipart upload with exactly these part sizes (unequal allowed); returns (body, ETag)."""
    up = s3.create_multipart_upload(Bucket=bucket, Key=key)
    chunks, done = [], []
    for n, size in enumerate(sizes, start=1):
        seed = hashlib.sha256(f"{key}|{salt}|{n}".encode()).digest()
        chunk = (seed * (size // 32 + 1))[:size]
        r = s3.upload_part(Bucket=bucket, Key=key, UploadId=up["UploadId"], PartNumber=n, Body=chunk)
        done.append({"PartNumber": n, "ETag": r["ETag"]})
        chunks.append(chunk)
    r = s3.complete_multipart_upload(
        Bucket=bucket, Key=key, UploadId=up["UploadId"], MultipartUpload={"Parts": done}
    )
    return b"".join(chunks), r["ETag"]


def check_mirror(
    got: dict[str, bytes], keys: dict[str, KeyModel], skipped: set[str], temps: list[str]
) -> list[str]:
    """The oracle (delete = false, after quiescence and one complete reconcile); the breaches found.

    - a key S3 holds is in the mirror with S3's bytes, unless the reconcile counted it
      as a skip (a key conflict: ``a`` and ``a/b`` cannot both be files);
    - a key whose delete event was journaled is not in the mirror (events always delete);
    - a key deleted without a delivered event may linger, but only with bytes it once had;
    - nothing else is in the mirror, and no temporary file is left.
    """
    problems = [f"temporary file left: {t}" for t in temps]
    for key, m in keys.items():
        held = got.get(key)
        if m.live is not None:
            if held != m.live and key not in skipped:
                what = "missing" if held is None else f"{len(held)} bytes, not S3's {len(m.live)}"
                problems.append(f"{key!r}: S3 holds {len(m.live)} bytes, mirror {what}")
        elif m.remove_journaled:
            if held is not None:
                problems.append(f"{key!r}: its delete event was journaled, yet the file is still there")
        elif held is not None and held not in m.versions:
            problems.append(f"{key!r}: lingering file with bytes the key never had")
    problems += [f"{k!r}: in the mirror, never in S3" for k in got if k not in keys]
    return problems


class FdAudit:
    """Open descriptors of this process, before and after an example: every kind, sockets included.

    S3 (moto and the fault proxy) runs in another process (support.model_remote), and
    the test closes its own boto3 client before the audit, so a descriptor opened
    during the example and still open after it is the product's: a temp, the state
    database, a mirror file, a socket or pipe the engine did not close.
    """

    def __init__(self) -> None:
        self.before = self.snapshot()

    @staticmethod
    def snapshot() -> dict[int, str]:
        out: dict[int, str] = {}
        for name in os.listdir("/proc/self/fd"):
            try:
                out[int(name)] = os.readlink(f"/proc/self/fd/{name}")
            except OSError:
                continue  # closed while we listed (the listing's own fd, say)
        return out

    def _new(self) -> dict[int, str]:
        after = self.snapshot()
        return {fd: t for fd, t in after.items() if self.before.get(fd) != t}

    def leaks(self, settle: float = 2.0) -> list[str]:
        """Descriptors still open after the example; one must stay open for ``settle`` seconds to count.

        The listing's own descriptor, and a connection the engine's closing
        transport is still shutting down, come and go: a descriptor is a leak only
        when it is still there, pointing at the same thing, a moment later.
        """
        new = self._new()
        end = time.monotonic() + settle
        while new and time.monotonic() < end:
            time.sleep(0.05)
            now = self._new()
            new = {fd: t for fd, t in new.items() if now.get(fd) == t}
        return [f"fd {fd} -> {t}" for fd, t in sorted(new.items())]


MARKER = ".s3sync-tmp-"

#: syscalls whose first argument is a file descriptor the thread reads, writes or syncs
_FD_SYSCALLS = {
    "x86_64": {0, 1, 17, 18, 19, 20, 74, 75, 77, 277, 285, 295, 296, 327, 328},
    "aarch64": {46, 47, 63, 64, 65, 66, 67, 68, 69, 70, 82, 83, 84, 286, 287},
}.get(platform.machine(), set())


def threads_on_fd(fd: int, *, skip: int | None = None) -> list[int]:
    """Threads of this process blocked in a read/write/sync syscall on ``fd`` right now."""
    out = []
    for tid in os.listdir("/proc/self/task"):
        if skip is not None and int(tid) == skip:
            continue
        try:
            with open(f"/proc/self/task/{tid}/syscall") as fh:
                fields = fh.read().split()
        except OSError:
            continue
        if len(fields) < 2 or not fields[0].isdigit():
            continue  # "running": not in a syscall
        if int(fields[0]) in _FD_SYSCALLS and int(fields[1], 16) == fd:
            out.append(int(tid))
    return out


class FdGuard:
    """Watches every close of a download's temp file in this process (``os.close`` wrapped).

    The moment a temp's descriptor is closed, an unrelated *sentinel* file of the
    test takes that very number (what SQLite, a socket or another worker's ``open``
    does in a busy daemon; here it is made certain instead of likely). Then:

    - a second close of the temp's fd closes the sentinel: recorded (closed twice);
    - a write that comes after the close (a cancelled part's thread) lands in the
      sentinel: its size after the example says so;
    - a thread still blocked in a read/write/sync syscall on the fd when it is
      closed (a stalled disk) is recorded: the file was closed under its writer.

    Nothing of the product is patched: only the C library call everyone uses, and
    only to hand a freed number to the sentinel and to look at threads.
    """

    def __init__(self, root: Path) -> None:
        self.root = root
        self.root.mkdir(parents=True, exist_ok=True)
        self.breaches: list[str] = []
        self.sentinels: dict[int, Path] = {}
        self.temp_closes = 0
        self._n = 0
        self._lock = threading.Lock()
        self._real: Callable[[int], None] = os.close

    def __enter__(self) -> FdGuard:
        os.close = self._close
        return self

    def __exit__(self, *exc: object) -> None:
        os.close = self._real

    def _target(self, fd: int) -> str:
        try:
            return os.readlink(f"/proc/self/fd/{fd}")
        except OSError:
            return ""

    def _close(self, fd: int) -> None:
        target = self._target(fd)
        with self._lock:
            sentinel = self.sentinels.get(fd)
            if sentinel is not None and target == str(sentinel):
                self.breaches.append(
                    f"fd {fd} closed again after its temp was closed (it was {sentinel.name})"
                )
                del self.sentinels[fd]
                self._real(fd)
                return
            if MARKER not in os.path.basename(target):
                self._real(fd)
                return
            self.temp_closes += 1
            users = threads_on_fd(fd, skip=threading.get_native_id())
            if users:
                self.breaches.append(
                    f"temp {os.path.basename(target)} closed while thread(s) {users} were in a syscall on it"
                )
            self._real(fd)
            self._n += 1
            path = self.root / f"sentinel-{self._n}"
            s = os.open(path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
            if s == fd:
                self.sentinels[fd] = path
            else:  # another thread took the number first: natural reuse, nothing to watch
                self._real(s)

    def check(self) -> list[str]:
        """After the example: each sentinel still holds its number and no byte; all closed."""
        with self._lock:
            problems = list(self.breaches)
            for fd, path in sorted(self.sentinels.items()):
                if self._target(fd) != str(path):
                    problems.append(
                        f"fd {fd} (a closed temp's number, given to {path.name}) closed by someone"
                    )
                else:
                    self._real(fd)
                size = path.stat().st_size
                if size:
                    problems.append(
                        f"{size} bytes written into an unrelated file after the temp on its fd closed"
                    )
            self.sentinels.clear()
            self.breaches.clear()
        return problems


def _run(*cmd: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(cmd, capture_output=True, text=True, check=False)


class Disk:
    """A small ext4 filesystem on a loop device (root only): freeze it (writes block) or fill it (ENOSPC)."""

    def __init__(self, image: Path, mnt: Path, size: int = 128 * MiB) -> None:
        self.image, self.mnt, self.size = image, mnt, size
        self.filler = mnt / "filler"
        self.why_not = self._mount()

    def _mount(self) -> str | None:
        if os.geteuid() != 0:
            return "needs root (mount, losetup, fsfreeze)"
        if shutil.which("mkfs.ext4") is None or shutil.which("fsfreeze") is None:
            return "needs mkfs.ext4 and fsfreeze"
        self.mnt.mkdir(parents=True, exist_ok=True)
        with self.image.open("wb") as fh:
            fh.truncate(self.size)
        r = _run("mkfs.ext4", "-q", "-F", "-m", "0", str(self.image))
        if r.returncode != 0:
            return f"mkfs.ext4: {(r.stderr or r.stdout).strip()}"
        r = _run("mount", "-o", "loop", str(self.image), str(self.mnt))
        if r.returncode != 0:
            return f"cannot mount a loop device here: {(r.stderr or r.stdout).strip()}"
        return None

    @property
    def ok(self) -> bool:
        return self.why_not is None

    def unmount(self) -> None:
        if self.ok:
            _run("fsfreeze", "-u", str(self.mnt))
            _run("umount", "-l", str(self.mnt))

    @contextlib.contextmanager
    def frozen(self, at_most: float = 30.0) -> Iterator[None]:
        """Writes to the filesystem block until the block ends (or ``at_most`` seconds: a safety thaw)."""
        r = _run("fsfreeze", "-f", str(self.mnt))
        if r.returncode != 0:
            raise RuntimeError(f"fsfreeze: {(r.stderr or r.stdout).strip()}")
        timer = threading.Timer(at_most, _run, ("fsfreeze", "-u", str(self.mnt)))
        timer.start()
        try:
            yield
        finally:
            timer.cancel()
            _run("fsfreeze", "-u", str(self.mnt))

    @contextlib.contextmanager
    def full(self, headroom: int) -> Iterator[None]:
        """All but ``headroom`` free bytes taken by a filler file until the block ends."""
        st = os.statvfs(self.mnt)
        take = st.f_bavail * st.f_frsize - headroom
        fd = os.open(self.filler, os.O_WRONLY | os.O_CREAT, 0o600)
        try:
            if take > 0:
                os.posix_fallocate(fd, 0, take)
        finally:
            os.close(fd)
        try:
            yield
        finally:
            self.filler.unlink(missing_ok=True)
