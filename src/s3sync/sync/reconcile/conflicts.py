"""Keys that cannot all exist as files: ``x`` next to ``x/y``, and names a filesystem folds.

**Prefix conflicts.** A key ``x`` cannot be a file when another key needs a
directory ``x`` (``x/y``). Keys arrive in UTF-8 byte order, where ``/`` (0x2F)
sorts *after* ``.``, ``-``, space and the rest of 0x20-0x2E, so the children of
``x`` are not adjacent to it: ``x``, ``x-1``, ``x.log``, ``x.log.1``, ``x/y``.
The only keys between ``x`` and ``x/`` are ``x`` followed by a byte below
``/``; so the keys still waiting for a verdict always form a chain, each a
prefix of the next followed by such a byte. :class:`PrefixConflicts` keeps that
chain as a stack: every key is pushed once and popped once (linear time), at
most one key per byte of the longest key (1024) is ever held, and every other
key is released the moment it arrives. Released items are therefore *not* in
key order: put this stage after the sorted merge, where order no longer
matters. The directory wins: ``x`` is flagged, ``x/y`` is not.

**Case and Unicode normalisation.** On a case-insensitive filesystem (exFAT,
SMB, ext4 casefold) ``A.txt`` and ``a.txt`` are one file, and so are the NFC
and NFD spellings of ``é`` on a normalising one; syncing both rewrites the file
every pass. :class:`CaseConflicts` folds every path prefix (casefold + NFC) and
lets the first spelling in key order own it; a later key using another
spelling of any of its components (``a/y`` after ``A/x``: one directory) is a
``case_conflict``. It remembers every folded prefix it has seen, so it is only
built when the start-up probe says the filesystem folds names.
"""

from __future__ import annotations

import unicodedata
from collections import deque
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Generic, Literal, TypeVar

from s3sync.local.keys import is_directory_marker
from s3sync.model import ObjectMeta

T = TypeVar("T")

CasePolicy = Literal["skip", "error"]


class PrefixConflicts(Generic[T]):
    """Streaming ``x`` vs ``x/y`` detection; see the module docstring.

    Feed keys in ascending order with :meth:`push`; each call returns the items
    decided by that key as ``(item, conflicts)``. :meth:`finish` releases the rest.
    Only keys that will become files belong here (not folder markers, unsafe
    or filtered keys: they create no directory).
    """

    def __init__(self) -> None:
        self._stack: list[tuple[str, T]] = []

    @property
    def held(self) -> int:
        return len(self._stack)

    def push(self, key: str, item: T) -> list[tuple[T, bool]]:
        out: list[tuple[T, bool]] = []
        stack = self._stack
        while stack:
            top = stack[-1][0]
            n = len(top)
            if key.startswith(top) and len(key) > n:
                c = key[n]
                if c == "/":
                    out.append((stack.pop()[1], True))  # x/y arrived: x must stay a directory
                    continue  # the next one down has key in its bracket: the loop stops there
                if c < "/":
                    break  # key sorts between top and top + "/": top is still undecided
            out.append((stack.pop()[1], False))  # key is past top's children: top has none
        stack.append((key, item))
        return out

    def finish(self) -> list[tuple[T, bool]]:
        out = [(item, False) for _, item in reversed(self._stack)]
        self._stack.clear()
        return out


async def flag_conflicts(listing: AsyncIterator[ObjectMeta]) -> AsyncIterator[tuple[ObjectMeta, bool]]:
    """``(meta, conflicts)`` in listing order, for consumers that merge in order (verify).

    Linear like :class:`PrefixConflicts`; keeping the order means a key waits for
    the verdicts of the keys before it. Folder markers (``x/``) create nothing
    locally, so they never make ``x`` a conflict.
    """
    det: PrefixConflicts[int] = PrefixConflicts()
    waiting: deque[ObjectMeta] = deque()
    verdicts: dict[int, bool] = {}
    first = 0  # index of waiting[0]
    async for meta in listing:
        idx = first + len(waiting)
        waiting.append(meta)
        if is_directory_marker(meta.key):
            verdicts[idx] = False
        else:
            verdicts.update(det.push(meta.key, idx))
        while waiting and first in verdicts:
            yield waiting.popleft(), verdicts.pop(first)
            first += 1
    verdicts.update(det.finish())
    while waiting:
        yield waiting.popleft(), verdicts.pop(first)
        first += 1


def fold(name: str) -> str:
    """The name a case- and normalisation-insensitive filesystem sees (canonical caseless)."""
    return unicodedata.normalize("NFC", unicodedata.normalize("NFD", name).casefold())


def fold_nfc(name: str) -> str:
    """The name a normalisation-insensitive but case-sensitive filesystem sees."""
    return unicodedata.normalize("NFC", name)


@dataclass(frozen=True, slots=True)
class CaseVerdict:
    """Why ``key`` cannot be written: ``owner`` already holds the folded path ``spelling``."""

    key: str
    owner: str
    spelling: str

    @property
    def message(self) -> str:
        return (
            f"{self.key!r} differs from {self.owner!r} only by case or Unicode normalisation "
            f"(the filesystem folds {self.spelling!r}); the first in key order wins"
        )


class CaseConflicts:
    """First spelling in key order wins each folded path prefix; see the module docstring."""

    def __init__(self, *, case_sensitive: bool = False) -> None:
        self._fold = fold_nfc if case_sensitive else fold
        # folded prefix -> (its winning spelling, the key that claimed it)
        self._owners: dict[str, tuple[str, str]] = {}

    def __len__(self) -> int:
        return len(self._owners)

    def owner(self, key: str) -> str | None:
        """The key holding ``key``'s folded path under another spelling, if any (no claim made).

        A delete of ``key`` on a folding filesystem would remove that key's file:
        the reconcile withholds it.
        """
        got = self._owners.get("/".join(self._fold(p) for p in key.split("/")))
        return got[1] if got is not None and got[0] != key else None

    def check(self, key: str) -> CaseVerdict | None:
        """None and claim the key's prefixes, or the verdict when another spelling owns one."""
        parts = key.split("/")
        claims: list[tuple[str, str]] = []
        folded = ""
        for i, part in enumerate(parts):
            spelling = "/".join(parts[: i + 1])
            folded = (folded + "/" if i else "") + self._fold(part)
            owner = self._owners.get(folded)
            if owner is None:
                claims.append((folded, spelling))
            elif owner[0] != spelling:
                return CaseVerdict(key, owner[1], owner[0])
        for f, s in claims:
            self._owners[f] = (s, key)
        return None


__all__ = [
    "CaseConflicts",
    "CasePolicy",
    "CaseVerdict",
    "PrefixConflicts",
    "flag_conflicts",
    "fold",
    "fold_nfc",
]
