"""``sync`` and ``verify``: one pass against the bucket, a summary, an exit code.

0 success, 1 any failure or drift, 2 a set-up mistake (a :class:`FatalError` of the pass).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys

from s3sync.cli.bootstrap import configure_logs, run_loop
from s3sync.cli.common import EXIT_FAIL, EXIT_OK, EXIT_USAGE, load, preflight
from s3sync.cli.interrupt import Interrupt, guard_startup
from s3sync.cli.output import print_sync, print_verify
from s3sync.cli.progress import ProgressBar, spinner
from s3sync.config import check_syncing


def cmd_sync(args: argparse.Namespace) -> int:
    settings = load(args)
    check_syncing(settings)
    configure_logs(settings, quiet=True)
    from s3sync.s3.bucket import Bucket
    from s3sync.sync.engine import SyncReport, open_engine

    default_dir = type(settings.sync).model_fields["local_dir"].default
    if args.dest is None and settings.sync.local_dir == default_dir:
        # the old service's default: say so rather than fill ./downloaded_files unasked
        where = settings.sync.local_dir.resolve()
        print(f"s3sync: no --dest given: mirroring into {where} (sync.local_dir)", file=sys.stderr)

    show_bar = sys.stderr.isatty() and not args.json and not args.no_progress
    stop = Interrupt()

    async def main() -> SyncReport:
        stop.install()
        bar = ProgressBar() if show_bar else None

        def progress(r: SyncReport) -> None:
            stop.progress(r)
            if bar is not None:
                bar.update(r)

        try:
            # S3 first: a set-up mistake there leaves nothing behind (no mirror, no state)
            async with Bucket(settings.s3, fast_get=settings.s3.fast_get) as probe:
                await preflight(probe)
            async with open_engine(settings) as engine:
                stop.engine = engine
                if bar is not None:
                    bar.follow(engine)
                return await engine.reconcile(
                    dry_run=args.dry_run, progress=progress, version_at=args.version_at
                )
        except asyncio.CancelledError:
            if stop.signum is None:
                raise
            task = asyncio.current_task()
            if task is not None:
                task.uncancel()
            return stop.summary(args.dry_run)
        finally:
            if bar is not None:
                bar.stop()

    guard_startup()
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
        print_sync(report)
    if fatal:
        return EXIT_USAGE
    if stop.signum is not None:
        return stop.exit_code
    return EXIT_OK if report.ok else EXIT_FAIL


def cmd_verify(args: argparse.Namespace) -> int:
    settings = load(args)
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
            await preflight(bucket)
            return await verify(
                bucket, mirror, filt, checksum=not args.no_checksum, version_at=args.version_at
            )

    show = sys.stderr.isatty() and not args.json
    with spinner(f"verifying s3://{settings.s3.bucket}", show):
        report: VerifyReport = run_loop(main)
    if args.json:
        print(json.dumps(report.as_json()))
    else:
        print_verify(report)
    return EXIT_OK if report.identical else EXIT_FAIL


__all__ = ["cmd_sync", "cmd_verify"]
