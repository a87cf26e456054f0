"""Whole-tree operations on the mirror that never enter a symlink: sorted walk, sweep, probe.

Each directory is opened with ``openat(O_DIRECTORY | O_NOFOLLOW)`` relative to its
parent's fd, so a directory swapped for a link between the scan and the descent
is simply not entered. Every function takes ownership of the root fd it is
given and closes it. Blocking; run in a worker thread.
"""

from __future__ import annotations

import os
import secrets
import stat as stat_mod
import unicodedata
from collections.abc import Callable, Iterator
from dataclasses import dataclass

from s3sync.local.keys import STATE_DIR_NAME, TEMP_MARKER, is_temp_name

DIR_FLAGS = os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC
_PROBE_FLAGS = os.O_RDWR | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC


@dataclass(frozen=True, slots=True)
class CaseProbe:
    """What ``local_dir``'s filesystem considers the same name."""

    case_sensitive: bool
    normalization_sensitive: bool

    @property
    def folds(self) -> bool:
        """True when two different keys can land on one file."""
        return not (self.case_sensitive and self.normalization_sensitive)


def probe_case(root: int) -> CaseProbe:
    """Create a probe file in ``root`` and stat its case-swapped and NFD twins.

    The probe's name matches the temp pattern, so a crash between create and
    unlink leaves something the start-up sweep removes.
    """
    name = f".Probe-Ab\u00e9{TEMP_MARKER}{secrets.token_hex(4)}"  # é precomposed (NFC)
    try:
        os.close(os.open(name, _PROBE_FLAGS, 0o600, dir_fd=root))
        try:
            mine = os.stat(name, dir_fd=root, follow_symlinks=False)
            case = _same_file(root, name.swapcase(), mine)
            norm = _same_file(root, unicodedata.normalize("NFD", name), mine)
        finally:
            os.unlink(name, dir_fd=root)
    finally:
        os.close(root)
    return CaseProbe(case_sensitive=not case, normalization_sensitive=not norm)


def walk_sorted(
    fd: int, rel: str = "", prefix: str = "", after: str | None = None
) -> Iterator[tuple[str, os.stat_result]]:
    """Regular files as (key, lstat) in S3 key order, never entering a symlink.

    Skips the state directory and temporaries. Entries are ordered by
    ``name + "/"`` for directories so the recursion yields keys in plain string
    order (``a-b`` < ``a/b``); subtrees wholly before ``after`` or outside
    ``prefix`` are not entered.
    """
    try:
        for sort_name, entry, is_dir in _sorted_entries(fd, top=not rel):
            key = rel + sort_name
            if is_dir:
                if prefix and not (key.startswith(prefix) or prefix.startswith(key)):
                    continue
                if after is not None and key < after and not after.startswith(key):
                    continue
                try:
                    child = os.open(entry.name, DIR_FLAGS, dir_fd=fd)
                except OSError:
                    continue  # replaced by a link (or removed) since the scan
                yield from walk_sorted(child, key, prefix, after)
                continue
            if (prefix and not key.startswith(prefix)) or (after is not None and key <= after):
                continue
            try:
                st = entry.stat(follow_symlinks=False)
            except OSError:
                continue
            if stat_mod.S_ISREG(st.st_mode):
                yield key, st
    finally:
        os.close(fd)


def _sorted_entries(fd: int, *, top: bool) -> list[tuple[str, os.DirEntry[str], bool]]:
    items: list[tuple[str, os.DirEntry[str], bool]] = []
    try:
        with os.scandir(fd) as it:
            entries = list(it)
    except OSError:
        return items
    for e in entries:
        if (top and e.name == STATE_DIR_NAME) or is_temp_name(e.name):
            continue
        try:
            is_dir = e.is_dir(follow_symlinks=False)
        except OSError:
            continue
        items.append((e.name + "/" if is_dir else e.name, e, is_dir))
    items.sort(key=lambda t: t[0])
    return items


def sweep(fd: int, doomed: Callable[[str], bool] = is_temp_name, *, top: bool = True) -> int:
    """Unlink every regular file whose name is ``doomed`` (crash leftovers); returns how many."""
    removed = 0
    try:
        with os.scandir(fd) as it:
            entries = list(it)
        for e in entries:
            if top and e.name == STATE_DIR_NAME:
                continue
            try:
                if e.is_dir(follow_symlinks=False):
                    child = os.open(e.name, DIR_FLAGS, dir_fd=fd)
                    removed += sweep(child, doomed, top=False)
                elif e.is_file(follow_symlinks=False) and doomed(e.name):
                    os.unlink(e.name, dir_fd=fd)
                    removed += 1
            except OSError:
                continue
    except OSError:
        pass
    finally:
        os.close(fd)
    return removed


def _same_file(dirfd: int, name: str, mine: os.stat_result) -> bool:
    try:
        st = os.stat(name, dir_fd=dirfd, follow_symlinks=False)
    except OSError:
        return False
    return (st.st_dev, st.st_ino) == (mine.st_dev, mine.st_ino)


__all__ = ["DIR_FLAGS", "CaseProbe", "probe_case", "sweep", "walk_sorted"]
