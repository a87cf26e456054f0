"""Process set-up shared by every command (``cli``) and the demo: imports, logs and the event loop.

Lives apart from ``cli`` so that ``demo`` can use it without importing the
command line's private names (and without an import cycle between the two).
``s3sync.cli`` imports this module before any other of its own, so
:func:`pause_gc` and :func:`import_structlog` run before the bulk of the imports.
"""

from __future__ import annotations

import gc
import os
import sys
from collections.abc import Callable
from typing import Any

_gc_paused = False


def _is_the_program() -> bool:
    """True in the ``s3sync`` program (the console script or ``python -m s3sync``), not in an importer."""
    main = sys.modules.get("__main__")
    spec = getattr(main, "__spec__", None)
    if spec is not None and spec.name == "s3sync.__main__":
        return True
    return os.path.basename(getattr(main, "__file__", None) or "") == "s3sync"


def pause_gc() -> None:
    """No cyclic garbage collection while the program imports its modules; see :func:`end_startup`.

    Imports build tens of thousands of long-lived objects (classes, dataclasses'
    generated methods, pydantic schemas) and almost no garbage, yet each 700 new
    container objects start a collection that walks them all again: about 100
    collections in a one-shot ``sync``'s start-up, 30-60 ms of its ~0.3 s of CPU
    (the no-change ``sync`` of 20 objects measured 0.86 x the CPU with the pause,
    15 interleaved pairs). Only when this process is the ``s3sync`` program: a test
    or a program that imports :mod:`s3sync.cli` keeps its collector as it was.
    """
    global _gc_paused
    if gc.isenabled() and _is_the_program():
        gc.disable()
        _gc_paused = True


def end_startup() -> None:
    """Imports done: freeze what they built (never walked again) and let the collector run.

    :func:`s3sync.cli.main` calls it once the arguments are parsed, before the
    command runs; a second call does nothing.
    """
    global _gc_paused
    if _gc_paused:
        _gc_paused = False
        gc.freeze()
        gc.enable()


def import_structlog() -> None:
    """Import structlog without letting it load ``rich``: the program's choice, made once, here.

    structlog's package ``__init__`` imports its ``dev`` and ``tracebacks``
    modules, and they import ``rich.console``, ``rich.traceback`` and
    ``rich.pretty`` (and through them pygments) whenever rich is installed, only
    to offer pretty tracebacks. That is about 0.12 s of CPU, a third of a
    one-shot ``sync``'s start-up (W2, W4c), and no part of structlog can be
    imported without its ``__init__``. s3sync never uses those tracebacks
    (:func:`s3sync.logs.configure` names ``plain_traceback``), and rich is installed
    for the progress bar, which imports it itself when a bar is shown.

    So the ``s3sync`` program, which owns its process, marks rich unimportable
    (``sys.modules["rich"] = None``, Python's documented way to make an import
    raise ImportError) for the length of structlog's import only, then takes the
    mark away. Importing the library (``import s3sync``) does none of this; a
    program that imports structlog itself first just pays for rich.
    """
    if "structlog" in sys.modules or "rich" in sys.modules:
        return
    sys.modules["rich"] = None  # type: ignore[assignment]
    try:
        import structlog  # noqa: F401
    finally:
        if "rich" in sys.modules and sys.modules["rich"] is None:
            del sys.modules["rich"]


pause_gc()
import_structlog()

from s3sync.config import Settings  # noqa: E402  (after structlog: nothing may load it first)


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
    end_startup()  # a no-op after main(); here for a loop started without it (the demo's callers)
    try:
        import uvloop

        return uvloop.run(coro_fn())
    except ImportError:  # pragma: no cover - uvloop is a dependency on Linux
        import asyncio

        return asyncio.run(coro_fn())
