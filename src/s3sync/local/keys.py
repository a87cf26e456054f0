"""Key → local path: the ONLY place a filesystem path is derived from an S3 key.

S3 keys are arbitrary UTF-8 strings up to 1024 bytes; filesystems are not. A
key is mapped only when every segment is a plain, non-empty, non-dot name
within the filesystem's name limit, without NUL, and outside the names s3sync
reserves for itself (the ``.s3sync`` state directory at the top and the
temporary-file pattern). Everything else is refused with a reason, which the
caller counts and reports; the rest of the sync goes on.
"""

from __future__ import annotations

import fnmatch
import functools
import os
import re
from collections.abc import Iterable
from pathlib import Path

from s3sync.errors import UnsafeKeyError

STATE_DIR_NAME = ".s3sync"
TEMP_MARKER = ".s3sync-tmp-"
#: ``.<stem>.s3sync-tmp-[<owner>-]<hex>``: the owner tag (s3sync.local.owner) is absent from
#: names written before temps carried their owner; keys may hold newlines (DOTALL)
_TEMP_RE = re.compile(
    r"^\..*\.s3sync-tmp-(?:(?P<owner>[0-9a-f]{8}-\d+of\d+-\d+-[0-9a-f]{8})-)?[0-9a-f]+$", re.DOTALL
)
NAME_MAX = 255


def is_temp_name(name: str) -> bool:
    """True for names of our in-progress downloads (swept at start)."""
    return bool(_TEMP_RE.match(name))


def temp_owner(name: str) -> str | None:
    """The owner tag in a temp name; None for a temp of the old, unowned format (or no temp)."""
    m = _TEMP_RE.match(name)
    return m.group("owner") if m is not None else None


def temp_name_for(final_name: str, token: str, name_max: int = NAME_MAX, owner: str = "") -> str:
    """The temporary sibling of ``final_name`` (same directory → atomic rename).

    ``owner`` is the writer's tag (:class:`s3sync.local.owner.Owner`), so a sweep can
    tell whose temp it is. The name always fits ``name_max`` *bytes*: the stem is
    cut by bytes and a split trailing character dropped, so a 244-byte name like
    ``'漢' * 80 + '.txt'`` gets a temp name that the filesystem accepts.
    """
    suffix = f"{owner}-{token}" if owner else token
    budget = max(0, name_max - 1 - len(TEMP_MARKER) - len(suffix))
    stem = os.fsencode(final_name)[:budget].decode("utf-8", "ignore")
    return f".{stem}{TEMP_MARKER}{suffix}"


def is_directory_marker(key: str) -> bool:
    """Keys ending in ``/`` are console "folders": nothing to write, not an error."""
    return key.endswith("/")


def check_key(key: str, name_max: int = NAME_MAX) -> list[str]:
    """Validate ``key`` and return its path segments, or raise :class:`UnsafeKeyError`.

    ``name_max`` is the filesystem's limit in bytes (``os.pathconf(local_dir, "PC_NAME_MAX")``).
    """
    return list(_checked(key, name_max))


@functools.lru_cache(maxsize=8192)
def _checked(key: str, name_max: int) -> tuple[str, ...]:
    """:func:`check_key`, remembered: one change asks for the same key's segments several times
    (apply, transfer, the temp file, the rename), and a cold sync of small files paid for
    each. Only successes are cached (an exception is never stored), so a refusal is always
    re-derived and its message is the current one.
    """
    if not key:
        raise UnsafeKeyError("empty key")
    if "\x00" in key:
        raise UnsafeKeyError("key contains NUL")
    if key.startswith("/"):
        raise UnsafeKeyError("absolute key (starts with '/')")
    ascii_only = key.isascii()  # then a segment's length in characters is its length in bytes
    parts = key.split("/")
    for part in parts:
        if part == "":
            raise UnsafeKeyError("empty path segment ('//' or trailing '/')")
        if part in (".", ".."):
            raise UnsafeKeyError(f"'{part}' path segment")
        size = len(part) if ascii_only else len(part.encode("utf-8", "surrogatepass"))
        if size > name_max:
            raise UnsafeKeyError(f"path segment longer than the filesystem's {name_max}-byte name limit")
        if TEMP_MARKER in part and is_temp_name(part):
            raise UnsafeKeyError("segment matches s3sync's temporary-file pattern")
    if parts[0] == STATE_DIR_NAME:
        raise UnsafeKeyError(f"'{STATE_DIR_NAME}/' is reserved for s3sync's state")
    if not ascii_only:
        try:
            key.encode("utf-8")
        except UnicodeEncodeError as exc:
            raise UnsafeKeyError("key is not valid UTF-8") from exc
    return tuple(parts)


class KeyMapper:
    """Maps keys to paths under one root, and paths back to keys."""

    def __init__(self, root: Path, *, name_max: int = NAME_MAX) -> None:
        self.root = Path(os.path.abspath(root))
        self.name_max = name_max
        self._root_str = str(self.root)
        self._root_prefix = os.path.join(self._root_str, "")

    def parts(self, key: str) -> tuple[str, ...]:
        """The path segments of ``key`` below the root; raises :class:`UnsafeKeyError`."""
        return _checked(key, self.name_max)

    def check(self, key: str) -> None:
        """Raise :class:`UnsafeKeyError` unless ``key`` maps to a path below the root (no Path built)."""
        _checked(key, self.name_max)

    def to_path(self, key: str) -> Path:
        """The local path of ``key`` (for messages and readers: writers use dir fds)."""
        parts = _checked(key, self.name_max)
        path = os.path.join(self._root_str, *parts)
        # Belt and braces: the checks above already exclude every escape (no segment is
        # empty, '.', '..' or absolute), so the joined path must extend the root verbatim.
        if not path.startswith(self._root_prefix):
            raise UnsafeKeyError("key resolves outside the mirror directory")
        return Path(path)


class KeyFilter:
    """Prefix, include/exclude globs (fnmatch against the whole key), size limit.

    Excludes win over includes; an empty include list means "everything".
    """

    def __init__(
        self,
        prefix: str = "",
        include: Iterable[str] = (),
        exclude: Iterable[str] = (),
        max_size: int | None = None,
    ) -> None:
        self.prefix = prefix
        self.include = tuple(include)
        self.exclude = tuple(exclude)
        self.max_size = max_size
        self._inc = [re.compile(fnmatch.translate(p)) for p in self.include]
        self._exc = [re.compile(fnmatch.translate(p)) for p in self.exclude]

    def wants(self, key: str) -> bool:
        """Whether ``key`` belongs to the mirror at all (prefix and globs)."""
        if not key.startswith(self.prefix):
            return False
        if any(r.match(key) for r in self._exc):
            return False
        return not self._inc or any(r.match(key) for r in self._inc)

    def too_large(self, size: int | None) -> bool:
        return self.max_size is not None and size is not None and size > self.max_size
