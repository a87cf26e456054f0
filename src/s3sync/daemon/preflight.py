"""Start-up check of ``serve``: a set-up mistake is exit 2, not a retry loop (README "exit codes")."""

from __future__ import annotations

import asyncio
import contextlib

from s3sync.config import Settings
from s3sync.errors import RetryableError


async def check_bucket(settings: Settings) -> None:
    """A bucket that does not exist, or lives in another region, is a set-up mistake: exit 2 now.

    Only a definite answer from S3 (:class:`FatalError`) stops the start; S3 being
    unreachable or slow (retryable, or no answer within the connect timeout) is
    left to the daemon, which keeps trying and reports it in /health.
    """
    from s3sync.s3.bucket import Bucket

    wait = settings.s3.connect_timeout_seconds + 5

    async with Bucket(settings.s3, fast_get=settings.s3.fast_get, timeout=wait) as bucket:
        with contextlib.suppress(RetryableError, TimeoutError):
            await asyncio.wait_for(bucket.check(), wait)


__all__ = ["check_bucket"]
