"""What every command shares: exit codes, loading settings from flags, the one-line failure.

Kept apart from the commands so that each command module (and H3's ``wait``/``statusview``)
reports failures the same way: one line on stderr, and with ``--json`` one JSON object on stdout.
"""

from __future__ import annotations

import argparse
import json
import sys
from typing import Any

from s3sync.config import Settings, load_settings
from s3sync.s3.preflight import preflight  # HEAD the bucket first; the daemon runs the same check

EXIT_OK, EXIT_FAIL, EXIT_USAGE = 0, 1, 2

_OVERRIDES = (
    ("bucket", "s3", "bucket"),
    ("endpoint_url", "s3", "endpoint_url"),
    ("region", "s3", "region"),
    ("prefix", "s3", "prefix"),
    ("request_payer", "s3", "request_payer"),
    ("exclude_storage_classes", "sync", "exclude_storage_classes"),
    ("dest", "sync", "local_dir"),
    ("concurrency", "sync", "concurrency"),
    ("delete", "sync", "delete"),
    ("allow_empty_source", "sync", "allow_empty_source"),
    ("max_delete", "sync", "max_delete"),
    ("backup_dir", "sync", "backup_dir"),
    ("checksum", "sync", "checksum"),
    ("bwlimit", "sync", "bwlimit"),
    ("min_size", "sync", "min_size"),
    ("max_size", "sync", "max_size"),
    ("min_age", "sync", "min_age"),
    ("max_age", "sync", "max_age"),
    ("files_from", "sync", "files_from"),
    ("shard", "sync", "shard"),
    ("inventory", "inventory", "location"),
    ("host", "api", "host"),
    ("port", "api", "port"),
)


def overrides(args: argparse.Namespace) -> dict[str, dict[str, Any]]:
    """The flags the user gave, as config overrides (a flag left out leaves the file's value)."""
    o: dict[str, dict[str, Any]] = {"s3": {}, "sync": {}, "api": {}, "inventory": {}}
    for attr, section, key in _OVERRIDES:
        v = getattr(args, attr, None)
        if v is not None:
            o[section][key] = v
    return {k: v for k, v in o.items() if v}


def load(args: argparse.Namespace) -> Settings:
    return load_settings(getattr(args, "config", None), overrides(args))


def fail(args: argparse.Namespace, code: int, error: str, message: str) -> int:
    """One line on stderr; with ``--json`` also one JSON object on stdout, so scripts can parse it."""
    if getattr(args, "json", False):
        print(json.dumps({"error": error, "message": message}))
    print(f"s3sync: {message}", file=sys.stderr)
    return code


__all__ = ["EXIT_FAIL", "EXIT_OK", "EXIT_USAGE", "fail", "load", "overrides", "preflight"]
