"""``s3sync wait KEY``: read-your-writes for producers, over the daemon's ``GET /api/v1/wait``.

A producer that has just uploaded (or deleted) an object runs this before it
tells a consumer to read the mirror. The daemon fetches the key itself when its
copy does not match, so this works whether or not S3 delivers the event.
Exit 0 reached, 1 timed out (or the daemon is unreachable), 2 bad usage or a
key the mirror will never hold.

Also the small HTTP helper that ``s3sync status`` shares (:func:`daemon_get`).
"""

from __future__ import annotations

import argparse
import json
import sys
import urllib.error
import urllib.parse
import urllib.request
from typing import Any

from s3sync.cli.common import EXIT_FAIL, EXIT_OK, EXIT_USAGE, fail
from s3sync.config import Settings, load_settings


def add_wait_parser(sub: Any) -> None:
    p = sub.add_parser("wait", help="wait until the daemon's mirror holds KEY (read-your-writes)")
    p.add_argument("key", metavar="KEY", help="the object key")
    which = p.add_mutually_exclusive_group()
    which.add_argument("--etag", help="wait for this ETag (quotes optional)")
    which.add_argument("--version-id", dest="version_id", help="wait for this version id")
    which.add_argument("--absent", action="store_true", help="wait until KEY is not in the mirror")
    p.add_argument("--timeout", type=float, default=None, help="seconds, at most 300 (default 30)")
    p.add_argument("--config", metavar="FILE", help="TOML config file (api.host/port/token)")
    p.add_argument("--url", help="daemon base URL (default from api.host/api.port)")
    p.add_argument("--json", action="store_true", help="print the daemon's answer as JSON")


def base_url(settings: Settings, url: str | None) -> str:
    if url is not None:
        parts = urllib.parse.urlsplit(url)
        if parts.scheme not in ("http", "https") or not parts.hostname:
            from s3sync.errors import ConfigError

            raise ConfigError(f"--url {url!r}: not an http(s) URL; try --url http://HOST:PORT")
        return url.rstrip("/")
    host = settings.api.host if settings.api.host not in ("0.0.0.0", "::") else "127.0.0.1"
    scheme = "https" if settings.api.tls_cert else "http"
    return f"{scheme}://{host}:{settings.api.port}"


def daemon_get(settings: Settings, url: str, timeout: float) -> tuple[int, dict[str, Any]]:
    """GET ``url`` with the configured token; (status, JSON body). Raises OSError when unreachable."""
    req = urllib.request.Request(url, headers={"Accept": "application/json"})
    if settings.api.token is not None:
        req.add_header("Authorization", f"Bearer {settings.api.token.get_secret_value()}")
    try:
        with urllib.request.urlopen(req, timeout=timeout) as resp:
            return resp.status, json.loads(resp.read())
    except urllib.error.HTTPError as exc:
        try:
            body = json.loads(exc.read())
        except ValueError:
            body = {"error": "http", "message": f"{exc.code} {exc.reason}"}
        return exc.code, body if isinstance(body, dict) else {"error": "http", "message": str(body)}


def cmd_wait(args: argparse.Namespace) -> int:
    settings = load_settings(args.config)
    base = base_url(settings, args.url)
    query: dict[str, str] = {"key": args.key}
    if args.etag is not None:
        query["etag"] = args.etag
    if args.version_id is not None:
        query["version_id"] = args.version_id
    if args.absent:
        query["absent"] = "true"
    if args.timeout is not None:
        query["timeout"] = repr(args.timeout)
    budget = (args.timeout if args.timeout is not None else 30.0) + 30.0
    try:
        status, body = daemon_get(settings, f"{base}/api/v1/wait?{urllib.parse.urlencode(query)}", budget)
    except (urllib.error.URLError, OSError, ValueError) as exc:
        reason = getattr(exc, "reason", exc)
        return fail(args, EXIT_FAIL, "unreachable", f"cannot reach the daemon at {base}: {reason}")
    if status == 200:
        if args.json:
            print(json.dumps(body))
        else:
            etag = f" etag {body.get('etag')}" if body.get("etag") else ""
            print(f"{body.get('status')}: {body.get('path')}{etag}")
        return EXIT_OK
    if status == 504:
        if args.json:
            print(json.dumps(body))
        print(f"s3sync: {body.get('message')} (the mirror has it {body.get('status')})", file=sys.stderr)
        return EXIT_FAIL
    code, message = str(body.get("error", "http")), str(body.get("message", f"HTTP {status}"))
    if status == 401:
        message = f"the daemon at {base} wants a token: set api.token (S3SYNC_API__TOKEN)"
    return fail(args, EXIT_USAGE if status in (400, 401) else EXIT_FAIL, code, message)


__all__ = ["add_wait_parser", "base_url", "cmd_wait", "daemon_get"]
