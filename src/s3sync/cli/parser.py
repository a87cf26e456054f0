"""The argument parser: every subcommand and flag, in one place the README's tables are checked against.

``build_parser`` is public (tests/unit/test_readme.py reads it); a usage mistake exits 2.
"""

from __future__ import annotations

import argparse
import sys

from s3sync import __version__
from s3sync.cli.common import EXIT_USAGE
from s3sync.cli.flags import add_bwlimit_flag, add_delete_flags, add_filter_flags
from s3sync.cli.wait import add_wait_parser


class UsageError(SystemExit):
    """A usage mistake: exit 2 like argparse's own, but the message stays readable for ``--json``."""

    def __init__(self, message: str) -> None:
        super().__init__(EXIT_USAGE)
        self.message = message


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> None:  # type: ignore[override]
        self.print_usage(sys.stderr)
        print(f"s3sync: error: {message}", file=sys.stderr)
        raise UsageError(message)


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
    add_delete_flags(sync)
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
    add_wait_parser(sub)  # s3sync wait KEY: cli/wait.py

    demo = sub.add_parser("demo", help="zero set-up demo against an embedded S3 (moto)")
    demo.add_argument("--port", type=int, default=8888, help="API port (default 8888; 0 = any free port)")
    demo.add_argument("--dir", default="demo-mirror", help="mirror directory (default ./demo-mirror)")
    demo.add_argument("--exit-after", type=float, default=None, help=argparse.SUPPRESS)
    return parser


__all__ = ["UsageError", "build_parser"]
