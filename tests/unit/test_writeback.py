"""start_writeback: a head start for the page cache, never an error and never a change of content."""

from __future__ import annotations

import os
import sys
from pathlib import Path

import pytest

from s3sync.local.writeback import start_writeback


class TestStartWriteback:
    """The kernel is asked to write a region early; refusals are quiet."""

    @pytest.mark.skipif(not sys.platform.startswith("linux"), reason="sync_file_range is Linux-only")
    def test_regular_file_region_is_accepted_and_content_unchanged(self, tmp_path: Path) -> None:
        path = tmp_path / "f"
        data = os.urandom(3 << 20)
        fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            os.pwrite(fd, data, 0)
            assert start_writeback(fd, 0, len(data)) is True
            os.fsync(fd)
        finally:
            os.close(fd)
        assert path.read_bytes() == data

    def test_empty_region_is_a_no_op(self, tmp_path: Path) -> None:
        fd = os.open(tmp_path / "g", os.O_RDWR | os.O_CREAT, 0o644)
        try:
            assert start_writeback(fd, 0, 0) is False
        finally:
            os.close(fd)

    def test_a_pipe_is_refused_without_raising(self) -> None:
        r, w = os.pipe()
        try:
            os.write(w, b"abc")
            assert start_writeback(w, 0, 3) is False
        finally:
            os.close(r)
            os.close(w)
