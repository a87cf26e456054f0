"""Resumable big downloads: the sidecar on disk that survives SIGKILL and reboots.

The on-disk store (records, their files under the mirror's state directory); the
download's side of resuming is :mod:`s3sync.sync.transfer.resume`.

An object at least ``sync.resume_min_mb`` large is fetched by the ranged path
into a preallocated temp next to its final name, as before. Alongside, a small
JSON *sidecar* records what the bytes on disk are: bucket, key, ETag (and
version id), size, part size, the temp's name and the byte ranges known to be
complete. After a crash the next attempt for that key loads the sidecar; when
the object's ETag (and size, and version) are unchanged it keeps those ranges
and fetches only the rest; otherwise it discards temp and sidecar and starts
over. The integrity check at the end re-reads the whole temp either way, so a
lying sidecar costs a re-download, never a bad file.

Why the sidecars live in ``<mirror>/.s3sync/resume/`` and not next to the temp:
the state directory is already reserved (no key can map into it), never
walked, never served, and on the same filesystem as the mirror, so the mirror
tree keeps containing only complete files and temps and no new name pattern
has to be reserved against keys. Each sidecar is named by a hash of
bucket and key.

Durability order, so a sidecar never claims bytes that are not on disk: the
caller snapshots the written frontiers, ``fdatasync``\\s the temp, then
:meth:`ResumeStore.save` writes the sidecar atomically (temp file, fsync,
rename, fsync of the directory). :func:`sync_and_save` does those two steps.

At start, :meth:`ResumeStore.sweep` decides what survives: a temp named by a
valid, recent sidecar is kept (it is resumable); sidecars that do not parse,
name a missing or wrong-sized temp, or are older than ``max_age`` are removed,
and every temp not in the returned set is the mirror sweep's to delete (if it
may: :meth:`s3sync.local.mirror.Mirror.may_take`).

A sidecar being written is ``<name>.json.partial-<owner>-<hex>``: N hosts share
the resume directory (docs/scale.md), so the sweep removes only half-written
sidecars of its own owner or of one proven gone (``may_take``, the rule the temps
follow), and old-format ``.partial-<hex>`` ones as before. A temp is never
unlinked here unless ``may_take`` allows it.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import secrets
import stat
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from s3sync.errors import UnsafeKeyError
from s3sync.local.keys import STATE_DIR_NAME, check_key, is_temp_name
from s3sync.local.owner import Owner
from s3sync.model import normalize_etag

FORMAT = 1
RESUME_DIR = "resume"
DEFAULT_MAX_AGE = 7 * 86400.0
_SUFFIX = ".json"
_PARTIAL = ".partial-"
_PARTIAL_RE = re.compile(
    r"[0-9a-f]{40}\.json\.partial-(?:(?P<owner>[0-9a-f]{8}-\d+of\d+-\d+-[0-9a-f]{8})-)?[0-9a-f]+"
)


class InvalidSidecar(ValueError):
    """A sidecar that does not describe a usable temp (reason in the message)."""


@dataclass(slots=True)
class ResumeRecord:
    """What a resumable temp holds. ``done`` is sorted, merged, half-open ``[lo, hi)`` ranges."""

    bucket: str
    key: str
    etag: str
    size: int
    part_size: int
    temp_name: str
    version_id: str | None = None
    done: list[tuple[int, int]] = field(default_factory=list)
    updated_at: float = 0.0

    @property
    def completed(self) -> int:
        return sum(hi - lo for lo, hi in self.done)

    def add(self, lo: int, hi: int) -> None:
        """Mark ``[lo, hi)`` as written (and synced by the caller); merges neighbours."""
        if not 0 <= lo <= hi <= self.size:
            raise ValueError(f"range [{lo}, {hi}) outside object of {self.size} bytes")
        if lo == hi:
            return
        merged: list[tuple[int, int]] = []
        for a, b in sorted([*self.done, (lo, hi)]):
            if merged and a <= merged[-1][1]:
                merged[-1] = (merged[-1][0], max(merged[-1][1], b))
            else:
                merged.append((a, b))
        self.done = merged

    def missing(self, part_size: int | None = None) -> list[tuple[int, int]]:
        """The ranges still to fetch, as inclusive ``(lo, hi)`` pairs (HTTP Range style).

        Each gap is cut at multiples of ``part_size`` (default: the recorded
        one), so the ranged path keeps its usual part boundaries.
        """
        step = part_size or self.part_size
        out: list[tuple[int, int]] = []
        pos = 0
        for lo, hi in [*self.done, (self.size, self.size)]:
            while pos < lo:
                end = min(lo, (pos // step + 1) * step)
                out.append((pos, end - 1))
                pos = end
            pos = max(pos, hi)
        return out

    def matches(self, etag: str | None, size: int, version_id: str | None) -> str | None:
        """None when the object is the one the temp holds, else why not."""
        if normalize_etag(etag) != self.etag:
            return "etag_changed"
        if size != self.size:
            return "size_changed"
        if (version_id or None) != self.version_id:
            return "version_changed"
        return None

    def to_json(self) -> bytes:
        doc = {
            "format": FORMAT,
            "bucket": self.bucket,
            "key": self.key,
            "etag": self.etag,
            "version_id": self.version_id,
            "size": self.size,
            "part_size": self.part_size,
            "temp": self.temp_name,
            "done": [list(r) for r in self.done],
            "updated_at": self.updated_at,
        }
        return json.dumps(doc, separators=(",", ":"), ensure_ascii=False).encode()

    @classmethod
    def from_json(cls, raw: bytes) -> ResumeRecord:
        """Parse and validate strictly: anything unexpected is an :class:`InvalidSidecar`."""
        try:
            doc = json.loads(raw)
        except (ValueError, UnicodeDecodeError) as exc:
            raise InvalidSidecar(f"not JSON: {exc}") from None
        if not isinstance(doc, dict) or doc.get("format") != FORMAT:
            raise InvalidSidecar("not a format-1 sidecar")
        bucket, key, etag = _str(doc, "bucket"), _str(doc, "key"), _str(doc, "etag")
        temp = _str(doc, "temp")
        version = doc.get("version_id")
        if version is not None and not isinstance(version, str):
            raise InvalidSidecar("version_id is not a string")
        size, part = _int(doc, "size"), _int(doc, "part_size")
        updated = doc.get("updated_at")
        if not etag or part <= 0 or not isinstance(updated, int | float) or isinstance(updated, bool):
            raise InvalidSidecar("empty etag, bad part_size or updated_at")
        if "/" in temp or not is_temp_name(temp):
            raise InvalidSidecar(f"{temp!r} is not a temp file name")
        try:
            check_key(key)  # a tampered key must not point the temp outside the mirror
        except UnsafeKeyError as exc:
            raise InvalidSidecar(f"unsafe key: {exc}") from None
        done = doc.get("done")
        if not isinstance(done, list):
            raise InvalidSidecar("done is not a list")
        ranges: list[tuple[int, int]] = []
        prev = 0
        for item in done:
            if (
                not isinstance(item, list)
                or len(item) != 2
                or not all(isinstance(v, int) and not isinstance(v, bool) for v in item)
            ):
                raise InvalidSidecar("a done range is not [lo, hi]")
            lo, hi = item
            if not prev <= lo < hi <= size:
                raise InvalidSidecar("done ranges overlap, are unsorted or outside the object")
            ranges.append((lo, hi))
            prev = hi
        return cls(bucket, key, etag, size, part, temp, version, ranges, float(updated))


def _str(doc: dict[str, Any], name: str) -> str:
    v = doc.get(name)
    if not isinstance(v, str):
        raise InvalidSidecar(f"{name} is not a string")
    return v


def _int(doc: dict[str, Any], name: str) -> int:
    v = doc.get(name)
    if not isinstance(v, int) or isinstance(v, bool) or v < 0:
        raise InvalidSidecar(f"{name} is not a non-negative integer")
    return v


class ResumeStore:
    """The sidecars of one mirror and bucket. Blocking: call from a worker thread."""

    def __init__(
        self,
        root: Path,
        bucket: str,
        *,
        fsync: bool = True,
        max_age: float = DEFAULT_MAX_AGE,
        clock: Callable[[], float] = time.time,
        owner: Callable[[], Owner] | None = None,
        may_take: Callable[[str], bool] | None = None,
    ) -> None:
        self.root = Path(os.path.abspath(root))
        self.bucket = bucket
        self.dir: Path = self.root / STATE_DIR_NAME / RESUME_DIR
        self.fsync = fsync
        self.max_age = max_age
        self._clock = clock
        here = Owner.here()
        #: whose half-written sidecars these are (the mirror's owner: host, shard, process)
        self._owner: Callable[[], Owner] = owner or (lambda: here)
        #: may this process remove (or reuse) the temp of that name? (Mirror.may_take)
        self._may_take: Callable[[str], bool] = may_take or (lambda name: True)

    # -- paths ---------------------------------------------------------------
    def sidecar_path(self, key: str) -> Path:
        digest = hashlib.sha256(f"{self.bucket}\0{key}".encode("utf-8", "surrogatepass")).hexdigest()
        return self.dir / f"{digest[:40]}{_SUFFIX}"

    def temp_path(self, record: ResumeRecord) -> Path:
        """Where the record's temp lives: next to the key's final path, never elsewhere."""
        parts = record.key.split("/")
        return self.root.joinpath(*parts[:-1], record.temp_name)

    # -- lifecycle -------------------------------------------------------------
    def begin(
        self,
        key: str,
        *,
        etag: str,
        size: int,
        part_size: int,
        temp: Path,
        version_id: str | None = None,
    ) -> ResumeRecord:
        """Record a fresh temp (nothing done yet) and write its sidecar."""
        norm = normalize_etag(etag)
        if not norm:
            raise ValueError("a resumable download needs an ETag")
        rec = ResumeRecord(self.bucket, key, norm, size, part_size, temp.name, version_id or None)
        if self.temp_path(rec) != Path(os.path.abspath(temp)):
            raise ValueError(f"temp {temp} is not next to the final path of {key!r}")
        self.save(rec)
        return rec

    def load(
        self, key: str, *, etag: str | None, size: int, version_id: str | None = None
    ) -> tuple[ResumeRecord | None, str]:
        """The record to resume from, or None, with the reason for logs and metrics.

        Reasons: ``resumed``, ``none`` (no sidecar), ``invalid`` (unreadable or
        its temp is missing or the wrong size), or the mismatch from
        :meth:`ResumeRecord.matches`. Anything but ``resumed`` leaves neither
        the sidecar nor the temp behind.
        """
        path = self.sidecar_path(key)
        try:
            rec = self._read(path)
        except FileNotFoundError:
            return None, "none"
        except (OSError, InvalidSidecar):
            _unlink(path)
            return None, "invalid"
        if rec.key != key or rec.bucket != self.bucket or not self._temp_ok(rec):
            self._drop(path, rec if rec.key == key else None)
            return None, "invalid"
        why = rec.matches(etag, size, version_id)
        if why is not None:
            self._drop(path, rec)
            return None, why
        return rec, "resumed"

    def save(self, record: ResumeRecord) -> None:
        """Write the sidecar atomically (and durably when ``fsync``)."""
        record.updated_at = float(self._clock())
        self.dir.mkdir(parents=True, exist_ok=True)
        final = self.sidecar_path(record.key)
        tmp = self.dir / f"{final.name}{_PARTIAL}{self._owner().tag}-{secrets.token_hex(4)}"
        data = record.to_json()
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC | os.O_NOFOLLOW, 0o600)
        try:
            view = memoryview(data)
            while view:
                view = view[os.write(fd, view) :]
            if self.fsync:
                os.fsync(fd)
        except BaseException:
            os.close(fd)
            _unlink(tmp)
            raise
        os.close(fd)
        try:
            os.replace(tmp, final)
        except BaseException:
            _unlink(tmp)
            raise
        if self.fsync:
            _fsync_dir(self.dir)

    def finish(self, key: str) -> None:
        """The download committed: its sidecar goes (the temp was renamed into place)."""
        _unlink(self.sidecar_path(key))

    def discard(self, record: ResumeRecord) -> None:
        """Give up on a temp (changed object, failed integrity check): temp and sidecar go."""
        self._drop(self.sidecar_path(record.key), record)

    def sweep(self) -> set[Path]:
        """At start: the temps to keep (valid, recent sidecars); remove every other sidecar."""
        keep: set[Path] = set()
        try:
            entries = list(os.scandir(self.dir))
        except OSError:
            return keep
        now = float(self._clock())
        for entry in entries:
            path = Path(entry.path)
            if not entry.name.endswith(_SUFFIX) or not entry.is_file(follow_symlinks=False):
                if self._partial_ours(entry.name):
                    _unlink(path)  # half-written sidecars (ours, a gone owner's, old-format) and strays
                continue
            try:
                rec = self._read(path)
            except (OSError, InvalidSidecar):
                _unlink(path)
                continue
            if (
                rec.bucket != self.bucket
                or path != self.sidecar_path(rec.key)
                or now - rec.updated_at > self.max_age
                or not self._temp_ok(rec)
            ):
                _unlink(path)  # its temp, if any, is not kept: the mirror sweep removes it
                continue
            keep.add(self.temp_path(rec))
        return keep

    # -- internals -------------------------------------------------------------
    def _read(self, path: Path) -> ResumeRecord:
        fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC | os.O_NOFOLLOW)
        try:
            if not stat.S_ISREG(os.fstat(fd).st_mode) or os.fstat(fd).st_size > 1024 * 1024:
                raise InvalidSidecar("not a small regular file")
            raw = b""
            while chunk := os.read(fd, 65536):
                raw += chunk
        finally:
            os.close(fd)
        return ResumeRecord.from_json(raw)

    def _temp_ok(self, rec: ResumeRecord) -> bool:
        """The temp exists as a regular file (not a symlink) of the object's full size."""
        try:
            st = os.lstat(self.temp_path(rec))
        except (OSError, ValueError):
            return False
        return stat.S_ISREG(st.st_mode) and st.st_size == rec.size

    def _partial_ours(self, name: str) -> bool:
        """May the sweep remove this non-sidecar entry? Not another live owner's sidecar in the making."""
        m = _PARTIAL_RE.fullmatch(name)
        if m is None or m.group("owner") is None:
            return True  # a stray, or a half-written sidecar of the old, unowned format
        other = Owner.parse(m.group("owner"))
        return other is None or self._owner().may_remove(other)

    def _drop(self, sidecar: Path, rec: ResumeRecord | None) -> None:
        if rec is not None and self._may_take(rec.temp_name):
            try:
                temp = self.temp_path(rec)
                if stat.S_ISREG(os.lstat(temp).st_mode):
                    _unlink(temp)
            except (OSError, ValueError):
                pass
        _unlink(sidecar)


def sync_and_save(store: ResumeStore, record: ResumeRecord, fd: int) -> None:
    """Make the temp's bytes durable, *then* let the sidecar claim them."""
    if store.fsync:
        os.fdatasync(fd)
    store.save(record)


def _fsync_dir(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _unlink(path: Path) -> None:
    try:
        os.unlink(path)
    except OSError:
        pass


__all__ = ["InvalidSidecar", "ResumeRecord", "ResumeStore", "sync_and_save"]
