"""Start-up: what importing the library and starting the program load (W2 and W4c are mostly start-up).

Each check runs a fresh interpreter (a real process), since this test run has long
since imported structlog and rich itself.
"""

from __future__ import annotations

import subprocess
import sys

from s3sync.cli.bootstrap import import_structlog


def _run(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, *args], capture_output=True, text=True, timeout=120, check=False)


def _imported(importtime_stderr: str) -> set[str]:
    """Module names from ``-X importtime`` lines (``import time: self | cumulative | name``)."""
    lines = importtime_stderr.splitlines()
    return {line.rsplit("|", 1)[1].strip() for line in lines if line.startswith("import time:")}


def test_importing_the_library_has_no_side_effects() -> None:
    """``import s3sync`` neither imports structlog nor touches what others may import."""
    out = _run(
        "-c",
        "import sys, s3sync\n"
        "assert 'structlog' not in sys.modules, 'structlog imported'\n"
        "assert 'rich' not in sys.modules, 'rich entry left in sys.modules'\n",
    )
    assert out.returncode == 0, out.stderr


def test_the_program_keeps_rich_out_of_structlog_and_the_bar_can_still_import_it() -> None:
    """structlog is loaded, rich's console and traceback are not; afterwards ``import rich`` works."""
    out = _run(
        "-c",
        "import sys, s3sync.cli\n"
        "assert 'structlog' in sys.modules\n"
        "loaded = sorted(m for m in sys.modules if m == 'rich' or m.startswith(('rich.', 'pygments')))\n"
        "assert not loaded, loaded\n"
        "from rich.console import Console\n"  # what the progress bar does when it is shown
        "import structlog.dev\n"
        "print(structlog.dev.rich is None)\n",
    )
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "True"  # structlog saw no rich: it offers plain tracebacks only


def test_sync_help_imports_neither_rich_nor_the_daemon() -> None:
    """The one-shot command's start-up: no rich, no aiohttp server, no botocore, no prometheus_client."""
    out = _run("-X", "importtime", "-m", "s3sync", "sync", "--help")
    assert out.returncode == 0, out.stderr
    names = _imported(out.stderr)
    assert "structlog" in names and "s3sync.cli.bootstrap" in names
    for heavy in ("rich.console", "pygments", "aiohttp.web", "botocore", "prometheus_client"):
        assert heavy not in names, heavy


def test_import_structlog_is_a_no_op_once_structlog_is_loaded() -> None:
    """Called again (this process has structlog), it leaves ``sys.modules`` as it was."""
    before = dict(sys.modules)
    import_structlog()
    assert sys.modules.get("rich", "absent") is before.get("rich", "absent")
    assert sys.modules["structlog"] is before["structlog"]
