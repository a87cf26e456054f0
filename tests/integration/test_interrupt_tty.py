"""Ctrl-C and SIGTERM during ``s3sync sync`` on a real terminal (issue 23, bug 1).

A real process on a pseudo-terminal (so the progress bar is drawn and Ctrl-C is the
terminal's ^C, delivered by the line discipline), a real moto server, a download slowed
with ``--bwlimit``. Expected: the process leaves promptly, with the summary so far, exit
130 (SIGINT) or 143 (SIGTERM), no traceback, and no temporary file left in the mirror,
and the next run completes the object.
"""

from __future__ import annotations

import json
import os
import pty
import re
import select
import signal
import sys
import time
from pathlib import Path
from typing import Any

import pytest
from support.s3kit import clean_environ, temp_files, tree
from support.wait import poll

SIZE = 6 * 1024 * 1024  # under the multipart threshold: one streamed GET and one temp file
RATE = "256K"  # ~24 s for the whole object: far longer than any stop may take


class PtyRun:
    """``python -m s3sync ARGS`` with stdin/stdout/stderr on a new pseudo-terminal."""

    def __init__(self, args: list[str], cwd: Path) -> None:
        env = clean_environ() | {"COLUMNS": "100", "LINES": "30", "TERM": "xterm"}
        pid, fd = pty.fork()
        if pid == 0:  # child: the pty is its controlling terminal
            os.chdir(cwd)
            os.execve(sys.executable, [sys.executable, "-m", "s3sync", *args], env)
        self.pid, self.fd = pid, fd
        self.output = b""
        self.status: int | None = None

    def pump(self, seconds: float) -> None:
        end = time.monotonic() + seconds
        while (left := end - time.monotonic()) > 0:
            r, _, _ = select.select([self.fd], [], [], min(left, 0.1))
            if r:
                try:
                    chunk = os.read(self.fd, 65536)
                except OSError:  # EIO: the child closed the terminal
                    return
                if not chunk:
                    return
                self.output += chunk

    def wait(self, within: float) -> int | None:
        """Exit code, or None if still running after ``within`` seconds (output kept reading)."""
        deadline = time.monotonic() + within
        while time.monotonic() < deadline:
            self.pump(0.1)
            pid, status = os.waitpid(self.pid, os.WNOHANG)
            if pid:
                self.pump(0.5)
                self.status = os.waitstatus_to_exitcode(status)
                return self.status
        return None

    def kill(self) -> None:
        if self.status is None:
            os.kill(self.pid, signal.SIGKILL)
            os.waitpid(self.pid, 0)
        os.close(self.fd)

    @property
    def text(self) -> str:
        return self.output.decode("utf-8", "replace").replace("\r\n", "\n")

    @property
    def tail(self) -> str:
        return self.text[-3000:]


def _wait_for_download(run: PtyRun, mirror: Path, within: float = 60) -> None:
    """Until the small object is in place: the big one is then mid-download (~24 s to go)."""

    def started() -> bool:
        if (mirror / "small.txt").exists():
            return True
        assert run.wait(0.1) is None, f"exited early:\n{run.tail}"
        return False

    poll(started, within=within, interval=0, what="a download to start")
    run.pump(0.5)


@pytest.fixture
def big(s3: Any, bucket: str) -> bytes:
    body = os.urandom(SIZE)
    s3.put_object(Bucket=bucket, Key="big/single.bin", Body=body)
    s3.put_object(Bucket=bucket, Key="small.txt", Body=b"small")
    return body


@pytest.mark.parametrize(
    ("how", "code", "name", "extra"),
    [
        ("ctrl-c", 130, "SIGINT", ()),
        ("sigterm", 143, "SIGTERM", ()),
        ("sigterm", 143, "SIGTERM", ("--json",)),
    ],
)
def test_interrupted_sync(
    how: str,
    code: int,
    name: str,
    extra: tuple[str, ...],
    moto_endpoint: str,
    bucket: str,
    mirror: Path,
    tmp_path: Path,
    big: bytes,
) -> None:
    args = ["sync", "--bucket", bucket, "--endpoint-url", moto_endpoint, "--dest", str(mirror)]
    run = PtyRun([*args, "--bwlimit", RATE, *extra], tmp_path)
    try:
        _wait_for_download(run, mirror)
        if how == "ctrl-c":
            os.write(run.fd, b"\x03")  # the terminal turns ^C into SIGINT for its foreground job
        else:
            os.kill(run.pid, signal.SIGTERM)
        # the whole object needs ~24 s more at this rate; a stop that waits for it is the bug
        rc = run.wait(10)
        assert rc is not None, f"still running 10 s after {name}:\n{run.tail}"
    finally:
        run.kill()
    out = run.tail
    assert rc == code, out
    assert "Traceback" not in out and "Exception in callback" not in out, out
    if extra:  # stdout is the one JSON report (the pty merges stderr in: nothing else is written)
        report = json.loads(out.strip().splitlines()[-1])
        assert report["aborted"] == f"interrupted by {name}" and report["downloaded"] == 1, out
    else:
        assert f"interrupted by {name}" in out, out
        assert "downloaded 1," in out and "unchanged" in out, out  # the summary so far
        assert "\x1b[?25h" in out  # the bar gave the cursor back
    assert temp_files(mirror) == [], (temp_files(mirror), out)
    assert "big/single.bin" not in tree(mirror)

    # the next run finishes the job and leaves nothing behind
    again = PtyRun([*args, "--no-progress"], tmp_path)
    try:
        assert again.wait(120) == 0, again.tail
    finally:
        again.kill()
    assert tree(mirror)["big/single.bin"] == big
    assert temp_files(mirror) == []


def test_bar_moves_during_one_big_download(
    moto_endpoint: str, bucket: str, mirror: Path, tmp_path: Path, big: bytes
) -> None:
    """One big object used to show ``0/?`` and 0.0 MB/s for its whole download."""
    args = ["sync", "--bucket", bucket, "--endpoint-url", moto_endpoint, "--dest", str(mirror)]
    run = PtyRun([*args, "--bwlimit", RATE], tmp_path)
    try:

        def moving() -> bool:
            if re.search(rb"[1-9][0-9.]* MB/s \(1 in flight\)", run.output):
                return True
            assert run.wait(0.1) is None, f"finished without showing the download move:\n{run.tail}"
            return False

        poll(moving, within=60, interval=0, what="the bar to show the download moving")
        assert b"/?" not in run.output.split(b"in flight")[-2][-200:], run.tail
        os.write(run.fd, b"\x03")
        assert run.wait(10) == 130, run.tail
    finally:
        run.kill()


def test_verify_shows_it_is_working(
    moto_endpoint: str, bucket: str, mirror: Path, tmp_path: Path, big: bytes
) -> None:
    run = PtyRun(
        ["verify", "--bucket", bucket, "--endpoint-url", moto_endpoint, "--dest", str(mirror)], tmp_path
    )
    try:
        assert run.wait(60) == 1, run.tail  # nothing mirrored yet: drift
    finally:
        run.kill()
    assert "verifying" in run.text and f"s3://{bucket}" in run.text, run.tail
    assert "verified 2 objects: 2 differences" in run.text, run.tail
