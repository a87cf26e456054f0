"""``serve``, ``status`` and ``demo``: the daemon, a question to a running one, the zero set-up demo."""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from s3sync.cli.bootstrap import configure_logs, run_loop
from s3sync.cli.common import EXIT_FAIL, EXIT_OK, EXIT_USAGE, fail, load
from s3sync.config import check_serving, load_settings
from s3sync.errors import ConfigError, FatalError


def _check_port_free(host: str, port: int) -> None:
    """Fail in a second with a clear line when the API port is taken.

    The daemon binds only after opening the state store and checking S3, which can take a
    while; probing first turns the common case (the old FastAPI service or a second s3sync
    still on the port) into an immediate exit 2. SO_REUSEADDR keeps TIME_WAIT from counting.
    """
    import socket

    if port == 0:
        return
    try:
        infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE)
    except socket.gaierror as exc:
        raise ConfigError(f"api.host: cannot resolve {host!r}: {exc.strerror}") from exc
    for family, type_, proto, _, addr in infos:
        with socket.socket(family, type_, proto) as sock:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            try:
                sock.bind(addr)
            except OSError as exc:
                raise FatalError(
                    f"api.port: cannot listen on {host}:{port}: {(exc.strerror or str(exc)).lower()} "
                    f"(is another process using the port? find it with `ss -ltnp 'sport = :{port}'`, "
                    f"or set api.port)"
                ) from exc


def cmd_serve(args: argparse.Namespace) -> int:
    settings = load(args)
    check_serving(settings)
    _check_port_free(settings.api.host, settings.api.port)
    configure_logs(settings)
    from s3sync.daemon.serve import serve

    return int(run_loop(lambda: serve(settings)))


def cmd_status(args: argparse.Namespace) -> int:
    """GET /api/v1/stats from a running daemon (same config file, so same port and token)."""
    import urllib.error
    import urllib.request

    settings = load_settings(args.config)
    host = settings.api.host if settings.api.host not in ("0.0.0.0", "::") else "127.0.0.1"
    scheme = "https" if settings.api.tls_cert else "http"
    base = (args.url or f"{scheme}://{host}:{settings.api.port}").rstrip("/")
    if args.url is not None:
        _check_url(args.url)
    req = urllib.request.Request(base + "/api/v1/stats")
    if settings.api.token is not None:
        req.add_header("Authorization", f"Bearer {settings.api.token.get_secret_value()}")
    try:
        with urllib.request.urlopen(req, timeout=5) as resp:
            data = json.loads(resp.read())
    except urllib.error.HTTPError as exc:
        if exc.code == 401:
            return fail(
                args,
                EXIT_USAGE,
                "unauthorized",
                f"the daemon at {base} wants a token: set api.token (S3SYNC_API__TOKEN) "
                f"to the daemon's value",
            )
        return fail(args, EXIT_FAIL, "http", f"the daemon at {base} answered {exc.code} {exc.reason}")
    except (urllib.error.URLError, OSError, ValueError) as exc:
        reason = getattr(exc, "reason", exc)
        return fail(
            args,
            EXIT_FAIL,
            "unreachable",
            f"cannot reach the daemon at {base}: {reason} (is `s3sync serve` running?)",
        )
    if args.json:
        print(json.dumps(data))
    else:
        from s3sync.cli.statusview import summary  # a person's summary first, then the counters

        print(summary(settings, base, data) + "\n")
        for k in (
            "files_synced",
            "files_deleted",
            "files_failed",
            "files_skipped",
            "bytes_downloaded",
            "queue_depth",
            "in_flight",
            "journal_pending",
            "last_reconcile",
            "next_reconcile",
            "last_error",
        ):
            print(f"{k:>20}: {data.get(k)}")
    return EXIT_OK


def _check_url(url: str) -> None:
    """``--url`` must be an http(s) URL with a host: ``localhost:8899`` is a usage mistake (exit 2)."""
    import urllib.parse

    try:
        parts = urllib.parse.urlsplit(url)
        parts.port  # noqa: B018 - raises ValueError on a port that is not a number
    except ValueError:
        parts = None
    if parts is None or parts.scheme not in ("http", "https") or not parts.hostname:
        hint = "http://HOST:PORT" if "://" in url else f"http://{url}"
        raise ConfigError(f"--url {url!r}: not an http(s) URL; try --url {hint}")


def cmd_demo(args: argparse.Namespace) -> int:
    from s3sync.cli.demo import run_demo

    return run_demo(port=args.port, directory=Path(args.dir), exit_after=args.exit_after)


__all__ = ["cmd_demo", "cmd_serve", "cmd_status"]
