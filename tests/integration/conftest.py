"""Fixtures shared by the integration tests that run ``s3sync serve`` from a config file."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from support.daemon import Daemon, MakeDaemon
from support.s3kit import clean_environ


@pytest.fixture
def config_daemon() -> Iterator[MakeDaemon]:
    """``config_daemon(config, port, log)``: ``s3sync serve --config`` as a subprocess (not started).

    Every daemon made is killed at the end if still running, so a failed test (or one that
    SIGKILLs and restarts it) leaves no process behind.
    """
    made: list[Daemon] = []

    def make(config: Path, port: int, log: Path) -> Daemon:
        made.append(Daemon(clean_environ(), log, config=config, port=port))
        return made[-1]

    yield make
    for daemon in made:
        daemon.close()
