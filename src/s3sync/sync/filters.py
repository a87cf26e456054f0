"""Object filters: ``--min-size/--max-size``, ``--min-age/--max-age``, ``--files-from``.

These narrow *what the mirror looks at* on top of the prefix and the
include/exclude globs of the key filter (``KeyFilter`` in the keys module). The
rule that matters is rclone's and the one s5cmd#815 broke: **a key that a filter
leaves out is never deleted locally because of that filter.** So a filter does
not remove items from the listing before the merge (that would make a filtered
key look deleted from the bucket); it answers two separate questions:

* :meth:`Selection.wants_key` - is the key in scope at all (prefix, globs,
  files-from)? Out-of-scope keys are invisible on both sides of the merge,
  exactly like an excluded glob today: never fetched, never removed.
* :meth:`Selection.rejects` - for an in-scope object the bucket *has*, does its
  size or age leave it out? If so the merge emits a "filtered" skip: the state
  row is consumed, the local file is left as it is.

A local-only key (the bucket no longer has it) is removed only when
:meth:`Selection.may_delete_local` says the local file itself passes the
size/age filters (rclone filters the destination too), so ``--max-size 1M``
never deletes a 2 MiB local file whichever way it came to be there.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TypeVar

from s3sync.config.sections import SyncSettings
from s3sync.config.units import UnitParseError, format_duration, format_size, parse_duration, parse_size
from s3sync.local.keys import KeyFilter
from s3sync.model import ALL_KEYS, ObjectMeta, Shard


def read_files_from(path: Path, flag: str = "--files-from") -> frozenset[str]:
    """The keys listed in ``path``: one per line, blank lines and ``#`` comments ignored.

    Only the line ending is stripped (S3 keys may begin or end with spaces). A
    key that begins with ``#`` cannot be listed; that is rclone's rule too.
    """
    try:
        raw = path.read_bytes()
    except OSError as exc:
        raise UnitParseError(flag, f"cannot read {str(path)!r}: {exc.strerror or exc}") from exc
    keys: set[str] = set()
    for lineno, line in enumerate(raw.split(b"\n"), start=1):
        if line.endswith(b"\r"):
            line = line[:-1]
        if not line or line.startswith(b"#"):
            continue
        try:
            keys.add(line.decode("utf-8"))
        except UnicodeDecodeError as exc:
            raise UnitParseError(flag, f"{str(path)!r} line {lineno} is not valid UTF-8") from exc
    return frozenset(keys)


_T = TypeVar("_T")


def _opt(
    value: str | int | float | None, parse: Callable[[str | int | float, str], _T], flag: str
) -> _T | None:
    """None and "" mean "not set" (an empty TOML string or env var switches a filter off)."""
    if value is None or value == "":
        return None
    return parse(value, flag)


@dataclass(frozen=True, slots=True)
class ObjectFilter:
    """Size and age bounds (inclusive) and an optional key list; all ``None`` = no filter."""

    min_size: int | None = None
    max_size: int | None = None
    min_age: float | None = None  # seconds: only objects at least this old
    max_age: float | None = None  # seconds: only objects at most this old
    files_from: frozenset[str] | None = None
    clock: Callable[[], float] = field(default=time.time, compare=False)

    def __post_init__(self) -> None:
        if self.min_size is not None and self.max_size is not None and self.min_size > self.max_size:
            low, high = format_size(self.min_size), format_size(self.max_size)
            raise UnitParseError("--min-size", f"{low} is larger than --max-size {high}")
        if self.min_age is not None and self.max_age is not None and self.min_age > self.max_age:
            # in the units an operator types ('2d', not '172800s'): the values reach here parsed
            raise UnitParseError(
                "--min-age",
                f"{format_duration(self.min_age)} is larger than --max-age {format_duration(self.max_age)}",
            )

    @classmethod
    def from_options(
        cls,
        *,
        min_size: str | int | None = None,
        max_size: str | int | None = None,
        min_age: str | float | None = None,
        max_age: str | float | None = None,
        files_from: Path | str | None = None,
        clock: Callable[[], float] = time.time,
    ) -> ObjectFilter:
        """Parse flag/config values; every error names the flag it came from."""
        return cls(
            min_size=_opt(min_size, parse_size, "--min-size"),
            max_size=_opt(max_size, parse_size, "--max-size"),
            min_age=_opt(min_age, parse_duration, "--min-age"),
            max_age=_opt(max_age, parse_duration, "--max-age"),
            files_from=None if files_from in (None, "") else read_files_from(Path(str(files_from))),
            clock=clock,
        )

    @property
    def active(self) -> bool:
        return any(
            v is not None for v in (self.min_size, self.max_size, self.min_age, self.max_age, self.files_from)
        )

    def wants_key(self, key: str) -> bool:
        return self.files_from is None or key in self.files_from

    def rejects_attrs(self, size: int, mtime: float, now: float | None = None) -> str | None:
        """Why an object of this size and modification time is filtered out, or None."""
        if self.min_size is not None and size < self.min_size:
            return f"{size} bytes is below --min-size {self.min_size}"
        if self.max_size is not None and size > self.max_size:
            return f"{size} bytes is above --max-size {self.max_size}"
        if self.min_age is None and self.max_age is None:
            return None
        age = (self.clock() if now is None else now) - mtime
        if self.min_age is not None and age < self.min_age:
            return f"modified {age:.0f}s ago, newer than --min-age {self.min_age:g}s"
        if self.max_age is not None and age > self.max_age:
            return f"modified {age:.0f}s ago, older than --max-age {self.max_age:g}s"
        return None

    def rejects(self, meta: ObjectMeta, now: float | None = None) -> str | None:
        """Why the listed object is filtered out (size or LastModified), or None when wanted."""
        return self.rejects_attrs(meta.size, meta.last_modified, now)


class Selection(KeyFilter):
    """The key filter (prefix + globs) and the object filter, asked as one.

    A :class:`KeyFilter` itself, so it stands wherever one did (plan, verify,
    the apply rules); :meth:`wants` adds ``--files-from`` to the key test.
    """

    def __init__(self, keys: KeyFilter, objects: ObjectFilter | None = None, shard: Shard = ALL_KEYS) -> None:
        super().__init__(keys.prefix, keys.include, keys.exclude, keys.max_size)
        self.objects = objects or ObjectFilter()
        # --shard K/N: another host's keys are out of scope, exactly like an excluded glob
        self.shard = shard

    @classmethod
    def from_settings(cls, sync: SyncSettings, prefix: str) -> Selection:
        """The filters ``[sync]`` configures (CLI flags land there too), scoped to ``prefix``."""
        keys = KeyFilter(prefix, sync.include, sync.exclude, sync.max_file_size_bytes)
        return cls(
            keys,
            ObjectFilter(
                min_size=sync.min_size,
                max_size=sync.max_size,
                min_age=sync.min_age,
                max_age=sync.max_age,
                files_from=read_files_from(sync.files_from) if sync.files_from else None,
            ),
            sync.shard,
        )

    def wants_key(self, key: str) -> bool:
        """In scope at all: out-of-scope keys are never fetched and never removed."""
        return super().wants(key) and self.objects.wants_key(key) and self.shard.owns(key)

    def wants(self, key: str) -> bool:
        return self.wants_key(key)

    def rejects(self, meta: ObjectMeta, now: float | None = None) -> str | None:
        """For an in-scope object the bucket has: the reason it is filtered out, or None."""
        return self.objects.rejects(meta, now)

    def may_delete_local(self, key: str, size: int, mtime: float, now: float | None = None) -> bool:
        """A local-only file may be removed only when the filters would have kept it."""
        return self.wants_key(key) and self.objects.rejects_attrs(size, mtime, now) is None

    def filter_keys(self, keys: Iterable[str]) -> list[str]:
        return [k for k in keys if self.wants_key(k)]


__all__ = [
    "ObjectFilter",
    "Selection",
    "parse_duration",
    "parse_size",
    "read_files_from",
]
