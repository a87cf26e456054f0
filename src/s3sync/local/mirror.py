"""The local side: atomic file writes, deletes, temp sweeping and sorted walks.

A reader of the mirror must never see a partial file. Every download goes to a
temporary sibling (same directory, so the rename is atomic), is verified,
optionally fsynced, given the object's LastModified as mtime, renamed into
place, and the directory is fsynced so the rename survives a power loss.

Every operation goes through :class:`~s3sync.local.safefs.SafeFS`: relative to
directory fds walked down from ``local_dir`` without following links, so a
symlink on a key's path makes the key a ``symlink`` skip and nothing outside
the mirror is created, changed or removed. With ``backup_dir`` set, a file a
delete or an overwrite would destroy is moved (or linked) to the backup tree
first. All functions here are blocking and meant to run in a worker thread.
"""

from __future__ import annotations

import contextlib
import errno
import os
import threading
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from s3sync.errors import KeyConflictError, LocalIOError, S3SyncError, UnsafeKeyError
from s3sync.local.backup import Backups
from s3sync.local.dirsync import BatchDirs
from s3sync.local.keys import KeyMapper, is_temp_name, temp_owner
from s3sync.local.owner import Owner
from s3sync.local.safefs import CaseConflictError, CaseProbe, DirSync, SafeFS, SymlinkError
from s3sync.local.temps import TempClosedError, TempFile

__all__ = ["DirSync", "LocalStat", "Mirror", "SymlinkError", "TempClosedError", "TempFile"]


@dataclass(frozen=True, slots=True)
class LocalStat:
    size: int
    mtime: float


class Mirror:
    """Owns ``local_dir``; every path comes from :class:`KeyMapper`, every call from SafeFS."""

    def __init__(
        self,
        root: Path,
        *,
        fsync: bool = True,
        backup_dir: Path | None = None,
        owner: Owner | None = None,
    ) -> None:
        self.fs = SafeFS(root)
        self.mapper = KeyMapper(root, name_max=self.fs.name_max)
        self.root = self.mapper.root
        self.fsync = fsync
        self.backups = Backups(backup_dir) if backup_dir is not None else None
        self.case: CaseProbe = CaseProbe(case_sensitive=True, normalization_sensitive=True)
        #: whose temps this process writes (host, shard, process): names carry it, sweeps read it
        self.owner = owner or Owner.here()
        self._open: set[TempFile] = set()
        self._lock = threading.Lock()

    def claim(self, index: int, count: int) -> None:
        """This process writes for shard ``index`` of ``count`` (``--shard K/N``): its temps say so."""
        self.owner = Owner.here(index, count)

    @property
    def open_temps(self) -> int:
        """Temps created or reopened and not yet committed, discarded or released (audits, tests)."""
        with self._lock:
            return len(self._open)

    def ensure_root(self) -> None:
        self.fs.ensure_root()
        self.fs.reset_name_max()
        self.mapper.name_max = self.fs.name_max

    def probe_case(self) -> CaseProbe:
        """Ask the filesystem (once, at start) whether it folds case or Unicode forms."""
        self.case = self.fs.probe_case()
        return self.case

    def is_writable(self) -> bool:
        try:
            self.ensure_root()
        except OSError:
            return False
        return os.access(self.root, os.W_OK | os.X_OK)

    # -- writing -----------------------------------------------------------
    def new_temp(self, key: str, dirs: BatchDirs | None = None) -> TempFile:
        """Create the temp sibling for ``key``, named for this process (:attr:`owner`).

        Write through the returned :class:`TempFile`, never reopen it by path; end
        it with :meth:`commit`, :meth:`discard` or :meth:`release`. ``dirs`` (a group
        commit's batch) lends the directory, opened once per batch, and what sits at
        the final name is checked by the rename alone (:meth:`SafeFS.replace` refuses
        a link or a directory; the temp is then removed): per file two ``openat``, a
        ``close`` and an ``fstatat`` less.
        """
        parts = tuple(self.mapper.parts(key))
        self._check_spelling(parts, key)
        own = dirs is None
        if dirs is None:
            dirfd = self.fs.open_dir(parts[:-1], create=True, key=key)
        else:
            dirfd = dirs.open(self.fs, parts[:-1], key)
        try:
            if own:
                self.fs.check_replaceable(dirfd, parts[-1], key)
            name, fd = self.fs.create_temp(dirfd, parts[-1], owner=self.owner.tag)
        except BaseException as exc:
            if own:
                os.close(dirfd)
            if isinstance(exc, OSError):
                raise _local_error(exc, key) from exc
            raise
        return self._track(TempFile(self.root, key, parts, dirfd, name, fd, self._forget, owns_dir=own))

    def reopen_temp(self, key: str, name: str) -> TempFile:
        """Open the resumable temp ``name`` of ``key`` (:mod:`s3sync.local.sidecars`) like :meth:`new_temp`.

        Refused when its owner may still run; a gone owner's temp is first renamed to
        carry ours (no sweep may then take it for an orphan): see :attr:`TempFile.name`.
        """
        if not is_temp_name(name):
            raise LocalIOError(f"{key!r}: {name!r} is not a temporary file name")
        if not self.may_take(name):
            raise LocalIOError(f"{key!r}: {name!r} belongs to a process that may still be running")
        parts = tuple(self.mapper.parts(key))
        try:
            dirfd = self.fs.open_dir(parts[:-1], key=key)
        except OSError as exc:
            raise _local_error(exc, key) from exc
        try:
            fd = os.open(name, os.O_RDWR | os.O_NOFOLLOW | os.O_CLOEXEC, dir_fd=dirfd)
        except OSError as exc:
            os.close(dirfd)
            raise _local_error(exc, key) from exc
        try:
            if temp_owner(name) != self.owner.tag:
                name = self.fs.adopt_temp(dirfd, name, parts[-1], owner=self.owner.tag)
        except OSError as exc:
            os.close(fd)
            os.close(dirfd)
            raise _local_error(exc, key) from exc
        return self._track(TempFile(self.root, key, parts, dirfd, name, fd, self._forget))

    def may_take(self, name: str) -> bool:
        """May this process remove or reuse the temp ``name``? (:meth:`Owner.may_take`)"""
        return self.owner.may_take(temp_owner(name))

    def _track(self, temp: TempFile) -> TempFile:
        with self._lock:
            self._open.add(temp)
        return temp

    def _forget(self, temp: TempFile) -> None:
        with self._lock:
            self._open.discard(temp)

    def release(self, temp: TempFile) -> None:
        """Close a temp but keep it on disk (a resumable download that stopped half-way)."""
        if temp._end():
            with contextlib.suppress(OSError):  # a failing close: the temp stays on disk either way
                temp._finish("released")

    def commit(
        self,
        temp: TempFile,
        mtime: float | None,
        *,
        dirsync: DirSync | None = None,
        synced: bool = False,
    ) -> None:
        """fsync, set mtime, close, (back up what it replaces,) rename, fsync the directory.

        ``dirsync`` defers the directory fsync to the caller's batch (group
        durability: :meth:`DirSync.flush` once for many commits); without it the
        directory is fsynced here when ``fsync`` is on. ``synced`` says the caller
        already fsynced the temp (local.groupcommit fsyncs a batch in parallel): a
        second fsync is not free — ext4 still flushes the disk cache for it.

        The temp is ended either way: in place, or (on any failure) closed and
        removed — a caller's later :meth:`discard` or :meth:`release` is a no-op.
        Waits for threads still inside :meth:`TempFile.use` first.
        """
        if not temp._end():
            raise LocalIOError(f"{temp.final}: temporary file already {temp.state}")
        t = temp
        state = "discarded"
        try:
            fd = t._fd
            if self.fsync and not synced:
                os.fsync(fd)
            if mtime is not None:
                os.utime(fd, (mtime, mtime))
            t._close_fd()
            if self.backups is not None and self.fs.check_replaceable(t._dirfd, t.parts[-1], t.key):
                self.backups.keep(t._dirfd, t.parts[-1], t.parts, key=t.key, move=False)
            self.fs.replace(t._dirfd, t.name, t.parts[-1], key=t.key)
            state = "committed"
            if self.fsync:
                if dirsync is not None:
                    dirsync.add(t._dirfd)
                else:
                    self.fs.fsync_dir(t._dirfd)
        except (OSError, S3SyncError) as exc:
            if state != "committed":
                self.fs.unlink_quiet(t._dirfd, t.name)
            if isinstance(exc, OSError):
                raise _local_error(exc, t.key) from exc
            raise
        finally:
            with contextlib.suppress(OSError):  # a failing close (NFS): the error above or the rename stands
                t._finish(state)

    def discard(self, temp: TempFile) -> None:
        """Close and remove a temp (a failed download); a no-op when it was ended already."""
        if temp._end():
            with contextlib.suppress(OSError):
                temp._close_fd()
            self.fs.unlink_quiet(temp._dirfd, temp.name)
            temp._finish("discarded")

    # -- reading / deleting -----------------------------------------------
    def stat(self, key: str) -> LocalStat | None:
        """Size and mtime of the regular file for ``key``, or None."""
        return self.stat_many([key])[0]

    def stat_many(self, keys: list[str]) -> list[LocalStat | None]:
        many: list[tuple[str, ...] | None] = []
        for key in keys:
            try:
                many.append(self.mapper.parts(key))
            except (UnsafeKeyError, ValueError):
                many.append(None)
        out: list[LocalStat | None] = []
        for st in self.fs.stat_many(many):
            regular = st is not None and (st.st_mode & 0o170000) == 0o100000
            out.append(LocalStat(st.st_size, st.st_mtime) if st is not None and regular else None)
        return out

    def open_read(self, key: str) -> int:
        """A read-only fd of the file for ``key`` (never through a link); FileNotFoundError if none."""
        return self.fs.open_file(self.mapper.parts(key), key=key)

    def _check_spelling(self, parts: tuple[str, ...] | list[str], key: str) -> None:
        """On a folding filesystem, refuse a key whose path exists under another spelling.

        ``a.txt`` would otherwise overwrite (or delete) the file of ``A.txt``: the
        key that is there first keeps it (the reconcile's case policy makes that
        the first in key order), the other is a ``case_conflict`` skip.
        """
        if self.case.folds and (other := self.fs.other_spelling(parts)) is not None:
            raise CaseConflictError(
                f"{key!r}: the filesystem already holds {other!r}, which differs only by case or "
                "Unicode normalisation; the first in key order wins"
            )

    def delete(self, key: str) -> bool:
        """Remove (or, with a backup dir, move away) the file for ``key``; True if it existed."""
        parts = self.mapper.parts(key)
        self._check_spelling(parts, key)
        backups = self.backups

        def away(dirfd: int, name: str) -> None:
            assert backups is not None
            backups.keep(dirfd, name, parts, key=key, move=True)

        return self.fs.remove(parts, key=key, move_away=away if backups is not None else None)

    def sweep_temps(self, keep: frozenset[str] = frozenset()) -> int:
        """Delete temporaries left by a crash, but those named in ``keep`` (resumable); returns how many.

        Only temps this process may take (:meth:`may_take`): its own, those of a
        process proven gone (same host and shard, that pid no longer running that
        process), and old-format temps without an owner, swept as they always were.
        Another host's or another shard's temps are that owner's to sweep.
        """
        return self.fs.sweep(lambda name: is_temp_name(name) and name not in keep and self.may_take(name))

    def walk_sorted(self, prefix: str = "", after: str | None = None) -> Iterator[tuple[str, os.stat_result]]:
        """Mirror files as (key, lstat) in S3 key order, skipping state, temps and links."""
        return self.fs.walk_sorted(prefix, after)


def _local_error(exc: OSError, what: str) -> LocalIOError | KeyConflictError | UnsafeKeyError:
    if exc.errno in (errno.EISDIR, errno.ENOTDIR, errno.EEXIST):
        return KeyConflictError(f"{what}: {exc.strerror}")
    if exc.errno == errno.ENAMETOOLONG:
        return UnsafeKeyError(f"{what}: a path segment is longer than the filesystem's name limit")
    if exc.errno == errno.ELOOP:
        return SymlinkError(f"{what}: the local path is a symlink; not followed")
    return LocalIOError(f"{what}: {exc.strerror or exc}")
