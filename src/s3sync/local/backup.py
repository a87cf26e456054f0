"""``--backup-dir``: files a delete or an overwrite would destroy are moved aside instead.

The backup of key ``K`` is ``DIR/K``; when that exists already (the same key
backed up by an earlier pass) the new one is ``DIR/K.1``, ``DIR/K.2`` … so no
backup ever overwrites another. ``DIR`` must lie outside ``local_dir`` (else the
mirror would sync its own backups away), which :func:`check_backup_dir` tells
at start.

The move is a ``renameat`` from the mirror's directory fd into a directory fd
under ``DIR`` (both walked without following links); across filesystems it is
a copy to a temp name in the backup directory, an fsync and a rename, and the
caller unlinks or replaces the original afterwards. Blocking; worker thread.
"""

from __future__ import annotations

import errno
import os
import shutil
from collections.abc import Sequence
from pathlib import Path

from s3sync.errors import ConfigError, LocalIOError
from s3sync.local.safefs import SafeFS

_MAX_SUFFIX = 10_000


def check_backup_dir(backup_dir: Path, local_dir: Path) -> Path:
    """The absolute backup directory; ConfigError when it is (inside) the mirror."""
    b = Path(os.path.realpath(backup_dir))
    m = Path(os.path.realpath(local_dir))
    if b == m or m in b.parents:
        raise ConfigError(
            f"sync.backup_dir: {backup_dir} is inside local_dir {local_dir}; choose a directory outside it"
        )
    return b


class Backups:
    """Moves mirror files into the backup tree (see the module docstring)."""

    def __init__(self, backup_dir: Path) -> None:
        self.fs = SafeFS(backup_dir)

    def _free_name(self, dirfd: int, name: str) -> str:
        if self.fs.leaf_stat(dirfd, name) is None:
            return name
        for n in range(1, _MAX_SUFFIX):
            cand = f"{name}.{n}"
            if self.fs.leaf_stat(dirfd, cand) is None:
                return cand
        raise LocalIOError(f"backup of {name!r}: {_MAX_SUFFIX} backups exist already")

    def keep(self, src_dirfd: int, src_name: str, parts: Sequence[str], *, key: str, move: bool) -> str:
        """Back up ``src_name`` (in ``src_dirfd``) as ``DIR/<parts>``; returns the backup's key.

        ``move`` renames the original away (a delete); otherwise the original
        stays in place for the caller to replace atomically (an overwrite): it is
        hard-linked where possible, copied across filesystems.
        """
        self.fs.ensure_root()
        with self.fs.directory(parts[:-1], create=True, key=key) as dst:
            name = self._free_name(dst, parts[-1])
            try:
                if move:
                    os.rename(src_name, name, src_dir_fd=src_dirfd, dst_dir_fd=dst)
                else:
                    os.link(src_name, name, src_dir_fd=src_dirfd, dst_dir_fd=dst, follow_symlinks=False)
            except OSError as exc:
                if exc.errno not in (errno.EXDEV, errno.EPERM, errno.EMLINK, errno.ENOTSUP):
                    raise LocalIOError(f"backup of {key!r}: {exc.strerror or exc}") from exc
                self._copy(src_dirfd, src_name, dst, name, key)
                if move:
                    os.unlink(src_name, dir_fd=src_dirfd)
            self.fs.fsync_dir(dst)
        return "/".join([*parts[:-1], name])

    def _copy(self, src_dirfd: int, src_name: str, dst_dirfd: int, name: str, key: str) -> None:
        src = os.open(src_name, os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC, dir_fd=src_dirfd)
        try:
            st = os.fstat(src)
            tmp, out = self.fs.create_temp(dst_dirfd, name)
            try:
                with os.fdopen(src, "rb", closefd=False) as fin, os.fdopen(out, "wb", closefd=False) as fout:
                    shutil.copyfileobj(fin, fout, 1024 * 1024)
                os.utime(out, ns=(st.st_atime_ns, st.st_mtime_ns))
                os.fsync(out)
            except BaseException:
                os.close(out)
                self.fs.unlink_quiet(dst_dirfd, tmp)
                raise
            os.close(out)
            os.rename(tmp, name, src_dir_fd=dst_dirfd, dst_dir_fd=dst_dirfd)
        except OSError as exc:
            raise LocalIOError(f"backup of {key!r}: {exc.strerror or exc}") from exc
        finally:
            os.close(src)


__all__ = ["Backups", "check_backup_dir"]
