"""Command line: parse args → Settings → logs.configure() → run. Exit codes are the contract.

``sync``/``verify``: 0 success, 1 any failure or drift, 2 bad usage/config. A set-up mistake that
no retry can fix — wrong region, no credentials, missing bucket, unwritable directory, port in
use — is a :class:`FatalError` and also exits 2, with one line on stderr naming the fix, so that
scripts and systemd (``RestartPreventExitStatus=2``) treat it like bad configuration. Transient
trouble (S3 unreachable, 5xx) exits 1.

With ``--json`` stdout carries exactly one JSON document (the report, or
``{"error": ..., "message": ...}``); logs, progress and error lines go to stderr.

The commands live in their own modules (``commands``, ``serve``); this one maps names to them.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Callable, Sequence

from s3sync.cli import bootstrap  # first: its start-up steps run before the other imports
from s3sync.cli.commands import cmd_sync, cmd_verify
from s3sync.cli.common import EXIT_FAIL, EXIT_USAGE, fail
from s3sync.cli.parser import UsageError, build_parser
from s3sync.cli.serve import cmd_demo, cmd_serve, cmd_status
from s3sync.cli.wait import cmd_wait
from s3sync.errors import ConfigError, FatalError, S3SyncError


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    argv = list(sys.argv[1:] if argv is None else argv)
    try:
        args = parser.parse_args(argv)
    except UsageError as exc:
        if "--json" in argv:  # the README's promise holds for a bad flag too: one JSON object
            print(json.dumps({"error": "usage", "message": exc.message}))
        return EXIT_USAGE
    bootstrap.end_startup()
    handlers: dict[str, Callable[[argparse.Namespace], int]] = {
        "sync": cmd_sync,
        "verify": cmd_verify,
        "serve": cmd_serve,
        "status": cmd_status,
        "demo": cmd_demo,
        "wait": cmd_wait,
    }
    try:
        return handlers[args.command](args)
    except ConfigError as exc:
        return fail(args, EXIT_USAGE, exc.code, str(exc))
    except FatalError as exc:
        # Nothing will work until an operator fixes the set-up: like bad config, not a failed run.
        return fail(args, EXIT_USAGE, exc.code, str(exc))
    except S3SyncError as exc:
        return fail(args, EXIT_FAIL, exc.code, str(exc))
    except KeyboardInterrupt:
        return 130


__all__ = ["build_parser", "main"]


if __name__ == "__main__":
    raise SystemExit(main())
