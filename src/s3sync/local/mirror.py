"""The local side: atomic file writes, deletes, temp sweeping and sorted walks.

A reader of the mirror must never see a partial file. Every download goes to a
temporary sibling (same directory, so ``os.replace`` is atomic), is verified,
optionally fsynced, given the object's LastModified as mtime, and only then
renamed into place. Temporaries are removed on failure and swept at start.
All functions here are blocking and meant to run in a worker thread.
"""

from __future__ import annotations

import errno
import os
import secrets
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from s3sync.errors import KeyConflictError, LocalIOError, UnsafeKeyError
from s3sync.local.keys import STATE_DIR_NAME, KeyMapper, is_temp_name, temp_name_for


@dataclass(frozen=True, slots=True)
class LocalStat:
    size: int
    mtime: float


class Mirror:
    """Owns ``local_dir``; every path comes from :class:`KeyMapper`."""

    def __init__(self, root: Path, *, fsync: bool = True) -> None:
        self.mapper = KeyMapper(root)
        self.root = self.mapper.root
        self.fsync = fsync
        # directories known to exist: saves a mkdir+stat per file on cold syncs (pruned on delete)
        self._dirs: set[Path] = set()

    def ensure_root(self) -> None:
        self.root.mkdir(parents=True, exist_ok=True)

    def is_writable(self) -> bool:
        try:
            self.ensure_root()
        except OSError:
            return False
        return os.access(self.root, os.W_OK | os.X_OK)

    # -- writing -----------------------------------------------------------
    def _prepare_parent(self, path: Path, key: str) -> None:
        parent = path.parent
        if parent in self._dirs:
            return  # created by us before; a conflict would still surface at os.replace
        try:
            parent.mkdir(parents=True, exist_ok=True)
        except (FileExistsError, NotADirectoryError) as exc:
            raise KeyConflictError(
                f"a parent of {key!r} exists locally as a file (key collides with a directory)"
            ) from exc
        except OSError as exc:
            raise LocalIOError(f"cannot create directory for {key!r}: {exc.strerror}") from exc
        if path.is_dir():
            raise KeyConflictError(f"{key!r} exists locally as a directory (a/ next to a/b)")
        if len(self._dirs) > 100_000:
            self._dirs.clear()
        self._dirs.add(parent)

    def new_temp(self, key: str) -> tuple[Path, Path, int]:
        """Create the temp sibling for ``key``: returns (final, temp, fd)."""
        final = self.mapper.to_path(key)
        self._prepare_parent(final, key)
        temp = final.parent / temp_name_for(final.name, secrets.token_hex(4))
        flags = os.O_RDWR | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC
        try:
            fd = os.open(temp, flags, 0o644)
        except FileNotFoundError:
            # the directory vanished behind our back (our cache said it existed): make it again
            self._dirs.discard(final.parent)
            self._prepare_parent(final, key)
            try:
                fd = os.open(temp, flags, 0o644)
            except OSError as exc:
                raise _local_error(exc, key) from exc
        except OSError as exc:
            raise _local_error(exc, key) from exc
        return final, temp, fd

    def commit(self, fd: int, temp: Path, final: Path, mtime: float | None) -> None:
        """fsync, set mtime, close and rename into place; the temp is gone either way."""
        try:
            if self.fsync:
                os.fsync(fd)
            os.close(fd)
            fd = -1
            if mtime is not None:
                os.utime(temp, (mtime, mtime))
            os.replace(temp, final)
        except OSError as exc:
            if fd >= 0:
                os.close(fd)
            _unlink_quiet(temp)
            if exc.errno in (errno.EISDIR, errno.ENOTEMPTY):
                raise KeyConflictError(f"{final} exists locally as a directory") from exc
            raise _local_error(exc, str(final)) from exc

    def discard(self, fd: int, temp: Path) -> None:
        if fd >= 0:
            try:
                os.close(fd)
            except OSError:
                pass
        _unlink_quiet(temp)

    def write_bytes(self, key: str, data: bytes | bytearray | memoryview, mtime: float | None) -> None:
        """Small objects: one open/write/fsync/rename, in one thread hop."""
        final, temp, fd = self.new_temp(key)
        try:
            view = memoryview(data)
            while view:
                n = os.write(fd, view)
                view = view[n:]
        except OSError as exc:
            self.discard(fd, temp)
            raise _local_error(exc, key) from exc
        self.commit(fd, temp, final, mtime)

    # -- reading / deleting -----------------------------------------------
    def stat(self, key: str) -> LocalStat | None:
        """Size and mtime of the regular file for ``key``, or None."""
        return self.stat_many([key])[0]

    def stat_many(self, keys: list[str]) -> list[LocalStat | None]:
        out: list[LocalStat | None] = []
        for key in keys:
            try:
                st = os.stat(self.mapper.to_path(key))
            except (OSError, ValueError, UnsafeKeyError):
                out.append(None)
                continue
            out.append(LocalStat(st.st_size, st.st_mtime) if (st.st_mode & 0o170000) == 0o100000 else None)
        return out

    def delete(self, key: str) -> bool:
        """Remove the file for ``key`` and prune now-empty parents; True if it existed."""
        path = self.mapper.to_path(key)
        try:
            if path.is_dir():
                raise KeyConflictError(f"{key!r} is a directory locally; not deleting it")
            path.unlink()
        except FileNotFoundError:
            return False
        except NotADirectoryError:
            return False
        except OSError as exc:
            raise _local_error(exc, key) from exc
        self._prune(path.parent)
        return True

    def _prune(self, directory: Path) -> None:
        while directory != self.root and self.root in directory.parents:
            self._dirs.discard(directory)
            try:
                directory.rmdir()
            except OSError:
                return
            directory = directory.parent

    def sweep_temps(self) -> int:
        """Delete temporaries left by a crash; returns how many."""
        removed = 0
        if not self.root.exists():
            return 0
        for dirpath, dirnames, filenames in os.walk(self.root):
            if Path(dirpath) == self.root and STATE_DIR_NAME in dirnames:
                dirnames.remove(STATE_DIR_NAME)
            for name in filenames:
                if is_temp_name(name):
                    _unlink_quiet(Path(dirpath) / name)
                    removed += 1
        return removed

    def walk_sorted(self, prefix: str = "", after: str | None = None) -> Iterator[tuple[str, os.stat_result]]:
        """Mirror files as (key, stat) in S3 key order, skipping state and temps.

        Entries of a directory are ordered by ``name + "/"`` for directories so
        that the recursion yields keys in plain string order (``a-b`` < ``a/b``).
        Subtrees wholly before ``after`` or outside ``prefix`` are not entered.
        """
        yield from self._walk(self.root, "", prefix, after)

    def _walk(
        self, path: Path, rel: str, prefix: str, after: str | None
    ) -> Iterator[tuple[str, os.stat_result]]:
        try:
            entries = list(os.scandir(path))
        except OSError:
            return
        items: list[tuple[str, os.DirEntry[str], bool]] = []
        for e in entries:
            try:
                is_dir = e.is_dir(follow_symlinks=False)
            except OSError:
                continue
            if not rel and e.name == STATE_DIR_NAME:
                continue
            if is_temp_name(e.name):
                continue
            items.append((e.name + "/" if is_dir else e.name, e, is_dir))
        items.sort(key=lambda t: t[0])
        for sort_name, e, is_dir in items:
            key = rel + sort_name
            if is_dir:
                # skip subtrees that cannot contain keys with the prefix or after the cursor
                if prefix and not (key.startswith(prefix) or prefix.startswith(key)):
                    continue
                if after is not None and key < after and not after.startswith(key):
                    continue
                yield from self._walk(Path(e.path), key, prefix, after)
            else:
                if prefix and not key.startswith(prefix):
                    continue
                if after is not None and key <= after:
                    continue
                try:
                    st = e.stat(follow_symlinks=False)
                except OSError:
                    continue
                if (st.st_mode & 0o170000) != 0o100000:
                    continue
                yield key, st


def _unlink_quiet(path: Path) -> None:
    try:
        os.unlink(path)
    except OSError:
        pass


def _local_error(exc: OSError, what: str) -> LocalIOError | KeyConflictError:
    if exc.errno in (errno.EISDIR, errno.ENOTDIR, errno.EEXIST):
        return KeyConflictError(f"{what}: {exc.strerror}")
    return LocalIOError(f"{what}: {exc.strerror or exc}")
