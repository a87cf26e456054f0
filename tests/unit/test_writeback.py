"""start_writeback: a head start for the page cache, never an error and never a change of content."""

from __future__ import annotations

import os
import sys
from pathlib import Path

import pytest

from s3sync.local.writeback import LaggedWriteback, _coalesce, start_writeback


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


class TestLaggedWriteback:
    """Regions are handed to the kernel only once ``lag`` newer bytes were written, oldest first."""

    def test_the_newest_lag_bytes_are_held_back(self, tmp_path: Path) -> None:
        fd = os.open(tmp_path / "big", os.O_RDWR | os.O_CREAT, 0o644)
        chunk = 256 << 10
        data = os.urandom(chunk)
        try:
            wb = LaggedWriteback(fd, lag=1 << 20, run=1 << 20)
            for i in range(7):
                os.pwrite(fd, data, i * chunk)
                wb.written(i * chunk, chunk)
            assert wb.submitted == 0  # 1.75 MiB written: all of it younger than lag + run
            os.pwrite(fd, data, 7 * chunk)
            wb.written(7 * chunk, chunk)
            assert wb.submitted == 1 << 20  # the oldest 1 MiB went; the newest 1 MiB waits
            for i in range(8, 12):
                os.pwrite(fd, data, i * chunk)
                wb.written(i * chunk, chunk)
            assert wb.submitted == 2 << 20
            os.fsync(fd)
        finally:
            os.close(fd)
        assert (tmp_path / "big").read_bytes() == data * 12

    def test_out_of_order_regions_coalesce(self) -> None:
        assert _coalesce([(300, 100), (0, 100), (100, 100), (700, 1)]) == [(0, 200), (300, 100), (700, 1)]

    def test_empty_writes_and_a_pipe_never_raise(self) -> None:
        r, w = os.pipe()
        try:
            wb = LaggedWriteback(w, lag=0, run=1)
            wb.written(0, 0)
            wb.written(0, 10)  # the kernel refuses a pipe: quietly
            assert wb.submitted == 10
        finally:
            os.close(r)
            os.close(w)
