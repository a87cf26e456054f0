"""Command line: parse args → Settings → logs.configure() → run. Exit codes are the contract.

``sync``/``verify``: 0 success, 1 any failure or drift, 2 bad usage/config. A set-up mistake that
no retry can fix — wrong region, no credentials, missing bucket, unwritable directory, port in
use — is a :class:`FatalError` and also exits 2, with one line on stderr naming the fix, so that
scripts and systemd (``RestartPreventExitStatus=2``) treat it like bad configuration. Transient
trouble (S3 unreachable, 5xx) exits 1.

With ``--json`` stdout carries exactly one JSON document (the report, or
``{"error": ..., "message": ...}``); logs, progress and error lines go to stderr.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import sys
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from s3sync import __version__
from s3sync.bootstrap import configure_logs, run_loop
from s3sync.config import Settings, check_serving, check_syncing, load_settings
from s3sync.errors import ConfigError, FatalError, S3SyncError
from s3sync.flags import add_bwlimit_flag, add_filter_flags

EXIT_OK, EXIT_FAIL, EXIT_USAGE = 0, 1, 2


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> None:  # type: ignore[override]
        self.print_usage(sys.stderr)
        self.exit(EXIT_USAGE, f"s3sync: error: {message}\n")


def _source_flags(p: argparse.ArgumentParser) -> None:
    p.add_argument("--config", metavar="FILE", help="TOML config file")
    p.add_argument("--bucket", help="bucket name (s3.bucket)")
    p.add_argument("--endpoint-url", metavar="URL", help="S3 endpoint (s3.endpoint_url)")
    p.add_argument("--region", help="AWS region (s3.region)")
    p.add_argument("--dest", metavar="DIR", help="local mirror directory (sync.local_dir)")
    p.add_argument("--prefix", help="only keys under this prefix (s3.prefix)")
    p.add_argument(
        "--request-payer",
        action="store_true",
        default=None,
        help="requester-pays bucket: send x-amz-request-payer: requester (s3.request_payer)",
    )
    p.add_argument("--json", action="store_true", help="machine-readable output on stdout")


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(prog="s3sync", description="Keep a local directory an exact mirror of an S3 bucket.")
    parser.add_argument("--version", action="version", version=f"s3sync {__version__}")
    sub = parser.add_subparsers(dest="command", required=True, parser_class=_Parser)

    serve = sub.add_parser("serve", help="run the daemon (API, events, reconcile)")
    serve.add_argument("--config", metavar="FILE", help="TOML config file")
    serve.add_argument("--host", help="API bind address (api.host)")
    serve.add_argument("--port", type=int, help="API port (api.port)")

    sync = sub.add_parser("sync", help="one reconciliation pass, then exit")
    _source_flags(sync)
    sync.add_argument(
        "--delete", action="store_true", default=None, help="delete local files gone from the bucket"
    )
    sync.add_argument("--dry-run", action="store_true", help="report what would change; change nothing")
    sync.add_argument(
        "--allow-empty-source",
        action="store_true",
        default=None,
        help="let an empty listing delete the mirror's files (sync.allow_empty_source); "
        "otherwise such a pass deletes nothing",
    )
    sync.add_argument(
        "--backup-dir",
        metavar="DIR",
        help="move files a delete or an overwrite would destroy to DIR/<key>, outside the mirror "
        "(sync.backup_dir)",
    )
    sync.add_argument("--concurrency", type=int, help="parallel transfers (sync.concurrency)")
    sync.add_argument(
        "--checksum",
        action="store_true",
        default=None,
        help="compare local content with ETags, not just size and mtime",
    )
    sync.add_argument("--no-progress", action="store_true", help="no progress bar even on a terminal")
    sync.add_argument(
        "--exclude-storage-class",
        metavar="CLASS",
        action="append",
        dest="exclude_storage_classes",
        help="skip objects of this storage class without a GET, e.g. GLACIER; repeatable "
        "(sync.exclude_storage_classes)",
    )
    add_bwlimit_flag(sync)
    add_filter_flags(sync)
    sync.add_argument(
        "--inventory",
        metavar="URI",
        help="reconcile from the newest S3 Inventory report under "
        "s3://DEST-BUCKET/PREFIX/SOURCE-BUCKET/CONFIG-ID/ instead of listing (inventory.location)",
    )
    sync.add_argument(
        "--shard", metavar="K/N", help="take only shard K of N (0 <= K < N) of the keys (sync.shard)"
    )

    verify = sub.add_parser("verify", help="compare the mirror with the bucket; exit 1 on drift")
    _source_flags(verify)
    verify.add_argument("--no-checksum", action="store_true", help="compare presence and size only")
    add_filter_flags(verify)

    status = sub.add_parser("status", help="ask a running daemon for its state")
    status.add_argument("--config", metavar="FILE", help="TOML config file")
    status.add_argument("--url", help="daemon base URL (default from api.host/api.port)")
    status.add_argument("--json", action="store_true")

    demo = sub.add_parser("demo", help="zero set-up demo against an embedded S3 (moto)")
    demo.add_argument("--port", type=int, default=8888, help="API port (default 8888; 0 = any free port)")
    demo.add_argument("--dir", default="demo-mirror", help="mirror directory (default ./demo-mirror)")
    demo.add_argument("--exit-after", type=float, default=None, help=argparse.SUPPRESS)
    return parser


def _overrides(args: argparse.Namespace) -> dict[str, dict[str, Any]]:
    o: dict[str, dict[str, Any]] = {"s3": {}, "sync": {}, "api": {}, "inventory": {}}
    for attr, section, key in (
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
    ):
        v = getattr(args, attr, None)
        if v is not None:
            o[section][key] = v
    return {k: v for k, v in o.items() if v}


def _load(args: argparse.Namespace) -> Settings:
    return load_settings(getattr(args, "config", None), _overrides(args))


async def _preflight(bucket: Any) -> None:
    """HEAD the bucket first, so a set-up mistake is one clear line, not N failed objects.

    Only fatal answers stop the run; a transient one (5xx, a reset) is left to the pass's own
    retries, which would have hit it anyway.
    """
    from s3sync.errors import RetryableError

    with contextlib.suppress(RetryableError):
        await bucket.check()


class _ProgressBar:
    """A rich progress bar on stderr: files done of planned, files/s, MB/s, elapsed and ETA."""

    def __init__(self) -> None:
        from rich.console import Console
        from rich.progress import (
            BarColumn,
            MofNCompleteColumn,
            Progress,
            TextColumn,
            TimeElapsedColumn,
            TimeRemainingColumn,
        )

        self._progress = Progress(
            TextColumn("[bold]sync"),
            BarColumn(),
            MofNCompleteColumn(),
            TextColumn("{task.fields[rate]}"),
            TimeElapsedColumn(),
            TextColumn("ETA"),
            TimeRemainingColumn(),
            console=Console(stderr=True),
            transient=True,
        )
        self._task = self._progress.add_task("sync", total=None, rate="")
        self._progress.start()
        self._t0 = time.monotonic()

    def update(self, r: Any) -> None:
        done = r.downloaded + r.failed + r.skipped + r.unchanged + r.deleted
        elapsed = max(time.monotonic() - self._t0, 1e-6)
        rate = f"{r.downloaded / elapsed:,.0f} files/s {r.bytes / elapsed / 1e6:,.1f} MB/s"
        self._progress.update(
            self._task, completed=done, rate=rate, total=max(done, r.planned + r.unchanged + r.skipped)
        )

    def stop(self) -> None:
        self._progress.stop()


def cmd_sync(args: argparse.Namespace) -> int:
    settings = _load(args)
    check_syncing(settings)
    configure_logs(settings, quiet=True)
    from s3sync.runtime import open_engine
    from s3sync.sync.engine import SyncReport

    show_bar = sys.stderr.isatty() and not args.json and not args.no_progress

    async def main() -> SyncReport:
        bar = _ProgressBar() if show_bar else None
        try:
            async with open_engine(settings) as engine:
                await _preflight(engine.bucket)
                return await engine.reconcile(
                    dry_run=args.dry_run,
                    progress=bar.update if bar is not None else None,
                    version_at=args.version_at,
                )
        finally:
            if bar is not None:
                bar.stop()

    report: SyncReport = run_loop(main)
    fatal = report.aborted is not None and any(e.get("error") == "fatal" for e in report.errors)
    if args.json:
        print(json.dumps(report.as_json()))
        if fatal:
            print(f"s3sync: {report.errors[0]['message']}", file=sys.stderr)
    elif fatal:
        print(report.summary_line())
        print(f"s3sync: {report.errors[0]['message']}", file=sys.stderr)
    else:
        for err in report.errors[:50]:
            print(f"error: {err['key'] or '-'}: {err['message']}", file=sys.stderr)
        if len(report.errors) > 50:
            print(f"... and {len(report.errors) - 50} more errors", file=sys.stderr)
        print(report.summary_line())
    if fatal:
        return EXIT_USAGE
    return EXIT_OK if report.ok else EXIT_FAIL


def cmd_verify(args: argparse.Namespace) -> int:
    settings = _load(args)
    check_syncing(settings)
    configure_logs(settings, quiet=True)
    from s3sync.local.mirror import Mirror
    from s3sync.s3.bucket import Bucket
    from s3sync.sync.filters import Selection
    from s3sync.sync.verify import VerifyReport, verify

    async def main() -> VerifyReport:
        mirror = Mirror(settings.sync.local_dir)
        filt = Selection.from_settings(settings.sync, settings.s3.prefix)
        async with Bucket(settings.s3, fast_get=False) as bucket:
            await _preflight(bucket)
            return await verify(
                bucket, mirror, filt, checksum=not args.no_checksum, version_at=args.version_at
            )

    report: VerifyReport = run_loop(main)
    if args.json:
        print(json.dumps(report.as_json()))
    else:
        for d in report.drift:
            print(f"{d.kind} {d.key}")
        word = "identical" if report.identical else f"{len(report.drift)} differences"
        print(f"verified {report.checked} objects: {word}")
    return EXIT_OK if report.identical else EXIT_FAIL


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
    settings = _load(args)
    check_serving(settings)
    _check_port_free(settings.api.host, settings.api.port)
    configure_logs(settings)
    from s3sync.daemon import serve

    return int(run_loop(lambda: serve(settings)))


def cmd_status(args: argparse.Namespace) -> int:
    """GET /api/v1/stats from a running daemon (same config file, so same port and token)."""
    import urllib.error
    import urllib.request

    settings = load_settings(args.config)
    host = settings.api.host if settings.api.host not in ("0.0.0.0", "::") else "127.0.0.1"
    scheme = "https" if settings.api.tls_cert else "http"
    base = (args.url or f"{scheme}://{host}:{settings.api.port}").rstrip("/")
    req = urllib.request.Request(base + "/api/v1/stats")
    if settings.api.token is not None:
        req.add_header("Authorization", f"Bearer {settings.api.token.get_secret_value()}")
    try:
        with urllib.request.urlopen(req, timeout=5) as resp:
            data = json.loads(resp.read())
    except urllib.error.HTTPError as exc:
        if exc.code == 401:
            return _fail(
                args,
                EXIT_USAGE,
                "unauthorized",
                f"the daemon at {base} wants a token: set api.token (S3SYNC_API__TOKEN) "
                f"to the daemon's value",
            )
        return _fail(args, EXIT_FAIL, "http", f"the daemon at {base} answered {exc.code} {exc.reason}")
    except (urllib.error.URLError, OSError, ValueError) as exc:
        reason = getattr(exc, "reason", exc)
        return _fail(
            args,
            EXIT_FAIL,
            "unreachable",
            f"cannot reach the daemon at {base}: {reason} (is `s3sync serve` running?)",
        )
    if args.json:
        print(json.dumps(data))
    else:
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


def _fail(args: argparse.Namespace, code: int, error: str, message: str) -> int:
    """One line on stderr; with ``--json`` also one JSON object on stdout, so scripts can parse it."""
    if getattr(args, "json", False):
        print(json.dumps({"error": error, "message": message}))
    print(f"s3sync: {message}", file=sys.stderr)
    return code


def cmd_demo(args: argparse.Namespace) -> int:
    from s3sync.demo import run_demo

    return run_demo(port=args.port, directory=Path(args.dir), exit_after=args.exit_after)


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    handlers: dict[str, Callable[[argparse.Namespace], int]] = {
        "sync": cmd_sync,
        "verify": cmd_verify,
        "serve": cmd_serve,
        "status": cmd_status,
        "demo": cmd_demo,
    }
    try:
        return handlers[args.command](args)
    except ConfigError as exc:
        return _fail(args, EXIT_USAGE, exc.code, str(exc))
    except FatalError as exc:
        # Nothing will work until an operator fixes the set-up: like bad config, not a failed run.
        return _fail(args, EXIT_USAGE, exc.code, str(exc))
    except S3SyncError as exc:
        return _fail(args, EXIT_FAIL, exc.code, str(exc))
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":
    raise SystemExit(main())
