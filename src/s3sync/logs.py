"""structlog configured once: JSON for services, console on a TTY; stdlib logs routed through it.

``log.file`` is opened with a handler that reopens the file on SIGHUP (see
:func:`reopen`), so logrotate's ``postrotate kill -HUP`` works.
"""

from __future__ import annotations

import logging
import sys
from collections.abc import MutableMapping
from pathlib import Path
from typing import Any

import structlog

_SECRET_KEYS = ("token", "secret", "password", "authorization", "signature", "aws_secret_access_key")
_secrets: set[str] = set()
_file_handler: logging.FileHandler | None = None


def register_secret(value: str | None) -> None:
    """Values that must never appear in a log line (replaced by ``**redacted**``)."""
    if value and len(value) >= 4:
        _secrets.add(value)


def _scrub(value: Any) -> Any:
    """Replace every registered secret inside strings, however deeply nested."""
    if isinstance(value, str):
        for s in _secrets:
            if s in value:
                value = value.replace(s, "**redacted**")
        return value
    if isinstance(value, dict):
        return {k: _scrub(v) for k, v in value.items()}
    if isinstance(value, (list, tuple, set)):
        return [_scrub(v) for v in value]
    if value is None or isinstance(value, (int, float, bool)):
        return value
    text = str(value)  # an exception or any object a renderer would stringify
    return _scrub(text) if any(s in text for s in _secrets) else value


def _redact(_: Any, __: str, event: MutableMapping[str, Any]) -> MutableMapping[str, Any]:
    """Secret-named fields are blanked; registered secret values are cut out of everything else.

    It runs twice: early (so no later processor sees a secret) and again last,
    after tracebacks have been rendered to text — an exception message (say,
    aiohttp echoing a malformed header) can carry a secret too.
    """
    for k, v in list(event.items()):
        if any(s in k.lower() for s in _SECRET_KEYS) and k not in ("signature_ok",):
            event[k] = "**redacted**"
        elif _secrets and not k.startswith("_") and k not in ("exc_info", "stack_info"):
            event[k] = _scrub(v)  # exc_info is scrubbed once rendered, by the second pass
    return event


# C0 controls, DEL and C1 controls -> a visible escape: a key with a NUL or an ESC sequence must
# not write raw control bytes to a terminal (JSON output escapes them already)
_CONTROLS = {c: f"\\x{c:02x}" for c in (*range(0x20), *range(0x7F, 0xA0))}


def _escape_controls(_: Any, __: str, event: MutableMapping[str, Any]) -> MutableMapping[str, Any]:
    """Console only: escape control characters in every value but the rendered traceback."""
    for k, v in event.items():
        if k != "exception" and isinstance(v, str):
            event[k] = v.translate(_CONTROLS)
    return event


def configure(level: str = "INFO", fmt: str = "auto", file: Path | None = None) -> None:
    global _file_handler
    lvl = getattr(logging, level.upper(), logging.INFO)
    use_console = fmt == "console" or (fmt == "auto" and file is None and sys.stderr.isatty())
    shared: list[Any] = [
        structlog.contextvars.merge_contextvars,
        structlog.stdlib.add_log_level,
        structlog.stdlib.add_logger_name,
        structlog.processors.TimeStamper(fmt="iso", utc=True),
        _redact,
    ]
    renderer: Any = structlog.dev.ConsoleRenderer() if use_console else structlog.processors.JSONRenderer()
    structlog.configure(
        # filter first: a disabled level must not pay for timestamps and rendering (hot path)
        processors=[
            structlog.stdlib.filter_by_level,
            *shared,
            structlog.stdlib.ProcessorFormatter.wrap_for_formatter,
        ],
        logger_factory=structlog.stdlib.LoggerFactory(),
        wrapper_class=structlog.stdlib.BoundLogger,
        cache_logger_on_first_use=False,
    )
    formatter = structlog.stdlib.ProcessorFormatter(
        foreign_pre_chain=shared,
        processors=[
            structlog.stdlib.ProcessorFormatter.remove_processors_meta,
            structlog.processors.format_exc_info,
            _redact,
            *([_escape_controls] if use_console else []),
            renderer,
        ],
    )
    root = logging.getLogger()
    for h in list(root.handlers):
        root.removeHandler(h)
    handler: logging.Handler
    if file is not None:
        file.parent.mkdir(parents=True, exist_ok=True)
        handler = _file_handler = logging.FileHandler(file, encoding="utf-8", delay=False)
    else:
        handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(formatter)
    root.addHandler(handler)
    root.setLevel(lvl)
    for noisy in ("botocore", "aiobotocore", "aioboto3", "aiohttp.access", "urllib3", "werkzeug"):
        logging.getLogger(noisy).setLevel(max(lvl, logging.WARNING))


def reopen() -> None:
    """Reopen ``log.file`` after rotation (called on SIGHUP)."""
    if _file_handler is not None:
        _file_handler.acquire()
        try:
            _file_handler.close()
            _file_handler.stream = _file_handler._open()
        finally:
            _file_handler.release()
