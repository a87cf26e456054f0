"""Typed readers for the fields of untrusted event JSON: each names the path of what it refuses.

Every message is safe to return to the sender (HTTP 400), e.g.
``Records[0].s3.object.size: expected a non-negative integer, got string``.
"""

from __future__ import annotations

import re
from urllib.parse import unquote_plus

# SQLite INTEGER is a signed 64-bit value; a larger "size" would blow up in the
# state store far from here, so refuse it at the edge.
MAX_SIZE = 2**63 - 1

# S3 sequencers are hex strings. A non-hex one cannot be compared the way AWS
# documents, and a forged "ZZZ" would sort above every real sequencer and could
# "prove" a remove is newer; such values are dropped (``None``), which makes the
# consumer confirm with S3 instead.
SEQUENCER_RE = re.compile(r"[0-9A-Fa-f]{1,64}")


class EventParseError(ValueError):
    """The payload is malformed; ``str(exc)`` is safe to return to the sender (HTTP 400)."""


def decode_key(raw: str) -> str:
    """Undo the form-style URL encoding S3 applies to keys in notifications.

    AWS documents ``"red flower.jpg"`` → ``"red+flower.jpg"``; a literal ``+``
    arrives as ``%2B``. So ``+`` becomes a space first, then ``%XX`` sequences are
    decoded as UTF-8 (``unquote_plus``). Invalid UTF-8 after decoding, or a key
    that could never be sent back to S3 (lone surrogates), is an error rather
    than a silently mangled key.
    """
    if not isinstance(raw, str):
        raise EventParseError(f"key: expected a string, got {json_type(raw)}")
    try:
        key = unquote_plus(raw, encoding="utf-8", errors="strict")
        key.encode("utf-8")
    except (UnicodeDecodeError, UnicodeEncodeError) as exc:
        raise EventParseError(f"key is not valid URL-encoded UTF-8 ({exc.reason})") from None
    return key


def join(path: str, name: str) -> str:
    return f"{path}.{name}" if path else name


def json_type(value: object) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "boolean"
    if isinstance(value, int | float):
        return "number"
    if isinstance(value, str):
        return "string"
    if isinstance(value, list):
        return "array"
    if isinstance(value, dict):
        return "object"
    return type(value).__name__


def req_dict(obj: dict[object, object], name: str, path: str) -> dict[object, object]:
    if name not in obj:
        raise EventParseError(f"{join(path, name)}: missing")
    value = obj[name]
    if not isinstance(value, dict):
        raise EventParseError(f"{join(path, name)}: expected an object, got {json_type(value)}")
    return value


def req_str(obj: dict[object, object], name: str, path: str) -> str:
    if name not in obj:
        raise EventParseError(f"{join(path, name)}: missing")
    value = obj[name]
    if not isinstance(value, str):
        raise EventParseError(f"{join(path, name)}: expected a string, got {json_type(value)}")
    return value


def opt_str(obj: dict[object, object], name: str, path: str) -> str | None:
    value = obj.get(name)
    if value is None:
        return None
    if not isinstance(value, str):
        raise EventParseError(f"{join(path, name)}: expected a string, got {json_type(value)}")
    return value


def req_key(obj: dict[object, object], name: str, path: str) -> str:
    raw = req_str(obj, name, path)
    try:
        key = decode_key(raw)
    except EventParseError as exc:
        raise EventParseError(f"{join(path, name)}: {exc}") from None
    if not key:
        raise EventParseError(f"{join(path, name)}: empty")
    return key


def opt_size(obj: dict[object, object], name: str, path: str) -> int | None:
    value = obj.get(name)
    if value is None:
        return None
    # bool is an int subclass in Python; JSON true is not a size.
    if isinstance(value, bool) or not isinstance(value, int):
        raise EventParseError(f"{join(path, name)}: expected a non-negative integer, got {json_type(value)}")
    if not 0 <= value <= MAX_SIZE:
        raise EventParseError(f"{join(path, name)}: expected a non-negative integer in range")
    return value


def opt_sequencer(obj: dict[object, object], name: str, path: str) -> str | None:
    value = opt_str(obj, name, path)
    if value is None or not SEQUENCER_RE.fullmatch(value):
        return None
    return value
