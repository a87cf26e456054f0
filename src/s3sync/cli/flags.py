"""The operator-control flags (README, "Operator controls"), parsed at the command line.

Each value goes through the same parser as its ``[sync]`` key (:mod:`s3sync.config.units`),
but here a bad value is an argparse usage error naming the flag (exit 2).
"""

from __future__ import annotations

import argparse
from collections.abc import Callable
from typing import Any

from s3sync.config.units import parse_duration, parse_rate, parse_size
from s3sync.s3.versions import parse_instant


def _unit(parse: Callable[[str, str], Any]) -> Callable[[str], Any]:
    """An argparse ``type=`` from a units parser: a bad value is usage error naming the flag."""

    def convert(text: str) -> Any:
        try:
            return parse(text, "")
        except ValueError as exc:
            raise argparse.ArgumentTypeError(str(exc)) from None

    return convert


def add_filter_flags(p: argparse.ArgumentParser) -> None:
    """Filters shared by sync and verify (README, "Operator controls")."""
    p.add_argument(
        "--min-size",
        metavar="SIZE",
        type=_unit(parse_size),
        help="only objects at least this big, e.g. 10K, 5M (sync.min_size)",
    )
    p.add_argument(
        "--max-size",
        metavar="SIZE",
        type=_unit(parse_size),
        help="only objects at most this big (sync.max_size)",
    )
    p.add_argument(
        "--min-age",
        metavar="DURATION",
        type=_unit(parse_duration),
        help="only objects last modified at least this long ago, e.g. 30s, 15m, 2h, 7d",
    )
    p.add_argument(
        "--max-age",
        metavar="DURATION",
        type=_unit(parse_duration),
        help="only objects last modified at most this long ago (sync.max_age)",
    )
    p.add_argument(
        "--files-from", metavar="FILE", help="only the keys listed in FILE, one per line (sync.files_from)"
    )
    p.add_argument(
        "--version-at",
        metavar="TIMESTAMP",
        type=_unit(parse_instant),
        help="versioned buckets: the bucket as it was at this RFC 3339 instant",
    )


def _max_delete(text: str) -> int | str:
    """``--max-delete``: the same forms as ``[sync] max_delete`` (a count, ``N%``, or -1)."""
    from s3sync.config.sections import SyncSettings

    try:
        out: int | str = SyncSettings._max_delete(text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(f"{text!r}: {exc}") from None
    return out


def _storage_class(text: str) -> str:
    from s3sync.config.sections import STORAGE_CLASSES

    c = text.strip().upper()
    if c not in STORAGE_CLASSES:
        raise argparse.ArgumentTypeError(
            f"{text!r} is not an S3 storage class (one of {', '.join(STORAGE_CLASSES)})"
        )
    return c


def add_delete_flags(p: argparse.ArgumentParser) -> None:
    """The delete guard's two switches (docs/configuration.md, ``[sync]``)."""
    p.add_argument(
        "--allow-empty-source",
        action="store_true",
        default=None,
        help="let an empty listing delete the mirror's files (sync.allow_empty_source); "
        "otherwise such a pass deletes nothing",
    )
    p.add_argument(
        "--max-delete",
        metavar="N|N%",
        type=_max_delete,
        help="most files one pass may delete: a count, a percentage of the mirror, or -1 for no "
        "limit (sync.max_delete, default 50%%)",
    )
    p.add_argument(
        "--exclude-storage-class",
        metavar="CLASS",
        action="append",
        type=_storage_class,
        dest="exclude_storage_classes",
        help="skip objects of this storage class without a GET, e.g. GLACIER; repeatable "
        "(sync.exclude_storage_classes)",
    )


def add_bwlimit_flag(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--bwlimit",
        metavar="RATE",
        type=_unit(parse_rate),
        help="total download rate limit in bytes/s, e.g. 10M (K/M/G = 1024^n; sync.bwlimit)",
    )


__all__ = ["add_bwlimit_flag", "add_delete_flags", "add_filter_flags"]
