"""The recorded AWS corpus (``tests/data/aws-truth``), read by citation.

The realism rules cite what they reproduce the way the corpus's README does,
``s3 TestS3::test_get_object_part [head-object-part]``: a snapshot file
abbreviation, the test, the recorded entry. :func:`entry` turns such a citation
into the recorded response, so a test compares a rule's output with what AWS
answered rather than with what we believe. :func:`event` gives a recorded event
body with its placeholders (bucket, version id, sequencer...) replaced by a
test's own values, ready to be sent to the daemon.
"""

from __future__ import annotations

import copy
import functools
import json
import re
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1] / "data" / "aws-truth"

#: The abbreviations of CORPUS.md → the snapshot file each stands for.
FILES = {
    "s3": "test_s3.snapshot.json",
    "api": "test_s3_api.snapshot.json",
    "list": "test_s3_list_operations.snapshot.json",
    "pre": "test_s3_preconditions.snapshot.json",
}
_CITATION = re.compile(r"(?P<abbr>\w+) (?P<test>\S+) \[(?P<key>[^\]]+)\]")


@functools.cache
def responses() -> list[dict[str, Any]]:
    data: list[dict[str, Any]] = json.loads((ROOT / "responses.json").read_text())
    return data


def entry(citation: str) -> dict[str, Any]:
    """The one recorded response a citation names (KeyError when there is none, or several)."""
    m = _CITATION.fullmatch(citation)
    if m is None or m["abbr"] not in FILES:
        raise KeyError(f"not a corpus citation: {citation!r}")
    source = f"{FILES[m['abbr']]}::{m['test']}"
    found = [r for r in responses() if r["source"].endswith(source) and r["snapshot_key"] == m["key"]]
    if len(found) != 1:
        raise KeyError(f"{citation!r} names {len(found)} corpus entries")
    return found[0]


def recorded_headers(citation: str) -> dict[str, str | None]:
    """The entry's headers, names lower-cased (``None``: the header was absent)."""
    return {k.lower(): v for k, v in entry(citation)["headers"].items()}


def event_names() -> list[str]:
    """Every recorded event body (derived Lambda copies excluded), by file name."""
    return sorted(p.name for p in (ROOT / "events").glob("*.json") if p.name != "index.json")


def event_provenance(name: str) -> dict[str, Any]:
    index: list[dict[str, Any]] = json.loads((ROOT / "events" / "index.json").read_text())
    return next(e for e in index if e.get("file") == name)


def raw_event(name: str) -> Any:
    return json.loads((ROOT / "events" / name).read_text())


def event(name: str, **values: Any) -> Any:
    """A recorded body with its placeholders filled in.

    ``values`` maps a placeholder (``"<resource:1>"``, ``"version-id"``,
    ``"sequencer"``, ``"date"``...) to its replacement; a replacement is
    applied to whole string values and inside longer strings (an ARN holding
    ``<resource:1>``). Values that are not placeholders are left as recorded.
    """
    body = copy.deepcopy(raw_event(name))
    return _fill(body, {k: v for k, v in values.items()})


def _fill(value: Any, values: dict[str, Any]) -> Any:
    if isinstance(value, dict):
        return {k: _fill(v, values) for k, v in value.items()}
    if isinstance(value, list):
        return [_fill(v, values) for v in value]
    if isinstance(value, str):
        if value in values:
            return values[value]
        for placeholder, replacement in values.items():
            if placeholder.startswith("<") and placeholder in value:
                value = value.replace(placeholder, str(replacement))
        return value
    return value


def untyped(value: Any) -> Any:
    """A DynamoDB-typed record (``{"S": ...}``, ``{"N": ...}``, ``{"M": ...}``) as plain JSON."""
    if isinstance(value, dict) and len(value) == 1:
        ((tag, inner),) = value.items()
        if tag == "S":
            return inner
        if tag == "N":
            return int(inner) if str(inner).lstrip("-").isdigit() else float(inner)
        if tag == "M":
            return {k: untyped(v) for k, v in inner.items()}
        if tag == "L":
            return [untyped(v) for v in inner]
        if tag == "BOOL":
            return bool(inner)
        if tag == "NULL":
            return None
    if isinstance(value, dict):
        return {k: untyped(v) for k, v in value.items()}
    return value
