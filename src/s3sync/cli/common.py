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


def _refused(exc: BaseException) -> bool:
    """Whether a connection was refused somewhere down the chain (causes, retries' last)."""
    seen: set[int] = set()
    todo: list[BaseException | None] = [exc]
    while todo:
        e = todo.pop()
        if e is None or id(e) in seen:
            continue
        seen.add(id(e))
        if isinstance(e, ConnectionRefusedError):
            return True
        todo += [e.__cause__, e.__context__, getattr(e, "last", None)]
    return False


def _looks_like_s3(endpoint: str, bucket: str) -> bool:
    """Whether ``endpoint`` answers a HEAD of the bucket like S3 (AWS, MinIO, Ceph, moto all
    send ``x-amz*`` headers, on a 404 too). Anything that cannot tell (a network error) counts
    as yes: only a clear "this is something else" changes the message."""
    import urllib.error
    import urllib.request
    from urllib.parse import quote

    req = urllib.request.Request(f"{endpoint.rstrip('/')}/{quote(bucket)}", method="HEAD")
    try:
        with urllib.request.urlopen(req, timeout=5) as resp:
            headers = resp.headers
    except urllib.error.HTTPError as exc:
        headers = exc.headers
    except (OSError, ValueError):
        return True
    return any(name.lower().startswith("x-amz") for name in headers)


async def preflight(bucket: Any) -> None:
    """HEAD the bucket first, so a set-up mistake is one clear line, not N failed objects.

    Only fatal answers stop the run, and a refused connection: no S3 endpoint refuses
    connections, so that is a wrong ``--endpoint-url`` or a server that is not running (exit 2,
    naming the endpoint). Any other transient answer (5xx, a reset) is left to the pass's own
    retries, which would have hit it anyway.
    """
    import asyncio

    from s3sync.errors import FatalError, RetryableError

    endpoint = bucket.settings.endpoint_url
    try:
        await bucket.check()
    except FatalError as exc:
        # a wrong --endpoint-url (the s3sync API itself, a web server) 404s every bucket
        if (
            endpoint
            and "does not exist" in str(exc)
            and not await asyncio.to_thread(_looks_like_s3, endpoint, bucket.name)
        ):
            raise FatalError(
                f"{exc}, and {endpoint} does not answer like an S3 endpoint (no x-amz-* headers): "
                "is s3.endpoint_url / --endpoint-url the S3 API?"
            ) from None
        raise
    except RetryableError as exc:
        if _refused(exc):
            where = endpoint or f"S3 in {bucket.settings.region}"
            raise FatalError(
                f"cannot connect to {where}: connection refused (is s3.endpoint_url / "
                "--endpoint-url right, and is the server running?)"
            ) from None


def fail(args: argparse.Namespace, code: int, error: str, message: str) -> int:
    """One line on stderr; with ``--json`` also one JSON object on stdout, so scripts can parse it."""
    if getattr(args, "json", False):
        print(json.dumps({"error": error, "message": message}))
    print(f"s3sync: {message}", file=sys.stderr)
    return code


__all__ = ["EXIT_FAIL", "EXIT_OK", "EXIT_USAGE", "fail", "load", "overrides", "preflight"]
