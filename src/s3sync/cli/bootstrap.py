"""Process set-up shared by every command (``cli``) and the demo: logs and the event loop.

Lives apart from ``cli`` so that ``demo`` can use it without importing the
command line's private names (and without an import cycle between the two).
"""

from __future__ import annotations

import asyncio
import os
from collections.abc import Callable
from typing import Any

from s3sync.config import Settings


def configure_logs(settings: Settings, quiet: bool = False) -> None:
    """structlog per ``[log]``; every secret we know of is registered for redaction first."""
    from s3sync import logs

    level = settings.log.level
    if quiet and level == "INFO":
        # a one-shot command prints its own per-key report: warnings would say each thing twice
        level = "ERROR"
    logs.configure(level, settings.log.format, settings.log.file)
    for secret in (settings.api.token, settings.api.notification_secret):
        if secret is not None:
            logs.register_secret(secret.get_secret_value())
    for name in ("AWS_SECRET_ACCESS_KEY", "AWS_SESSION_TOKEN", "AWS_SECURITY_TOKEN"):
        logs.register_secret(os.environ.get(name))


def run_loop(coro_fn: Callable[[], Any]) -> Any:
    """Run ``coro_fn()`` to completion on uvloop (measurably less per-request CPU) where available."""
    try:
        import uvloop

        return uvloop.run(coro_fn())
    except ImportError:  # pragma: no cover - uvloop is a dependency on Linux
        return asyncio.run(coro_fn())
