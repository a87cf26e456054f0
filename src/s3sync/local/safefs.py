"""File operations below ``local_dir`` that never follow a symlink.

Why directory fds: a path string that was checked is not the path the kernel
walks later. ``local_dir/sub/x`` with ``sub`` a symlink to ``/etc`` passes every
textual check and still writes ``/etc/x``. So every operation here starts at an
fd for ``local_dir`` and walks down one component at a time with
``openat(name, O_DIRECTORY | O_NOFOLLOW)``: a component that is a symlink ends
the walk with :class:`SymlinkError` (reason ``symlink``) and nothing is touched
beyond it. Leaves are created with ``O_CREAT | O_EXCL | O_NOFOLLOW``, renamed
with ``renameat``, removed with ``unlinkat`` and stat'ed without following.
``local_dir`` itself is the operator's choice and may be reached through links.

Directory fds are opened per operation, never cached (a cached fd keeps pointing
at a directory moved out of the mirror): one ``openat`` per path component.

Names are measured in bytes against ``os.pathconf(local_dir, "PC_NAME_MAX")``,
and :func:`~s3sync.local.keys.temp_name_for` always fits: the stem is cut on a UTF-8 boundary.

Everything here blocks; call it from a worker thread.
"""

from __future__ import annotations

import errno
import os
import secrets
import stat as stat_mod
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path

from s3sync.errors import KeyConflictError, LocalIOError, UnsafeKeyError
from s3sync.local import fstree
from s3sync.local.dirsync import DirSync
from s3sync.local.fstree import DIR_FLAGS as _DIR_FLAGS
from s3sync.local.fstree import CaseProbe
from s3sync.local.keys import is_temp_name, temp_name_for

_TEMP_FLAGS = os.O_RDWR | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC
_READ_FLAGS = os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC
_FALLBACK_NAME_MAX = 255
_TOKEN_BYTES = 4


class SymlinkError(UnsafeKeyError):
    """The key's path passes through (or ends at) a symlink: refused, never followed."""

    code = "symlink"


def name_bytes(name: str) -> int:
    """Length of ``name`` as the kernel sees it (UTF-8, surrogateescape like ``os``)."""
    return len(os.fsencode(name))


class CaseConflictError(UnsafeKeyError):
    """On a folding filesystem the key's path already exists under another spelling."""

    code = "case_conflict"


class DirLeaves:
    """Operations on one name inside an already open directory fd (no path walk at all).

    Group durability builds on these: a caller holding a directory fd may create
    many temps, :meth:`replace` each into place and record the fd in a
    :class:`DirSync` instead of calling :meth:`fsync_dir` per file.
    """

    @property
    def name_max(self) -> int:
        raise NotImplementedError

    def create_temp(self, dirfd: int, final_name: str, *, owner: str = "") -> tuple[str, int]:
        """Create a fresh temp sibling of ``final_name`` in ``dirfd``: (name, O_RDWR fd).

        ``owner`` (an :class:`~s3sync.local.owner.Owner` tag) goes into the name.
        """
        for _ in range(8):
            name = temp_name_for(final_name, secrets.token_hex(_TOKEN_BYTES), self.name_max, owner)
            try:
                return name, os.open(name, _TEMP_FLAGS, 0o644, dir_fd=dirfd)
            except FileExistsError:
                continue
        raise LocalIOError(f"cannot create a temporary file for {final_name!r}")

    def adopt_temp(self, dirfd: int, name: str, final_name: str, *, owner: str) -> str:
        """Rename the temp ``name`` to a fresh temp name carrying ``owner``; returns the new name.

        A resumed download takes over a temp a gone process left: renamed first, it
        can no longer be mistaken for that process's orphan by another sweep.
        """
        for _ in range(8):
            new = temp_name_for(final_name, secrets.token_hex(_TOKEN_BYTES), self.name_max, owner)
            if self.leaf_stat(dirfd, new) is not None:
                continue
            os.rename(name, new, src_dir_fd=dirfd, dst_dir_fd=dirfd)
            return new
        raise LocalIOError(f"cannot rename the temporary file of {final_name!r}")

    def leaf_stat(self, dirfd: int, name: str) -> os.stat_result | None:
        try:
            return os.stat(name, dir_fd=dirfd, follow_symlinks=False)
        except (FileNotFoundError, NotADirectoryError):
            return None

    def check_replaceable(self, dirfd: int, name: str, key: str) -> os.stat_result | None:
        """What sits at the final name, if it may be replaced by a file; raises otherwise."""
        st = self.leaf_stat(dirfd, name)
        if st is None or stat_mod.S_ISREG(st.st_mode):
            return st
        if stat_mod.S_ISLNK(st.st_mode):
            raise SymlinkError(f"{key!r}: the local path is a symlink; not replaced")
        if stat_mod.S_ISDIR(st.st_mode):
            raise KeyConflictError(f"{key!r} exists locally as a directory (a/ next to a/b)")
        raise LocalIOError(f"{key!r}: the local path is not a regular file")

    def replace(self, dirfd: int, src: str, dst: str, *, key: str) -> None:
        """renameat within one directory (atomic); refuses to replace a link or a directory."""
        self.check_replaceable(dirfd, dst, key)
        try:
            os.replace(src, dst, src_dir_fd=dirfd, dst_dir_fd=dirfd)
        except OSError as exc:
            if exc.errno in (errno.EISDIR, errno.ENOTEMPTY, errno.EEXIST):
                raise KeyConflictError(f"{key!r} exists locally as a directory") from exc
            raise LocalIOError(f"{key!r}: {exc.strerror or exc}") from exc

    def unlink_quiet(self, dirfd: int, name: str) -> None:
        try:
            os.unlink(name, dir_fd=dirfd)
        except OSError:
            pass

    @staticmethod
    def fsync_dir(dirfd: int) -> None:
        """Make the renames and unlinks in this directory durable (one fsync)."""
        os.fsync(dirfd)


class SafeFS(DirLeaves):
    """Blocking dirfd-relative operations under one root; see the module docstring."""

    def __init__(self, root: Path | str) -> None:
        self.root = Path(os.path.abspath(root))
        self._name_max: int | None = None

    # -- the root ------------------------------------------------------------
    def ensure_root(self) -> None:
        self.root.mkdir(parents=True, exist_ok=True)

    @property
    def name_max(self) -> int:
        """The filesystem's name limit in bytes (of the root, or its nearest existing parent)."""
        if self._name_max is None:
            probe = self.root
            while True:
                try:
                    self._name_max = int(os.pathconf(probe, "PC_NAME_MAX"))
                    break
                except (OSError, ValueError):
                    if probe.parent == probe:
                        self._name_max = _FALLBACK_NAME_MAX
                        break
                    probe = probe.parent
        return self._name_max

    def reset_name_max(self) -> None:
        """Forget the cached limit (the root was just created, maybe on another filesystem)."""
        self._name_max = None

    def open_root(self) -> int:
        return os.open(self.root, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)

    def probe_case(self) -> CaseProbe:
        """Is ``local_dir`` case- and normalisation-sensitive? (a real file, removed again)"""
        return fstree.probe_case(self.open_root())

    # -- walking down ------------------------------------------------------
    def _step(self, dirfd: int, name: str, *, create: bool, key: str) -> int:
        """Open ``name`` in ``dirfd`` as a real directory (creating it if asked)."""
        for _ in range(3):  # a concurrent mkdir/rmdir of the same name is retried
            try:
                return os.open(name, _DIR_FLAGS, dir_fd=dirfd)
            except FileNotFoundError:
                if not create:
                    raise
                try:
                    os.mkdir(name, 0o755, dir_fd=dirfd)
                except FileExistsError:
                    pass
                except OSError as exc:
                    raise LocalIOError(f"cannot create directory for {key!r}: {exc.strerror}") from exc
            except OSError as exc:
                raise _component_error(dirfd, name, exc, key) from exc
        raise LocalIOError(f"cannot create directory for {key!r}: it keeps disappearing")

    def _chain(self, parts: Sequence[str], *, create: bool, key: str) -> list[int]:
        """fds of the root and of every directory in ``parts``, outermost first."""
        fds = [self.open_root()]
        try:
            for part in parts:
                fds.append(self._step(fds[-1], part, create=create, key=key))
        except BaseException:
            _close_all(fds)
            raise
        return fds

    def open_dir(self, parts: Sequence[str], *, create: bool = False, key: str = "") -> int:
        """An fd of ``local_dir/parts...`` reached without following links; caller closes it.

        Raises FileNotFoundError (absent, ``create`` false), :class:`SymlinkError`
        or :class:`KeyConflictError` (a component is a file).
        """
        fd = self.open_root()
        try:
            for part in parts:
                nxt = self._step(fd, part, create=create, key=key)
                os.close(fd)
                fd = nxt
        except BaseException:
            os.close(fd)
            raise
        return fd

    @contextmanager
    def directory(self, parts: Sequence[str], *, create: bool = False, key: str = "") -> Iterator[int]:
        fd = self.open_dir(parts, create=create, key=key)
        try:
            yield fd
        finally:
            os.close(fd)

    # -- whole keys ----------------------------------------------------------
    def stat_many(self, many: Sequence[Sequence[str] | None]) -> list[os.stat_result | None]:
        """lstat of each ``local_dir/parts`` (None: absent or only through a link).

        Consecutive keys of one directory share its fd (reconcile stats in key order).
        """
        out: list[os.stat_result | None] = []
        cur_dir: tuple[str, ...] | None = None
        cur_fd = -1
        try:
            for parts in many:
                if not parts:
                    out.append(None)
                    continue
                parent = tuple(parts[:-1])
                if parent != cur_dir:
                    if cur_fd >= 0:
                        os.close(cur_fd)
                    cur_dir, cur_fd = parent, -1
                    try:
                        cur_fd = self.open_dir(parent)
                    except (OSError, UnsafeKeyError):
                        cur_fd = -1
                out.append(self.leaf_stat(cur_fd, parts[-1]) if cur_fd >= 0 else None)
        finally:
            if cur_fd >= 0:
                os.close(cur_fd)
        return out

    def open_file(self, parts: Sequence[str], *, key: str = "") -> int:
        """A read-only fd of the regular file at ``parts`` (the download endpoint, --checksum).

        Raises FileNotFoundError when there is no regular file there, and
        :class:`SymlinkError` when the path passes through or ends at a link.
        """
        if not parts:
            raise FileNotFoundError(errno.ENOENT, "empty key")
        try:
            parent = self.open_dir(parts[:-1], key=key)
        except (KeyConflictError, NotADirectoryError) as exc:
            raise FileNotFoundError(errno.ENOENT, str(exc)) from exc
        try:
            try:
                fd = os.open(parts[-1], _READ_FLAGS, dir_fd=parent)
            except OSError as exc:
                if exc.errno == errno.ELOOP:
                    raise SymlinkError(f"{key!r}: the local path is a symlink; not followed") from exc
                raise
        finally:
            os.close(parent)
        if not stat_mod.S_ISREG(os.fstat(fd).st_mode):
            os.close(fd)
            raise FileNotFoundError(errno.ENOENT, f"{key!r} is not a regular file")
        return fd

    def remove(
        self,
        parts: Sequence[str],
        *,
        key: str = "",
        prune: bool = True,
        move_away: Callable[[int, str], None] | None = None,
    ) -> bool:
        """Unlink the regular file at ``parts`` and rmdir now-empty parents; True if it existed.

        A link (anywhere on the path or at the end) raises :class:`SymlinkError`
        and a directory :class:`KeyConflictError`: neither is ever removed.
        ``move_away(dirfd, name)`` replaces the unlink (``--backup-dir``).
        """
        try:
            fds = self._chain(parts[:-1], create=False, key=key)
        except (FileNotFoundError, KeyConflictError, NotADirectoryError):
            return False
        try:
            st = self.leaf_stat(fds[-1], parts[-1])
            if st is None:
                return False
            if stat_mod.S_ISLNK(st.st_mode):
                raise SymlinkError(f"{key!r}: the local path is a symlink; not deleted")
            if stat_mod.S_ISDIR(st.st_mode):
                raise KeyConflictError(f"{key!r} is a directory locally; not deleting it")
            try:
                if move_away is not None:
                    move_away(fds[-1], parts[-1])
                else:
                    os.unlink(parts[-1], dir_fd=fds[-1])
            except FileNotFoundError:
                return False
            except OSError as exc:
                raise LocalIOError(f"{key!r}: {exc.strerror or exc}") from exc
            if prune:
                for i in range(len(parts) - 2, -1, -1):
                    try:
                        os.rmdir(parts[i], dir_fd=fds[i])
                    except OSError:
                        break
            return True
        finally:
            _close_all(fds)

    def other_spelling(self, parts: Sequence[str]) -> str | None:
        """The first prefix of ``parts`` stored under another spelling (``Docs`` for ``docs``).

        Only meaningful on a filesystem that folds names (the probe says so): there a
        stat of ``docs`` finds ``Docs``, and only the directory listing tells them
        apart. Costs one listing per existing component; None when all match.
        """
        fd = self.open_root()
        try:
            for i, part in enumerate(parts):
                if self.leaf_stat(fd, part) is None:
                    return None
                with os.scandir(fd) as it:
                    if not any(e.name == part for e in it):
                        return "/".join(parts[: i + 1])
                if i == len(parts) - 1:
                    return None
                try:
                    nxt = os.open(part, _DIR_FLAGS, dir_fd=fd)
                except OSError:
                    return None  # a file or a link: the walk that writes reports it
                os.close(fd)
                fd = nxt
            return None
        finally:
            os.close(fd)

    # -- whole tree (fstree owns the recursion) -----------------------------
    def walk_sorted(self, prefix: str = "", after: str | None = None) -> Iterator[tuple[str, os.stat_result]]:
        """Regular files as (key, lstat) in key order; never enters a link (see fstree)."""
        try:
            fd = self.open_root()
        except OSError:
            return
        yield from fstree.walk_sorted(fd, "", prefix, after)

    def sweep(self, doomed: Callable[[str], bool] = is_temp_name) -> int:
        """Unlink crash leftovers (temp names by default) anywhere below the root."""
        try:
            fd = self.open_root()
        except OSError:
            return 0
        return fstree.sweep(fd, doomed)


def _component_error(dirfd: int, name: str, exc: OSError, key: str) -> Exception:
    """Why ``name`` could not be opened as a directory: a link, a file, or I/O."""
    if exc.errno in (errno.ELOOP, errno.ENOTDIR, errno.EMLINK):
        try:
            st = os.stat(name, dir_fd=dirfd, follow_symlinks=False)
        except OSError:
            st = None
        if st is not None and stat_mod.S_ISLNK(st.st_mode):
            return SymlinkError(f"{key!r}: {name!r} on its local path is a symlink; not followed")
        return KeyConflictError(
            f"a parent of {key!r} exists locally as a file (key collides with a directory)"
        )
    if exc.errno == errno.ENAMETOOLONG:
        return UnsafeKeyError(f"{key!r}: path segment longer than the filesystem's name limit")
    return LocalIOError(f"{key!r}: {exc.strerror or exc}")


def _close_all(fds: list[int]) -> None:
    for fd in reversed(fds):
        try:
            os.close(fd)
        except OSError:
            pass


__all__ = [
    "CaseConflictError",
    "CaseProbe",
    "DirLeaves",
    "DirSync",
    "SafeFS",
    "SymlinkError",
    "name_bytes",
]
