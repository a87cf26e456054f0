"""Issue 20, defect 6: a restarting shard sweeps only its own temps and those of owners proven gone.

N hosts share one ``local_dir`` (docs/scale.md). Each test starts real writer
processes (``python -c``) that create a temp through ``Mirror.new_temp`` and keep it
open; one of them pretends to be another host by the only means a process has, its
host name. The sweep under test is the one ``Engine.start`` runs:
``mirror.sweep_temps(resumer.sweep_keep())``. Before the fix it removed every temp
in the tree, and every half-written sidecar in the shared resume directory.

Also here: the :class:`TempFile` contract itself (closed exactly once, never under a
thread using it), checked with real files and an fd audit.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from s3sync.errors import KeyConflictError
from s3sync.local.keys import is_temp_name
from s3sync.local.mirror import Mirror
from s3sync.sync.transfer.resume import Resumer

WRITER = textwrap.dedent(
    """
    import os, socket, sys
    host, root, key, shard = sys.argv[1:5]
    if host != "-":
        socket.gethostname = lambda: host
    from s3sync.local.mirror import Mirror
    m = Mirror(root, fsync=False)
    k, n = map(int, shard.split("/"))
    new = hasattr(m, "claim")  # (the test also runs against the code before the fix)
    if new:
        m.claim(k, n)
    t = m.new_temp(key)
    fd, name = (t.fd, t.name) if new else (t[2], t[1].name)
    os.write(fd, b"partial")
    print(name, m.owner.tag if new else "unowned", flush=True)
    if sys.stdin.readline().strip() == "commit":
        m.commit(t, None) if new else m.commit(fd, t[1], t[0], None)
        print("committed", flush=True)
    """
)


class Writer:
    """Another s3sync process (maybe on "another host") with one temp open in the shared mirror."""

    def __init__(self, root: Path, key: str, *, host: str = "-", shard: str = "0/1") -> None:
        self.proc = subprocess.Popen(
            [sys.executable, "-c", WRITER, host, str(root), key, shard],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
        )
        assert self.proc.stdout is not None
        line = self.proc.stdout.readline().split()
        assert len(line) == 2, f"writer failed to start (exit {self.proc.poll()})"
        self.temp_name, self.tag = line
        self.path = root.joinpath(*key.split("/")[:-1], self.temp_name)

    def commit(self) -> str:
        assert self.proc.stdin is not None and self.proc.stdout is not None
        self.proc.stdin.write("commit\n")
        self.proc.stdin.flush()
        return self.proc.stdout.readline().strip()

    def kill(self) -> None:
        self.proc.send_signal(signal.SIGKILL)
        self.proc.wait(10)

    def close(self) -> None:
        if self.proc.poll() is None:
            self.kill()


@pytest.fixture
def writers() -> Iterator[list[Writer]]:
    made: list[Writer] = []
    yield made
    for w in made:
        w.close()


def restart_sweep(root: Path, shard: tuple[int, int] = (0, 1)) -> int:
    """What ``Engine.start`` does on this host: claim the shard, keep resumable temps, sweep."""
    mirror = Mirror(root, fsync=False)
    if hasattr(mirror, "claim"):
        mirror.claim(*shard)
    return mirror.sweep_temps(Resumer(mirror, "bucket", min_size=0, fsync=False).sweep_keep())


class TestSweepOwnership:
    def test_a_live_process_keeps_its_temp_and_commits_it(
        self, tmp_path: Path, writers: list[Writer]
    ) -> None:
        """Same host, same shard, still running (a concurrent ``s3sync sync``): its temp is not ours."""
        w = Writer(tmp_path, "dir/live.bin")
        writers.append(w)
        restart_sweep(tmp_path)
        assert w.path.exists(), "the sweep removed a running process's temp"
        assert w.commit() == "committed"
        assert (tmp_path / "dir" / "live.bin").read_bytes() == b"partial"

    def test_another_hosts_temp_survives_even_after_that_host_died(
        self, tmp_path: Path, writers: list[Writer]
    ) -> None:
        """Another host (and shard): its pid means nothing here, so it is never proven gone from here."""
        w = Writer(tmp_path, "a/b/c.bin", host="other-host-7", shard="1/2")
        writers.append(w)
        assert restart_sweep(tmp_path, (0, 2)) == 0
        assert w.path.exists()
        w.kill()
        assert restart_sweep(tmp_path, (0, 2)) == 0
        assert w.path.exists(), "another host's temp was swept"

    def test_another_shard_on_this_host_is_left_alone(self, tmp_path: Path, writers: list[Writer]) -> None:
        """Two shards sharing a host name may live in different pid namespaces: no pid verdicts across."""
        w = Writer(tmp_path, "x.bin", shard="1/2")
        writers.append(w)
        w.kill()
        assert restart_sweep(tmp_path, (0, 2)) == 0
        assert w.path.exists()
        assert restart_sweep(tmp_path, (1, 2)) == 1, "its own shard's successor removes it"
        assert not w.path.exists()

    def test_a_dead_owner_of_this_shard_is_proven_gone(self, tmp_path: Path, writers: list[Writer]) -> None:
        w = Writer(tmp_path, "gone.bin")
        writers.append(w)
        w.kill()
        assert restart_sweep(tmp_path) == 1
        assert not w.path.exists()

    def test_old_format_temps_are_swept_as_before(self, tmp_path: Path) -> None:
        """Temps of versions that did not name their owner cannot be judged: removed, as they always were."""
        old = tmp_path / "sub" / ".f.bin.s3sync-tmp-0123abcd"
        old.parent.mkdir()
        old.write_bytes(b"x")
        assert is_temp_name(old.name)
        assert restart_sweep(tmp_path) == 1
        assert not old.exists()

    def test_half_written_sidecars_of_live_owners_survive(
        self, tmp_path: Path, writers: list[Writer]
    ) -> None:
        """The resume directory is shared too: only own, gone or old-format ``.partial-`` files go."""
        resume = tmp_path / ".s3sync" / "resume"
        resume.mkdir(parents=True)
        live = Writer(tmp_path, "l.bin")
        other_host = Writer(tmp_path, "o.bin", host="other-host-7", shard="1/2")
        dead = Writer(tmp_path, "d.bin")
        writers.extend([live, other_host, dead])
        dead.kill()
        digest = "ab" * 20
        names = {
            "live": f"{digest}.json.partial-{live.tag}-00aa11bb",
            "other_host": f"{digest}.json.partial-{other_host.tag}-00aa11bb",
            "dead": f"{digest}.json.partial-{dead.tag}-00aa11bb",
            "old": f"{digest}.json.partial-00aa11bb",
        }
        for n in names.values():
            (resume / n).write_bytes(b"{")
        restart_sweep(tmp_path)
        left = {k for k, n in names.items() if (resume / n).exists()}
        assert left == {"live", "other_host"}


class TestTempFile:
    """The owner object: exactly one close, never under a user; a failed commit leaves nothing to close."""

    @staticmethod
    def open_fds() -> set[int]:
        return {int(n) for n in os.listdir("/proc/self/fd")}

    def test_failed_commit_closes_once_and_later_ends_are_no_ops(self, tmp_path: Path) -> None:
        from s3sync.local.mirror import TempClosedError

        mirror = Mirror(tmp_path, fsync=False)
        before = self.open_fds()
        temp = mirror.new_temp("k/file.bin")
        os.write(temp.fd, b"data")
        (tmp_path / "k" / "file.bin" / "child").mkdir(parents=True)  # the rename will fail for real
        with pytest.raises(KeyConflictError):
            mirror.commit(temp, None)
        unrelated = os.open(tmp_path / "unrelated", os.O_RDWR | os.O_CREAT, 0o600)
        mirror.discard(temp)
        mirror.release(temp)
        os.fstat(unrelated)  # still open: nobody closed a number twice
        os.close(unrelated)
        assert self.open_fds() == before
        assert temp.state == "discarded" and mirror.open_temps == 0
        assert not [n for n in os.listdir(tmp_path / "k") if is_temp_name(n)]
        with pytest.raises(TempClosedError):
            _ = temp.fd

    def test_ending_waits_for_a_thread_inside_use(self, tmp_path: Path) -> None:
        from s3sync.local.mirror import TempClosedError

        mirror = Mirror(tmp_path, fsync=False)
        temp = mirror.new_temp("w.bin")
        inside, leave = threading.Event(), threading.Event()
        wrote: list[int] = []

        def writer() -> None:
            with temp.use() as fd:
                inside.set()
                leave.wait(10)
                wrote.append(os.pwrite(fd, b"late", 0))

        t = threading.Thread(target=writer)
        t.start()
        assert inside.wait(10)
        ender = threading.Thread(target=mirror.discard, args=(temp,))
        ender.start()
        deadline = time.monotonic() + 10
        while temp.state != "ending" and time.monotonic() < deadline:
            time.sleep(0.001)
        assert temp.state == "ending"  # new users are refused from here on ...
        with pytest.raises(TempClosedError):
            temp.run(os.fstat)
        assert ender.is_alive()  # ... and the close waits for the one inside
        leave.set()
        t.join(10)
        ender.join(10)
        assert wrote == [4] and temp.state == "discarded"


class TestResumeOwnership:
    """A resumable temp is resumed only when its owner is gone, and then renamed to the new owner."""

    async def test_live_owners_temp_is_not_resumed_and_a_dead_owners_is_adopted(
        self, tmp_path: Path, writers: list[Writer]
    ) -> None:
        from s3sync.local.sidecars import ResumeStore
        from s3sync.model import ObjectMeta

        key = "big/part.bin"
        w = Writer(tmp_path, key)
        writers.append(w)
        meta = ObjectMeta(key, len(b"partial"), "0" * 32, 0.0)
        ResumeStore(tmp_path, "bucket", fsync=False).begin(
            key, etag=meta.etag or "", size=meta.size, part_size=4, temp=w.path
        )
        mirror = Mirror(tmp_path, fsync=False)
        resumer = Resumer(mirror, "bucket", min_size=0, fsync=False)

        op = await resumer.open(key, meta, 4)  # the writer still runs: a fresh temp, no sidecar of ours
        assert op.temp.name != w.temp_name and op.record is None and op.done_before == 0
        assert w.path.read_bytes() == b"partial"
        mirror.discard(op.temp)

        w.kill()
        rec, _ = ResumeStore(tmp_path, "bucket").load(key, etag=meta.etag, size=meta.size)
        assert rec is not None and rec.temp_name == w.temp_name
        rec.add(0, 4)
        ResumeStore(tmp_path, "bucket", fsync=False).save(rec)
        op = await resumer.open(key, meta, 4)  # gone: adopted, renamed to carry our owner
        assert op.record is not None and op.done_before == 4
        assert op.temp.name.split(".s3sync-tmp-")[1].startswith(mirror.owner.tag + "-")
        assert not w.path.exists() and op.temp.path.read_bytes() == b"partial"
        again, _ = ResumeStore(tmp_path, "bucket").load(key, etag=meta.etag, size=meta.size)
        assert again is not None and again.temp_name == op.temp.name  # the sidecar follows the rename
        mirror.release(op.temp)
        assert mirror.open_temps == 0
