"""s3sync: keep a local directory an exact, always-current mirror of an S3 bucket."""

from __future__ import annotations

import sys

__version__ = "0.1.0"


def _import_structlog_without_rich() -> None:
    """Import structlog with ``rich`` hidden, so a one-shot ``sync`` never loads rich.

    structlog's ``dev`` and ``tracebacks`` modules import rich (and through it
    pygments) whenever it is installed, only to offer pretty tracebacks; that is
    the largest import of a no-change ``sync`` after pydantic (W2 is mostly
    start-up). rich is installed for the progress bar, which imports it itself
    when a bar is shown. With rich hidden here structlog's console renderer
    formats exceptions as plain tracebacks; nothing else changes.
    """
    if "structlog" in sys.modules or "rich" in sys.modules:
        return
    sys.modules["rich"] = None  # type: ignore[assignment]  # `import rich` raises ImportError
    try:
        import structlog  # noqa: F401
    finally:
        if "rich" in sys.modules and sys.modules["rich"] is None:
            del sys.modules["rich"]


_import_structlog_without_rich()
