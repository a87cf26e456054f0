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


_COUNT_EARLY_COLLECTIONS = (
    "import gc, runpy, sys\n"
    "early = [0]\n"  # collections before start-up ended (nothing frozen yet)
    "gc.callbacks.append(lambda phase, info: early.__setitem__(0, early[0] + (\n"
    "    phase == 'start' and gc.get_freeze_count() == 0)))\n"
)


def _early_collections_of_the_program() -> list[str]:
    out = _run(
        "-c",
        _COUNT_EARLY_COLLECTIONS
        + "sys.argv = ['s3sync', 'status', '--url', 'http://127.0.0.1:9']\n"  # refused at once: exit 1
        "try:\n"
        "    runpy.run_module('s3sync', run_name='__main__', alter_sys=True)\n"
        "except SystemExit as exc:\n"
        "    print(exc.code, early[0], gc.isenabled(), gc.get_freeze_count() > 0)\n",
    )
    return out.stdout.split() or [out.stderr]


def _early_collections_of_an_importer() -> list[str]:
    code = "import s3sync.cli\nprint(early[0], gc.isenabled(), gc.get_freeze_count())\n"
    out = _run("-c", _COUNT_EARLY_COLLECTIONS + code)
    return out.stdout.split() or [out.stderr]


def test_the_program_pauses_the_collector_while_it_imports_an_importer_does_not() -> None:
    """As the program (``python -m s3sync``) the imports run without the collector, which is back on
    (and the start-up's objects frozen) when the command runs; a process that merely imports
    :mod:`s3sync.cli` (a test, another program) keeps its collector and freezes nothing.

    The program still collects a few times before :mod:`s3sync.cli.bootstrap` runs (the
    interpreter's and runpy's own imports); an importer collects all the way through.
    """
    code, program_early, enabled, frozen = _early_collections_of_the_program()
    importer_early, importer_enabled, importer_frozen = _early_collections_of_an_importer()
    assert (code, enabled, frozen) == ("1", "True", "True")
    assert (importer_enabled, importer_frozen) == ("True", "0")
    assert int(program_early) * 5 < int(importer_early), (program_early, importer_early)
