"""Sizes, rates and durations as operators write them (``10M``, ``2h``), parsed once.

The CLI flags and the ``[sync]`` keys go through these same functions, so a bad
value gets the same message naming the flag or key, whichever way it came in.
K, M and G are powers of 1024 (rclone's convention).
"""

from __future__ import annotations

import re

from s3sync.errors import ConfigError

_UNITS = {"": 1, "K": 1024, "M": 1024**2, "G": 1024**3}
_SIZE_RE = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*([KMG]?)(?:I?B)?\s*$", re.IGNORECASE)


class UnitParseError(ConfigError, ValueError):
    """A size/rate/duration flag that does not parse.

    A :class:`ConfigError` so the CLI exits 2 with the message, and a
    :class:`ValueError` so a pydantic validator turns it into a field error.
    ``flag`` may be "" when the caller (a config validator) names the key itself.
    """

    def __init__(self, flag: str, detail: str) -> None:
        super().__init__(f"{flag}: {detail}" if flag else detail)


def parse_bytes(value: str | int | float, flag: str) -> int:
    """``"10M"`` → 10485760: a number with an optional K, M or G suffix (powers of 1024).

    A trailing ``B``/``iB`` is tolerated (``10MB``, ``10MiB`` are the same
    1024-based value). ``flag`` names the option in the error message.
    """
    if isinstance(value, bool):
        raise UnitParseError(flag, f"expected a size like 10M, got {value!r}")
    if isinstance(value, int | float):
        if value < 0:
            raise UnitParseError(flag, f"must not be negative (got {value!r})")
        return int(value)
    m = _SIZE_RE.match(value)
    if m is None:
        raise UnitParseError(
            flag, f"{value!r} is not a size (a number with an optional K, M or G suffix, e.g. 10M)"
        )
    return int(float(m.group(1)) * _UNITS[m.group(2).upper()])


def parse_rate(value: str | int | float, flag: str = "--bwlimit") -> int:
    """Bytes per second for ``--bwlimit``; 0 means no limit."""
    return parse_bytes(value, flag)


def format_rate(rate: int) -> str:
    """The inverse of :func:`parse_rate` for messages (``10485760`` → ``"10M"``)."""
    if rate <= 0:
        return "0"
    for suffix in ("G", "M", "K"):
        unit = _UNITS[suffix]
        if rate % unit == 0:
            return f"{rate // unit}{suffix}"
    return str(rate)


_DURATION_PART = re.compile(r"(\d+(?:\.\d+)?)\s*(ms|s|m|h|d|w)", re.IGNORECASE)
_DURATION_FULL = re.compile(r"^\s*(?:\d+(?:\.\d+)?\s*(?:ms|s|m|h|d|w)\s*)+$", re.IGNORECASE)
_SECONDS = {"ms": 0.001, "s": 1.0, "m": 60.0, "h": 3600.0, "d": 86400.0, "w": 7 * 86400.0}


def parse_size(value: str | int | float, flag: str) -> int:
    """``--min-size``/``--max-size``: bytes, with K/M/G suffixes (1024ⁿ) like ``--bwlimit``."""
    return parse_bytes(value, flag)


def parse_duration(value: str | int | float, flag: str) -> float:
    """``30s``, ``15m``, ``2h``, ``7d``, ``1w``, combinations such as ``1h30m``; a bare number is seconds."""
    if isinstance(value, bool):
        raise UnitParseError(flag, f"expected a duration like 2h, got {value!r}")
    if isinstance(value, int | float):
        if value < 0:
            raise UnitParseError(flag, f"must not be negative (got {value!r})")
        return float(value)
    text = value.strip()
    if re.fullmatch(r"\d+(?:\.\d+)?", text):
        return float(text)
    if not _DURATION_FULL.match(text):
        raise UnitParseError(
            flag,
            f"{value!r} is not a duration (seconds, or a number with s, m, h, d or w, e.g. 30s, 15m, 2h, 7d)",
        )
    return sum(float(n) * _SECONDS[u.lower()] for n, u in _DURATION_PART.findall(text))


def format_size(size: int) -> str:
    """The largest K/M/G unit that states ``size`` exactly (``10485760`` → ``10M``), for messages."""
    for suffix in ("G", "M", "K"):
        if size and size % _UNITS[suffix] == 0:
            return f"{size // _UNITS[suffix]}{suffix}"
    return str(size)


def format_duration(seconds: float) -> str:
    """The largest of w/d/h/m/s that states ``seconds`` exactly (``172800`` → ``2d``), for messages."""
    for unit in ("w", "d", "h", "m"):
        if seconds and seconds % _SECONDS[unit] == 0:
            return f"{int(seconds // _SECONDS[unit])}{unit}"
    return f"{seconds:g}s"


__all__ = [
    "UnitParseError",
    "format_duration",
    "format_rate",
    "format_size",
    "parse_bytes",
    "parse_duration",
    "parse_rate",
    "parse_size",
]
