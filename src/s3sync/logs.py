"""structlog configured once: JSON for services, console on a TTY; stdlib logs routed through it.

``log.file`` is opened with a handler that reopens the file on SIGHUP (see
:func:`reopen`), so logrotate's ``postrotate kill -HUP`` works.

Our own lines take structlog's native path: a level-filtering bound logger
(a disabled level costs one method call), our processors, and the rendered
line written straight to the one handler :func:`configure` installed. Routing
them through the stdlib ``logging`` machinery first (LogRecord, findCaller,
ProcessorFormatter) cost about a sixth of the daemon's CPU at 1,000 events/s,
where every applied file writes one INFO line. Foreign stdlib loggers
(aiohttp, botocore) still go through ``logging`` and the same handler, rendered
by the same processors, so both kinds of line look alike and share the file.
"""

from __future__ import annotations

import logging
import re
import sys
from collections.abc import MutableMapping
from pathlib import Path
from typing import Any

import structlog

_SECRET_KEYS = ("token", "secret", "password", "authorization", "signature", "aws_secret_access_key")
_SECRET_NAME = re.compile("|".join(_SECRET_KEYS), re.IGNORECASE)
_NOT_SECRET_NAMES = frozenset({"signature_ok"})
_secrets: set[str] = set()
_secret_re: re.Pattern[str] | None = None  # one alternation of every registered value
_secret_name_seen: dict[str, bool] = {}  # field name -> secret-named? (names repeat on every line)
_file_handler: logging.FileHandler | None = None
_handler: logging.Handler | None = None  # where our own (native structlog) lines are written


def register_secret(value: str | None) -> None:
    """Values that must never appear in a log line (replaced by ``**redacted**``)."""
    global _secret_re
    if value and len(value) >= 4:
        _secrets.add(value)
        # longest first, so a secret containing another is cut out whole
        ordered = sorted(_secrets, key=len, reverse=True)
        _secret_re = re.compile("|".join(re.escape(s) for s in ordered))


def _scrub(value: Any) -> Any:
    """Replace every registered secret inside strings, however deeply nested."""
    pattern = _secret_re
    if pattern is None:
        return value
    if isinstance(value, str):
        return pattern.sub("**redacted**", value) if pattern.search(value) else value
    if value is None or isinstance(value, (int, float, bool)):
        return value
    if isinstance(value, dict):
        return {k: _scrub(v) for k, v in value.items()}
    if isinstance(value, (list, tuple, set)):
        return [_scrub(v) for v in value]
    text = str(value)  # an exception or any object a renderer would stringify
    return pattern.sub("**redacted**", text) if pattern.search(text) else value


def _secret_named(k: str) -> bool:
    named = _secret_name_seen.get(k)
    if named is None:
        named = bool(_SECRET_NAME.search(k)) and k not in _NOT_SECRET_NAMES
        if len(_secret_name_seen) < 4096:  # names are code-defined; a bound: never a leak
            _secret_name_seen[k] = named
    return named


def _redact(_: Any, __: str, event: MutableMapping[str, Any]) -> MutableMapping[str, Any]:
    """Secret-named fields are blanked; registered secret values are cut out of everything else.

    On the stdlib path it runs twice: early (so no later processor sees a secret)
    and again last, after tracebacks have been rendered to text — an exception
    message (say, aiohttp echoing a malformed header) can carry a secret too. The
    native path renders tracebacks first and needs it once.
    """
    scrub = _secret_re is not None
    for k, v in list(event.items()):
        if _secret_named(k):
            event[k] = "**redacted**"
        elif scrub and not k.startswith("_") and k not in ("exc_info", "stack_info"):
            event[k] = _scrub(v)  # exc_info is scrubbed once rendered, by the second pass
    return event


def _add_logger_name(logger: Any, _: str, event: MutableMapping[str, Any]) -> MutableMapping[str, Any]:
    name = getattr(logger, "name", None)
    if name:
        event.setdefault("logger", name)
    return event


class _Sink:
    """The native path's logger: writes a rendered line to the handler :func:`configure` installed.

    Under the handler's lock (the same one stdlib lines and :func:`reopen` take),
    so lines never interleave and a rotation never sees half a line.
    """

    __slots__ = ("name",)

    def __init__(self, name: str | None = None) -> None:
        self.name = name

    def msg(self, line: str) -> None:
        handler = _handler
        if handler is None:
            sys.stderr.write(line + "\n")
            return
        stream = getattr(handler, "stream", None)
        if stream is None:  # a handler without a stream: hand it a record
            handler.handle(logging.makeLogRecord({"msg": line, "levelno": logging.INFO}))
            return
        handler.acquire()
        try:
            stream = handler.stream  # type: ignore[attr-defined]  # re-read: reopen() may have replaced it
            stream.write(line + "\n")
            stream.flush()
        except (OSError, ValueError):  # a closed or full stream must not fail the caller
            pass
        finally:
            handler.release()

    debug = info = warning = warn = error = critical = fatal = exception = failure = msg


def _sink_factory(*args: Any) -> _Sink:
    return _Sink(str(args[0]) if args else None)


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
    global _file_handler, _handler
    lvl = getattr(logging, level.upper(), logging.INFO)
    use_console = fmt == "console" or (fmt == "auto" and file is None and sys.stderr.isatty())
    shared: list[Any] = [
        structlog.contextvars.merge_contextvars,
        structlog.stdlib.add_log_level,
        structlog.stdlib.add_logger_name,
        structlog.processors.TimeStamper(fmt="iso", utc=True),
        _redact,
    ]
    # colours only for a terminal: a redirected console log (the demo's, say) stays plain text
    colors = file is None and sys.stderr.isatty()
    # plain tracebacks whether or not rich happens to be imported (the CLI keeps it out of
    # structlog's import, s3sync.cli.bootstrap): the same lines either way, and no warning that
    # format_exc_info already rendered the exception for a "pretty" formatter
    renderer: Any = (
        structlog.dev.ConsoleRenderer(colors=colors, exception_formatter=structlog.dev.plain_traceback)
        if use_console
        else structlog.processors.JSONRenderer()
    )
    structlog.configure(
        # the level filter is the bound logger's class: a disabled level renders nothing
        processors=[
            structlog.contextvars.merge_contextvars,
            structlog.processors.add_log_level,
            _add_logger_name,
            structlog.processors.TimeStamper(fmt="iso", utc=True),
            structlog.processors.format_exc_info,
            _redact,
            *([_escape_controls] if use_console else []),
            renderer,
        ],
        logger_factory=_sink_factory,
        wrapper_class=structlog.make_filtering_bound_logger(lvl),
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
    _handler = handler
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
