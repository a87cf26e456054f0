#!/usr/bin/env python3
"""Side-by-side benchmark: s3sync against aws s3 sync, s5cmd and rclone.

Run it with ``make bench`` (or ``make bench-quick``); ``--help`` lists the knobs.
Everything runs on 127.0.0.1 against one ``rclone serve s3`` over a scratch
data directory (see ``server.py``). Standard library only, so the harness adds
no dependency and cannot share a bug with what it measures.

Method, in short (details and the reasons in ``docs/benchmarks.md``):

* every timed pass is one child process timed with ``perf_counter`` around
  spawn→reap, its CPU time and peak RSS read from ``os.wait4``;
* tools are interleaved (A B C D A B C D ...) and each cell is the median of the
  repeats, so drift in machine load hits every tool alike;
* the server is restarted before every pass so each starts from the same
  server-side cache state, then warmed before the clock starts (W4: a HEAD of the
  big object; W2/W3: one full listing), so no tool pays for the server's hashing;
* every pass is checked against the server's data directory (file set, sizes,
  and sha256 for W3/W4); a wrong mirror makes the cell INVALID, never a time.
"""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import datetime as _dt
import hashlib
import http.client
import json
import math
import os
import platform
import random
import shutil
import signal
import statistics
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any
from urllib.parse import quote_plus

sys.path.insert(0, str(Path(__file__).resolve().parent))

import peers
import spawner
from peers import BENCH_DIR, REPO_DIR, Tool
from proxy import DelayProxy, find_haproxy, haproxy_supports_lua, haproxy_version
from server import RcloneServer, S3Client, free_port, wait_http

PEER_NAMES = ("aws", "s5cmd", "rclone")
ALL_WORKLOADS = ("W1", "W2", "W3", "W4", "W4C", "W5", "W6", "W7", "W8")
# W7 reuses W1's data set before W3 changes it, so it runs right after W1.
RUN_ORDER = ("W1", "W7", "W2", "W3", "W4", "W4C", "W5", "W6", "W8")
# W8 generates and reconciles 10⁶ objects (~25 min here): only when asked for by name.
OPT_IN_WORKLOADS = ("W8",)
STATE_DIR_NAME = ".s3sync"  # s3sync keeps its state DB here inside --dest by default

TARGETS = {
    "W1": 1.0,
    "W2": 0.5,
    "W3": 1.0,
    "W4": 1.0,
    "W4C": 1.0,  # W4c: the object carries a full-object CRC64NVME, so verifying it is nearly free
}
# W4 verifies an MD5, which is serial: its target is the time one core needs to MD5 the file
# (measured in the same run, like `cp`), not a peer that verifies nothing
W4_MD5_TARGET = 1.2
W5_P99_TARGET_MS = 10.0
W5_MIN_RATE_FRACTION = 0.95  # below this share of --w5-rate the generator fell behind: INVALID
W6_GROWTH_TARGET = 1.25
W6_RSS_CAP_MB = 150.0
W7_OWN_W1_TARGET = 1.2  # s3sync's W7 (20 ms per request) ÷ s3sync's own W1 (loopback)


def log(msg: str) -> None:
    print(f"[bench {time.strftime('%H:%M:%S')}] {msg}", file=sys.stderr, flush=True)


# --------------------------------------------------------------------------- runs


@dataclasses.dataclass
class Pass:
    """One timed execution of one tool."""

    tool: str
    workload: str
    repeat: int
    seconds: float
    cpu_seconds: float
    max_rss_mb: float
    exit_code: int
    valid: bool
    reason: str = ""


def run_child(
    argv: list[str], env: dict[str, str], log_path: Path, timeout: float
) -> tuple[int, float, float, float]:
    """Run one child; return (exit code, wall s, cpu s, peak RSS MB).

    ``os.wait4`` gives the rusage of exactly this child (and the grandchildren it
    reaped), which is both the CPU cost and the peak RSS without polling. The
    child is forked by ``spawner.py``, a helper started while the harness was
    small: Linux carries a parent's RSS high-water mark into its children across
    ``exec``, so a child forked by a harness holding a 200k-entry manifest would
    report the harness's RSS as its own.
    """
    return spawner.spawner().run(argv, env, log_path, timeout)


def tail(path: Path, n: int = 3) -> str:
    try:
        lines = path.read_text(errors="replace").strip().splitlines()
    except OSError:
        return ""
    return " | ".join(line.strip()[:200] for line in lines[-n:])


# --------------------------------------------------------------------- data + checks


Manifest = dict[str, tuple[int, str | None]]  # relative path -> (size, sha256 or None)


def walk_files(root: Path, skip_top: str | None = None) -> Iterator[tuple[str, int]]:
    stack = [root]
    while stack:
        d = stack.pop()
        try:
            entries = list(os.scandir(d))
        except FileNotFoundError:
            continue
        for e in entries:
            if d == root and skip_top is not None and e.name == skip_top:
                continue
            if e.is_dir(follow_symlinks=False):
                stack.append(Path(e.path))
            else:
                yield os.path.relpath(e.path, root), e.stat(follow_symlinks=False).st_size


def sha256_file(path: Path) -> str:
    h = hashlib.sha256()
    with path.open("rb") as f:
        while chunk := f.read(1 << 20):
            h.update(chunk)
    return h.hexdigest()


def manifest(root: Path, with_hash: bool) -> Manifest:
    return {rel: (size, sha256_file(root / rel) if with_hash else None) for rel, size in walk_files(root)}


def check_mirror(dest: Path, expected: Manifest) -> str:
    """Return "" when dest mirrors expected, else a short reason."""
    got = dict(walk_files(dest, skip_top=STATE_DIR_NAME))
    missing = sorted(set(expected) - set(got))
    extra = sorted(set(got) - set(expected))
    if missing or extra:
        return (
            f"{len(got)} files, expected {len(expected)}; "
            f"missing {len(missing)} {missing[:2]}, extra {len(extra)} {extra[:2]}"
        )
    for rel, (size, digest) in expected.items():
        if got[rel] != size:
            return f"{rel}: size {got[rel]}, expected {size}"
        if digest is not None and sha256_file(dest / rel) != digest:
            return f"{rel}: sha256 differs"
    return ""


def whole_second_now() -> float:
    """Real S3 reports LastModified in whole seconds; rclone serve s3 reports the
    file's mtime to the millisecond. Whole-second mtimes on the server's files make
    rclone look like S3, and keep ``aws s3 sync --exact-timestamps`` from
    re-downloading every object because of a sub-second mismatch."""
    return float(int(time.time()))


def gen_small(bucket_dir: Path, count: int, prefixes: int, size: int, seed: int) -> None:
    rng = random.Random(seed)
    for p in range(prefixes):
        (bucket_dir / f"p{p:03d}").mkdir(parents=True, exist_ok=True)
    stamp = whole_second_now()
    for i in range(count):
        path = bucket_dir / f"p{i % prefixes:03d}" / f"obj{i:07d}.bin"
        path.write_bytes(rng.randbytes(size))
        os.utime(path, (stamp, stamp))


#: the W4 verification floor, run by s3sync's interpreter: MD5 of the file on one core
MD5_FLOOR = """\
import hashlib, sys
h = hashlib.md5()
buf = bytearray(8 << 20)
view = memoryview(buf)
with open(sys.argv[1], "rb", buffering=0) as f:
    while n := f.readinto(buf):
        h.update(view[:n])
print(h.hexdigest())
"""

#: W4c's checksum: S3's CRC64NVME of the file (base64 of the big-endian value), by awscrt
CRC64NVME_OF_FILE = """\
import base64, sys
from awscrt import checksums
crc = 0
with open(sys.argv[1], "rb") as f:
    while chunk := f.read(8 << 20):
        crc = checksums.crc64nvme(chunk, crc)
print(base64.b64encode(crc.to_bytes(8, "big")).decode())
"""


def gen_big(path: Path, mib: int) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    block = os.urandom(1 << 20)
    with path.open("wb") as f:
        for i in range(mib):
            # Distinct blocks so a tool that wrote a block at the wrong offset fails sha256.
            f.write(i.to_bytes(8, "little") + block[8:])
    stamp = whole_second_now()
    os.utime(path, (stamp, stamp))


def rmtree(path: Path) -> None:
    shutil.rmtree(path, ignore_errors=True)


# ----------------------------------------------------------------------- the bench


class Bench:
    """Holds the server, the tools and the results of one harness run."""

    def __init__(self, args: argparse.Namespace) -> None:
        self.args = args
        self.data = BENCH_DIR / ".data"
        self.work = BENCH_DIR / ".work"
        rmtree(self.data)
        rmtree(self.work)
        self.data.mkdir(parents=True)
        self.work.mkdir(parents=True)
        (self.work / "logs").mkdir()
        self.env = peers.base_env(self.work)
        self.server = RcloneServer(self.data, self.work / "rclone-serve.log", self.work / "rclone.conf")
        self.tools: dict[str, Tool] = {}
        self.passes: list[Pass] = []
        self.extra: dict[str, Any] = {}
        self.notes: list[str] = []
        self.mirrors: dict[str, Path] = {}
        self.proxy: DelayProxy | None = None
        self.current = ""  # the workload running (W4/W4c share the big object)
        self.retired: list[Path] = []  # finished mirrors kept until the run ends (see retire)

    # -- helpers

    def timed_pass(
        self,
        tool: Tool,
        workload: str,
        repeat: int,
        bucket: str,
        dest: Path,
        delete: bool,
        expected: Manifest,
        via_proxy_ms: int | None = None,
    ) -> Pass:
        self.server.restart()
        if workload in ("W4", "W4C"):
            self.warm_big(bucket)
        elif workload in ("W2", "W3"):
            self.warm_listing(bucket)
        url = self.server.url
        if via_proxy_ms is not None:
            assert self.proxy is not None
            self.proxy.restart(via_proxy_ms)
            url = self.proxy.url
        argv = tool.sync_argv(url, bucket, dest, delete)
        logp = self.work / "logs" / f"{workload}-{tool.name}-{repeat}.log"
        rc, wall, cpu, rss = run_child(argv, {**self.env, **tool.extra_env}, logp, self.args.timeout)
        reason = f"exit {rc}: {tail(logp)}" if rc != 0 else check_mirror(dest, expected)
        p = Pass(tool.name, workload, repeat, wall, cpu, rss, rc, not reason, reason)
        self.passes.append(p)
        status = "ok" if p.valid else f"INVALID ({reason})"
        log(
            f"{workload} #{repeat} {tool.name:7s} {wall:8.3f} s  cpu {cpu:7.2f} s  "
            f"rss {rss:7.1f} MB  {status}"
        )
        return p

    def warm_big(self, bucket: str) -> None:
        """Make rclone compute (and cache) the big object's MD5 before the clock starts.

        Otherwise the first request of every pass pays ~2 s of server-side hashing
        that has nothing to do with the client.
        """
        client = S3Client(self.server.port)
        try:
            status, _ = client.head(bucket, self.extra["w4_key"])
            if status != 200:
                raise RuntimeError(f"HEAD of the W4 object returned {status}")
        finally:
            client.close()

    def warm_listing(self, bucket: str) -> None:
        """List the whole bucket once before the clock starts (W2, W3).

        A restarted ``rclone serve s3`` hashes every file on its first listing: without
        this, every tool's no-change pass waited ~0.5 s for the server to MD5 5,000
        files, which measured the server, not the tools.
        """
        client = S3Client(self.server.port)
        try:
            client.list_all(bucket)
        finally:
            client.close()

    def ensure_mirror(self, tool: Tool, bucket: str, expected: Manifest) -> Path:
        """A mirror of ``bucket`` made by ``tool`` itself (untimed when W1 did not run)."""
        if tool.name in self.mirrors:
            return self.mirrors[tool.name]
        dest = self.work / tool.name / "small"
        rmtree(dest)
        dest.mkdir(parents=True)
        self.server.restart()
        argv = tool.sync_argv(self.server.url, bucket, dest, False)
        logp = self.work / "logs" / f"setup-{tool.name}.log"
        rc, wall, _cpu, _rss = run_child(argv, {**self.env, **tool.extra_env}, logp, self.args.timeout)
        problem = f"exit {rc}: {tail(logp)}" if rc else check_mirror(dest, expected)
        if problem:
            raise RuntimeError(f"setup sync by {tool.name} failed: {problem}")
        log(f"setup  {tool.name:7s} mirror ready in {wall:.2f} s (untimed)")
        self.mirrors[tool.name] = dest
        return dest

    # -- workloads

    def small_bucket(self) -> tuple[str, Manifest]:
        bucket = "bench-small"
        if "small" not in self.extra:
            n, pfx = self.args.w1_objects, self.args.w1_prefixes
            log(f"generating {n} x {self.args.w1_size} B objects over {pfx} prefixes")
            gen_small(self.data / bucket, n, pfx, self.args.w1_size, seed=1)
            self.extra["small"] = manifest(self.data / bucket, with_hash=False)
        return bucket, self.extra["small"]

    def retire(self, dest: Path) -> None:
        """Move a finished small-file mirror aside instead of deleting it; the run's end removes it.

        Deleting 5,000 files right before the next tool's cold pass made that pass pay for
        them: on this machine's ext4 (no journal) a new inode is never one freed in the last
        5-35 s (``recently_deleted`` in ``ext4_new_inode``), and the allocator scans past each
        of them, so the next pass's system time was 0.4-1.2 s instead of 0.3-0.5 s
        (s3sync's W1, 5 runs each way) — noise that fell on whichever tool came next.
        """
        spot = self.work / ".retired" / f"{len(self.retired)}"
        spot.parent.mkdir(exist_ok=True)
        dest.rename(spot)
        self.retired.append(spot)

    def w1(self) -> None:
        bucket, expected = self.small_bucket()
        for r in range(self.args.repeats):
            for tool in self.tools.values():
                dest = self.work / tool.name / f"w1-{r}"
                rmtree(dest)
                dest.mkdir(parents=True)
                p = self.timed_pass(tool, "W1", r, bucket, dest, False, expected)
                if p.valid and r == self.args.repeats - 1:
                    # Keep the last cold mirror: W2/W3 start from it.
                    final = self.work / tool.name / "small"
                    rmtree(final)
                    dest.rename(final)
                    self.mirrors[tool.name] = final
                else:
                    self.retire(dest)

    def w7(self) -> None:
        """W1's data set, cold, with every request held ``--w7-delay-ms`` by HAProxy.

        First each tool runs once through the proxy at 0 ms: against that tool's
        direct W1 it shows what the proxy itself costs (it must be small, or W7
        would measure the proxy). Then the timed W7 repeats at the full delay.
        """
        binary, why = find_haproxy(log)
        if binary is None or not haproxy_supports_lua(binary):
            why = why or f"{binary} was built without Lua"
            log(f"W7 skipped: {why}")
            self.notes.append(f"W7 skipped: {why}")
            return
        self.extra["haproxy"] = haproxy_version(binary)
        self.proxy = DelayProxy(binary, self.work, self.server.port, self.work / "haproxy.log")
        bucket, expected = self.small_bucket()
        delay = self.args.w7_delay_ms
        try:
            plan = [("W7-0ms", 0, r) for r in range(self.args.w7_zero_repeats)]
            plan += [("W7", delay, r) for r in range(self.args.repeats)]
            for workload, ms, r in plan:
                for tool in self.tools.values():
                    dest = self.work / tool.name / f"{workload.lower()}-{r}"
                    rmtree(dest)
                    dest.mkdir(parents=True)
                    self.timed_pass(tool, workload, r, bucket, dest, False, expected, via_proxy_ms=ms)
                    self.retire(dest)
        finally:
            self.proxy.stop()

    def w2(self) -> None:
        bucket, expected = self.small_bucket()
        ready = self._mirrors_for(bucket, expected, "W2")
        for r in range(self.args.repeats):
            for tool in ready:
                self.timed_pass(tool, "W2", r, bucket, self.mirrors[tool.name], False, expected)

    def _mirrors_for(self, bucket: str, expected: Manifest, workload: str) -> list[Tool]:
        ready = []
        for tool in self.tools.values():
            try:
                self.ensure_mirror(tool, bucket, expected)
                ready.append(tool)
            except RuntimeError as exc:
                self.passes.append(Pass(tool.name, workload, 0, 0, 0, 0, -1, False, str(exc)))
                log(f"{workload} {tool.name}: INVALID ({exc})")
        return ready

    def w3(self) -> None:
        bucket, expected = self.small_bucket()
        ready = self._mirrors_for(bucket, expected, "W3")
        root = self.data / bucket
        rng = random.Random(3)
        for r in range(self.args.repeats):
            keys = sorted(walk_files(root))
            n_change = max(1, len(keys) // 100)
            picked = rng.sample(keys, 2 * n_change)
            for rel, _size in picked[:n_change]:
                path = root / rel
                old = path.stat().st_mtime
                tmp = path.with_name(path.name + ".tmp")
                tmp.write_bytes(rng.randbytes(self.args.w1_size))
                # Same size as before, so only content/mtime/ETag reveal the change;
                # mtime strictly newer so mtime-comparing tools are not fooled by
                # a coarse clock.
                new = float(int(max(time.time(), old + 2.0)))
                os.utime(tmp, (new, new))
                os.replace(tmp, path)
            for rel, _size in picked[n_change:]:
                (root / rel).unlink()
            expected = manifest(root, with_hash=True)
            log(f"W3 #{r}: overwrote {n_change}, deleted {n_change}; {len(expected)} objects now")
            for tool in ready:
                self.timed_pass(tool, "W3", r, bucket, self.mirrors[tool.name], True, expected)
        self.extra["small"] = {k: (v[0], None) for k, v in expected.items()}

    def big_object(self) -> tuple[str, str, Path, Manifest]:
        """W4's (and W4c's) bucket, key, server file and manifest; generated on first use."""
        bucket, key = "bench-big", "big/blob.bin"
        src = self.data / bucket / key
        if "w4_expected" not in self.extra:
            log(f"generating one {self.args.w4_mib} MiB object")
            gen_big(src, self.args.w4_mib)
            self.extra["w4_key"] = key
            self.extra["w4_expected"] = {key: (src.stat().st_size, sha256_file(src))}
        return bucket, key, src, self.extra["w4_expected"]

    def done_with_big(self) -> None:
        """Remove the big object once the last workload using it ran."""
        later = RUN_ORDER[RUN_ORDER.index(self.current) + 1 :]
        if not any(w in self.args.workloads for w in later if w in ("W4", "W4C")):
            rmtree(self.data / "bench-big")

    def untimed_limit(self, name: str, argv: list[str], repeat: int, expected: Manifest | None) -> None:
        """A reference pass (``cp``, the MD5 floor): timed like a tool, not ranked as a peer."""
        dest = self.work / name / f"w4-{repeat}"
        rmtree(dest)
        (dest / "big").mkdir(parents=True)
        argv = [a.replace("{dest}", str(dest)) for a in argv]
        logp = self.work / "logs" / f"W4-{name}-{repeat}.log"
        rc, wall, cpu, rss = run_child(argv, self.env, logp, self.args.timeout)
        problem = f"exit {rc}: {tail(logp)}" if rc else (check_mirror(dest, expected) if expected else "")
        self.passes.append(Pass(name, "W4", repeat, wall, cpu, rss, rc, not problem, problem))
        log(f"W4 #{repeat} {name:7s} {wall:8.3f} s  cpu {cpu:7.2f} s")
        rmtree(dest)

    def w4(self) -> None:
        bucket, key, src, expected = self.big_object()
        venv_python = str(REPO_DIR / ".venv" / "bin" / "python")
        for r in range(self.args.repeats):
            for tool in self.tools.values():
                dest = self.work / tool.name / f"w4-{r}"
                rmtree(dest)
                dest.mkdir(parents=True)
                self.timed_pass(tool, "W4", r, bucket, dest, False, expected)
                rmtree(dest)
            # The disk limit: copying the (page-cache warm) server file locally.
            self.untimed_limit("cp", ["cp", str(src), "{dest}/" + key], r, expected)
            # The verification limit: one core MD5ing the (page-cache warm) file, as a verified
            # copy of a single-part object must (its ETag is the MD5); s3sync's own interpreter.
            self.untimed_limit("md5", [venv_python, "-c", MD5_FLOOR, str(src)], r, None)
        self.done_with_big()

    def w4c(self) -> None:
        """W4 with a full-object CRC64NVME on the object, as AWS gives every new object.

        ``rclone serve s3`` stores no additional checksums, so HAProxy (the W7 proxy, no
        delay) adds ``x-amz-checksum-crc64nvme`` and ``x-amz-checksum-type: FULL_OBJECT``
        to the 200 answers of whole-object GETs and HEADs of that key asked with
        ``x-amz-checksum-mode: ENABLED``, and to nothing else: AWS sends no checksum on
        a ranged GET that is not the whole object (../shared/aws-truth topics 1 and 2).
        The value is computed by awscrt in s3sync's venv. Every tool goes through the
        same proxy, so the comparison stays like for like.
        """
        binary, why = find_haproxy(log)
        if binary is None or not haproxy_supports_lua(binary):
            why = why or f"{binary} was built without Lua"
            log(f"W4c skipped: {why}")
            self.notes.append(f"W4c skipped: {why}")
            return
        bucket, key, src, expected = self.big_object()
        out = subprocess.run(
            [str(REPO_DIR / ".venv" / "bin" / "python"), "-c", CRC64NVME_OF_FILE, str(src)],
            check=True,
            capture_output=True,
            text=True,
        )
        crc = out.stdout.strip()
        self.extra["w4c_crc64nvme"] = crc
        log(f"W4c: {key} carries CRC64NVME {crc} (FULL_OBJECT) through the proxy")
        self.proxy = DelayProxy(
            binary, self.work, self.server.port, self.work / "haproxy.log", checksum=(f"/{bucket}/{key}", crc)
        )
        try:
            for r in range(self.args.repeats):
                for tool in self.tools.values():
                    dest = self.work / tool.name / f"w4c-{r}"
                    rmtree(dest)
                    dest.mkdir(parents=True)
                    self.timed_pass(tool, "W4C", r, bucket, dest, False, expected, via_proxy_ms=0)
                    rmtree(dest)
        finally:
            self.proxy.stop()
            self.proxy = None
        self.done_with_big()

    def w5(self) -> None:
        """W5 at ``--w5-rate``; with ``--w5-rates`` also a sweep for the capacity line
        (the highest rate whose p99 stays within target); with ``--w5-hook`` every rate
        also runs with a ``[hooks] command`` configured (the hook's cost), ``--repeats``
        pairs of runs per rate.

        The order of a pair alternates (without the hook first on even repeats, with it
        first on odd ones): on a shared machine the second run of a pair was measured to
        cost more whichever it was (with ÷ without 1.24 in one order, 0.82 in the other),
        so one order alone measures the order, not the hook. Without ``--w5-hook`` each
        rate runs once, as before."""
        if "s3sync" not in self.tools:
            self.notes.append("W5 skipped: s3sync not among the tools")
            return
        a = self.args
        rates = sorted({a.w5_rate, *a.w5_rates})
        runs: list[dict[str, Any]] = []
        main_rate, main_events = a.w5_rate, a.w5_events
        repeats = max(1, a.repeats) if a.w5_hook else 1
        try:
            for rep in range(repeats):
                for rate in rates:
                    order = ((True, False) if rep % 2 else (False, True)) if a.w5_hook else (False,)
                    for hook in order:
                        a.w5_rate = rate
                        a.w5_events = main_events if rate == main_rate else max(500, int(rate * a.w5_seconds))
                        try:
                            result = self._w5_once(hook)
                        except RuntimeError as exc:  # one run lost, not the pairs already measured
                            if not a.w5_hook:
                                raise
                            with_ = "with" if hook else "without"
                            self.notes.append(f"W5 at {rate:.0f}/s {with_} the hook, pair {rep + 1}: {exc}")
                            log(f"W5 run failed, going on: {exc}")
                            continue
                        result["repeat"] = rep
                        if a.w5_hook:
                            result["order"] = "hook first" if order[0] else "hook second"
                        runs.append(result)
                        if rate == main_rate and not hook and rep == 0:
                            self.extra["w5"] = result
        finally:
            a.w5_rate, a.w5_events = main_rate, main_events
        self.extra["w5_runs"] = runs

    def _w5_once(self, hook: bool) -> dict[str, Any]:
        bucket = "bench-events"
        (self.data / bucket).mkdir(parents=True, exist_ok=True)
        objects = self._w5_objects(bucket)
        self.server.restart()
        dest = self.work / "s3sync" / "w5"
        rmtree(dest)
        dest.mkdir(parents=True)
        api_port = free_port()
        cfg = self.work / "w5.toml"
        cfg.write_text(
            "[s3]\n"
            f'bucket = "{bucket}"\n'
            f'endpoint_url = "{self.server.url}"\n'
            "[sync]\n"
            f'local_dir = "{dest}"\n'
            "periodic = false\n"
            "[api]\n"
            'host = "127.0.0.1"\n'
            f"port = {api_port}\n" + ('[hooks]\ncommand = ["true"]\n' if hook else "")
            # a hook that acknowledges every batch at once: what the outbox costs the sync
        )
        logp = self.work / "logs" / "W5-s3sync-serve.log"
        with logp.open("wb") as out:
            proc = subprocess.Popen(
                [str(peers.s3sync_bin()), "serve", "--config", str(cfg)],
                env=self.env,
                stdout=out,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
            )
        try:
            try:
                wait_http("127.0.0.1", api_port, 30.0)
            except RuntimeError as exc:
                raise RuntimeError(f"s3sync serve did not start: {exc}; {tail(logp)}") from exc
            before, cpu0 = _schedstat(proc.pid), _proc_cpu(proc.pid)
            lag = _LagSampler(api_port)
            try:
                result = self._drive_events(bucket, dest, api_port, objects)
            finally:
                lag.stop()
            after, cpu1 = _schedstat(proc.pid), _proc_cpu(proc.pid)
            result["hook"] = hook
            result.update(lag.result())
            if cpu0 is not None and cpu1 is not None:
                # every thread of the daemon (loop, state writer, commit threads), per event
                result["daemon_cpu_s"] = round(cpu1 - cpu0, 3)
                result["cpu_ms_per_event"] = round(1000 * (cpu1 - cpu0) / max(1, result["events"]), 3)
            if before and after:
                # CPU the daemon's event loop got, and time it sat runnable waiting for a
                # core: on a shared machine the second says whether latency is ours
                result["daemon_loop_cpu_s"] = round((after[0] - before[0]) / 1e9, 3)
                result["daemon_loop_runqueue_wait_s"] = round((after[1] - before[1]) / 1e9, 3)
            with contextlib.suppress(OSError, ValueError):
                result["s3sync_stats"] = http_json("127.0.0.1", api_port, "GET", "/api/v1/stats")
        finally:
            proc.send_signal(signal.SIGTERM)
            try:
                proc.wait(30)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
        result["serve_exit_code"] = proc.returncode
        log(
            f"W5 s3sync: {result['delivered']}/{result['events']} files; generator held "
            f"{result['achieved_rate']:.0f}/s of {result['target_rate']:.0f}/s "
            f"(worst send {result['generator_max_late_ms']} ms late"
            f"{'' if result['valid'] else ', below 95%: INVALID'}); "
            f"p50 {result.get('p50_ms')} ms, p99 {result.get('p99_ms')} ms; daemon loop: "
            f"{result.get('daemon_loop_cpu_s')} s on a CPU, {result.get('daemon_loop_runqueue_wait_s')} s "
            f"waiting for one; daemon {result.get('cpu_ms_per_event')} ms CPU per event; freshness lag "
            f"max {result.get('lag_max_s')} s, after {result.get('lag_after_s')} s"
            f"{' (with a hook command)' if hook else ''}"
        )
        rmtree(self.data / bucket)
        return result

    def _w5_objects(self, bucket: str) -> list[tuple[str, int, str]]:
        """Write W5's objects into the server's data directory before the daemon starts.

        Uploading beforehand keeps S3 write time out of event → file, and writing
        the files directly (rclone serves the directory) is far faster than PUTs.
        """
        n, size = self.args.w5_events, 4096
        rng = random.Random(5)
        root = self.data / bucket
        stamp = whole_second_now()
        objects = []
        for i in range(n):
            key = f"ev/{i // 100:03d}/obj {i:06d}.bin"  # a space: keys arrive URL-encoded
            body = rng.randbytes(size)
            path = root / key
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_bytes(body)
            os.utime(path, (stamp, stamp))
            objects.append((key, size, hashlib.md5(body).hexdigest()))
        return objects

    def _drive_events(
        self, bucket: str, dest: Path, api_port: int, objects: list[tuple[str, int, str]]
    ) -> dict[str, Any]:
        """Send one notification per object open-loop from ``eventgen.py`` (its own
        process), at ``--w5-rate``; a thread here records when each expected path
        appears with its full size: from the inotify ``IN_MOVED_TO`` of its rename
        into place (``bench/inotify.py``), or, where inotify is missing, by stat'ing
        each outstanding path every ~0.5 ms. Latency runs from the generator's send
        time (CLOCK_MONOTONIC, shared by both processes) to that moment.
        """
        rate = self.args.w5_rate
        bodies = []
        now_iso = _dt.datetime.now(_dt.UTC).strftime("%Y-%m-%dT%H:%M:%S.%f")[:-3] + "Z"
        seq0 = time.time_ns()
        for i, (key, size, etag) in enumerate(objects):
            record = {
                "eventVersion": "2.1",
                "eventSource": "aws:s3",
                "awsRegion": peers.REGION,
                "eventTime": now_iso,
                "eventName": "ObjectCreated:Put",
                "s3": {
                    "s3SchemaVersion": "1.0",
                    "bucket": {"name": bucket, "arn": f"arn:aws:s3:::{bucket}"},
                    "object": {
                        "key": quote_plus(key, safe="/"),
                        "size": size,
                        "eTag": etag,
                        "sequencer": f"{seq0 + i:020X}",
                    },
                },
            }
            bodies.append(json.dumps({"Records": [record]}))
        start_at = time.monotonic() + 1.0
        spec = self.work / "w5-spec.json"
        spec.write_text(
            json.dumps(
                {
                    "host": "127.0.0.1",
                    "port": api_port,
                    "path": "/api/v1/s3-notification",
                    "rate": rate,
                    "start_at": start_at,
                    "bodies": bodies,
                }
            )
        )
        n = len(objects)
        seen = [0.0] * n
        stop = threading.Event()

        def stat_poller() -> None:
            """Fallback without inotify: stat each outstanding path every ~0.5 ms."""
            pending: list[int] = []
            nxt = 0
            while not stop.is_set():
                now = time.monotonic()
                due = min(n, max(0, int((now - start_at) * rate) + 1))
                pending.extend(range(nxt, due))
                nxt = max(nxt, due)
                still = []
                for i in pending:
                    try:
                        st = os.stat(dest / objects[i][0])
                    except FileNotFoundError:
                        still.append(i)
                        continue
                    if st.st_size == objects[i][1]:
                        seen[i] = time.monotonic()
                    else:
                        still.append(i)
                pending = still
                if nxt == n and not pending:
                    return
                time.sleep(0.0005)

        # inotify: the rename that puts a file in place is the event (bench/inotify.py says why)
        index = {str(dest / key): i for i, (key, _s, _e) in enumerate(objects)}
        watcher = None
        try:
            from inotify import Inotify

            watcher = Inotify()
            for d in sorted({os.path.dirname(p) for p in index}):
                os.makedirs(d, exist_ok=True)  # the mirror's directories exist beforehand
                watcher.watch(d)
        except OSError:
            watcher = None

        def inotify_poller() -> None:
            assert watcher is not None
            left = n
            while left and not stop.is_set():
                for directory, _mask, name in watcher.read(50):
                    i = index.get(os.path.join(directory, name))
                    if i is None or seen[i]:
                        continue
                    at = time.monotonic()
                    try:
                        if os.stat(os.path.join(directory, name)).st_size == objects[i][1]:
                            seen[i] = at
                            left -= 1
                    except FileNotFoundError:
                        pass
            watcher.close()

        poller = inotify_poller if watcher is not None else stat_poller
        self.extra["w5_clock"] = "inotify IN_MOVED_TO" if watcher is not None else "stat poll every 0.5 ms"
        th = threading.Thread(target=poller, daemon=True)
        th.start()
        gen = subprocess.run(
            [sys.executable, str(BENCH_DIR / "eventgen.py"), str(spec)],
            capture_output=True,
            text=True,
            timeout=n / rate + 120,
        )
        if gen.returncode != 0:
            stop.set()
            raise RuntimeError(f"event generator failed (exit {gen.returncode}): {gen.stderr.strip()[-600:]}")
        out = json.loads(gen.stdout)
        th.join(30)
        stop.set()
        th.join()
        sent = out["sent_at"]
        lat = sorted((seen[i] - sent[i]) * 1000 for i in range(n) if seen[i])
        achieved = out["achieved_rate"]
        res: dict[str, Any] = {
            "events": n,
            "target_rate": rate,
            "achieved_rate": achieved,
            "generator_max_late_ms": out["max_late_ms"],
            "generator_connections": out["connections_opened"],
            "generator_pipelined": out.get("pipelined", 0),
            "unanswered": out.get("unanswered", 0),
            "valid": achieved >= W5_MIN_RATE_FRACTION * rate,
            "delivered": len(lat),
            "missing_after_30s": n - len(lat),
            "http_statuses": out["statuses"],
        }
        if lat:
            res.update(
                p50_ms=round(percentile(lat, 50), 2),
                p90_ms=round(percentile(lat, 90), 2),
                p99_ms=round(percentile(lat, 99), 2),
                max_ms=round(lat[-1], 2),
            )
        return res

    def w6(self) -> None:
        if "s3sync" not in self.tools:
            self.notes.append("W6 skipped: s3sync not among the tools")
            return
        tool = self.tools["s3sync"]
        results = []
        for n in self.args.w6_sizes:
            bucket = f"bench-mem-{n}"
            log(f"W6: generating {n} tiny objects")
            per_dir = 1000
            gen_small(self.data / bucket, n, max(1, n // per_dir), 64, seed=n)
            expected = manifest(self.data / bucket, with_hash=False)
            dest = self.work / "s3sync" / f"w6-{n}"
            rmtree(dest)
            dest.mkdir(parents=True)
            cold = self.timed_pass(tool, f"W6-cold-{n}", 0, bucket, dest, False, expected)
            entry: dict[str, Any] = {"objects": n, "cold": dataclasses.asdict(cold)}
            if cold.valid:
                # One pass: peak RSS is a maximum, not a noisy time, and at 200k
                # objects each pass costs real minutes of the 10-minute budget.
                nochange = [self.timed_pass(tool, f"W6-{n}", 0, bucket, dest, False, expected)]
                entry["nochange"] = [dataclasses.asdict(p) for p in nochange]
                if all(p.valid for p in nochange):
                    entry["rss_mb"] = max(p.max_rss_mb for p in nochange)
                    entry["seconds"] = statistics.median(p.seconds for p in nochange)
            results.append(entry)
            rmtree(dest)
            rmtree(self.data / bucket)
        self.extra["w6"] = results

    def w8(self) -> None:
        """W8 (inventory-driven reconcile at 10⁶) and W6's 10⁶ point: bench/scale.py, over its stub."""
        import scale

        a = self.args
        sargs = scale.parse_args(
            [
                "--workloads", "W8,W6", "--w8-objects", str(a.w8_objects),
                "--w8-cold-objects", str(a.w8_cold_objects), "--w6-sizes", a.w8_w6_sizes,
                "--timeout", str(max(a.timeout, 3600.0)), "--work", str(self.work / "scale"),
            ]
        )  # fmt: skip
        results, summary, notes = scale.run(sargs)
        self.notes.extend(notes)
        self.extra["w8"] = {"passes": [dataclasses.asdict(r) for r in results], **summary}
        for r in results:  # W6 at 10⁶ tracked objects joins the W6 row
            if r.workload == "W6-nochange" and r.valid:
                entry = {
                    "objects": r.objects,
                    "rss_mb": r.max_rss_mb,
                    "seconds": r.seconds,
                    "via": "scale.py",
                }
                self.extra.setdefault("w6", []).append(entry)
        self.extra["w6"] = sorted(self.extra.get("w6", []), key=lambda e: e["objects"])


def _proc_cpu(pid: int) -> float | None:
    """User + system CPU seconds of every thread of ``pid`` so far (``/proc/PID/stat``)."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
    except (OSError, ValueError, IndexError):
        return None


class _LagSampler:
    """Samples ``GET /api/v1/freshness`` every 100 ms while W5 runs: the watermark's lag.

    ``lag_seconds`` is how far the events-applied watermark trails now (null when
    nothing is pending); the largest sample and the value once the run is over are
    reported. One request per 100 ms is noise beside 1,000 events/s.
    """

    def __init__(self, port: int) -> None:
        self.port = port
        self.samples: list[float] = []
        self.after: Any = None
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="w5-lag", daemon=True)
        self._thread.start()

    def _get(self) -> Any:
        return http_json("127.0.0.1", self.port, "GET", "/api/v1/freshness").get("lag_seconds")

    def _run(self) -> None:
        while not self._stop.wait(0.1):
            with contextlib.suppress(OSError, ValueError, AttributeError):
                lag = self._get()
                if isinstance(lag, int | float):
                    self.samples.append(float(lag))

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(5)
        with contextlib.suppress(OSError, ValueError, AttributeError):
            self.after = self._get()

    def result(self) -> dict[str, Any]:
        return {
            "lag_max_s": round(max(self.samples), 3) if self.samples else None,
            "lag_samples": len(self.samples),
            "lag_after_s": self.after,
        }


def _schedstat(pid: int) -> tuple[int, int] | None:
    """(ns on a CPU, ns runnable but waiting for one) of a process's main thread."""
    try:
        run, wait, _slices = Path(f"/proc/{pid}/schedstat").read_text().split()
    except (OSError, ValueError):
        return None
    return int(run), int(wait)


def percentile(sorted_vals: list[float], q: float) -> float:
    """Nearest-rank percentile: p99 of 1000 samples is the 990th value."""
    if not sorted_vals:
        return float("nan")
    rank = max(1, -(-len(sorted_vals) * q // 100))
    return sorted_vals[int(rank) - 1]


def http_json(host: str, port: int, method: str, path: str) -> Any:
    conn = http.client.HTTPConnection(host, port, timeout=10)
    try:
        conn.request(method, path)
        return json.loads(conn.getresponse().read() or b"null")
    finally:
        conn.close()


# ------------------------------------------------------------------------- report


def machine_info(tools: dict[str, Tool], env: dict[str, str]) -> dict[str, Any]:
    cpu = "unknown"
    with contextlib.suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    mem_gb = None
    with contextlib.suppress(OSError, ValueError, IndexError):
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemTotal"):
                mem_gb = round(int(line.split()[1]) / 1024 / 1024, 1)
    commit = subprocess.run(
        ["git", "-C", str(REPO_DIR), "rev-parse", "--short", "HEAD"], capture_output=True, text=True
    ).stdout.strip()
    dirty = subprocess.run(
        ["git", "-C", str(REPO_DIR), "status", "--porcelain", "--", "src"], capture_output=True, text=True
    ).stdout.strip()
    versions = {name: t.version(env) for name, t in tools.items()}
    versions["rclone serve s3 (server)"] = peers.all_tools()["rclone"].version(env)
    return {
        "cpu": cpu,
        "cores": os.cpu_count(),
        "ram_gb": mem_gb,
        "kernel": platform.release(),
        "python": platform.python_version(),
        "s3sync_commit": commit + ("+dirty-src" if dirty else ""),
        "versions": versions,
    }


def fmt_s(v: float | None) -> str:
    return "—" if v is None else (f"{v:.3f} s" if v < 10 else f"{v:.1f} s")


def summarise(bench: Bench) -> dict[str, Any]:
    """Medians per (workload, tool), ratio to the best peer and PASS/MISS per target."""
    cells: dict[str, dict[str, dict[str, Any]]] = {}
    for p in bench.passes:
        if p.workload not in ("W1", "W2", "W3", "W4", "W4C", "W7", "W7-0ms"):
            continue
        cells.setdefault(p.workload, {}).setdefault(p.tool, {"runs": []})["runs"].append(p)
    rows: dict[str, Any] = {}
    for wl, per_tool in cells.items():
        row: dict[str, Any] = {}
        for tool, c in per_tool.items():
            runs: list[Pass] = c["runs"]
            bad = [p for p in runs if not p.valid]
            if bad:
                row[tool] = {"status": "INVALID", "reason": bad[0].reason, "runs": len(runs)}
            else:
                row[tool] = {
                    "status": "ok",
                    "median_s": statistics.median(p.seconds for p in runs),
                    "cpu_s": statistics.median(p.cpu_seconds for p in runs),
                    "rss_mb": max(p.max_rss_mb for p in runs),
                    "all_s": [round(p.seconds, 4) for p in runs],
                }
        valid_peers = {t: row[t]["median_s"] for t in PEER_NAMES if t in row and row[t]["status"] == "ok"}
        best = min(valid_peers, key=lambda t: valid_peers[t]) if valid_peers else None
        ours = row.get("s3sync")
        ratio = None
        if best and ours and ours["status"] == "ok":
            ratio = ours["median_s"] / valid_peers[best]
        verdict = "—"
        if ours is not None and wl in TARGETS:
            verdict = "MISS" if ratio is None or ratio > TARGETS[wl] else "PASS"
        rows[wl] = {
            "tools": row,
            "best_peer": best,
            "ratio": ratio,
            "target": TARGETS.get(wl),
            "result": verdict,
        }
        if wl == "W4" and "cp" in row and row["cp"]["status"] == "ok" and ours and ours["status"] == "ok":
            rows[wl]["ratio_to_cp"] = ours["median_s"] / row["cp"]["median_s"]
        if wl == "W4" and "md5" in row and row["md5"]["status"] == "ok" and ours is not None:
            # W4's verdict is against the verification floor (see W4_MD5_TARGET)
            floor = row["md5"]["median_s"]
            r = ours["median_s"] / floor if ours["status"] == "ok" else None
            rows[wl].update(ratio_to_md5=r, target_md5=W4_MD5_TARGET)
            rows[wl]["result"] = "PASS" if r is not None and r <= W4_MD5_TARGET else "MISS"
    _w7_against_w1(rows)
    out: dict[str, Any] = {"rows": rows}
    w5 = bench.extra.get("w5")
    if w5 is not None:
        p99 = w5.get("p99_ms")
        ok = p99 is not None and p99 <= W5_P99_TARGET_MS and w5["missing_after_30s"] == 0
        out["W5"] = {**w5, "result": ("PASS" if ok else "MISS") if w5["valid"] else "INVALID"}
    runs = bench.extra.get("w5_runs") or []
    if len(runs) > 1:
        out["W5_runs"] = runs
        plain = [r for r in runs if not r.get("hook")]
        # a rate counts only when every run of it without the hook stayed within target
        ok = {r["target_rate"] for r in plain} - {
            r["target_rate"]
            for r in plain
            if not (r["valid"] and r.get("p99_ms") is not None and r["p99_ms"] <= W5_P99_TARGET_MS)
        }
        cap = max(ok) if ok else None
        out["W5_capacity"] = {"rate": cap, "result": "PASS" if cap is not None and cap >= 1000 else "MISS"}
        costs = [
            c for c in (_w5_hook_cost(runs, rate) for rate in sorted({r["target_rate"] for r in plain})) if c
        ]
        out["W5_hook_cost"] = costs
    if "w8" in bench.extra:
        out["W8"] = bench.extra["w8"]
    w6 = bench.extra.get("w6")
    if w6:
        out["W6"] = {"sizes": w6}
        sized = [e for e in w6 if "rss_mb" in e]
        if len(sized) >= 2:
            small, large = sized[0], sized[-1]
            growth = large["rss_mb"] / small["rss_mb"]
            ok = growth <= W6_GROWTH_TARGET and large["rss_mb"] <= W6_RSS_CAP_MB
            out["W6"].update(growth=growth, result="PASS" if ok else "MISS")
        else:
            out["W6"]["result"] = "MISS"
    return out


def _ok_median(rows: dict[str, Any], wl: str, tool: str) -> float | None:
    c = rows.get(wl, {}).get("tools", {}).get(tool)
    return c["median_s"] if c is not None and c["status"] == "ok" else None


def _w7_against_w1(rows: dict[str, Any]) -> None:
    """W7's target is s3sync's own W1 (latency hidden); W7-0ms shows the proxy's own cost."""
    w7 = rows.get("W7")
    if w7 is not None:
        ours, own_w1 = _ok_median(rows, "W7", "s3sync"), _ok_median(rows, "W1", "s3sync")
        w7["target"] = W7_OWN_W1_TARGET
        w7["ratio_to_own_w1"] = None if ours is None or own_w1 is None else ours / own_w1
        if ours is not None or "s3sync" in w7["tools"]:
            r = w7["ratio_to_own_w1"]
            w7["result"] = "PASS" if r is not None and r <= W7_OWN_W1_TARGET else "MISS"
    zero = rows.get("W7-0ms")
    if zero is not None:
        overhead = {}
        for tool in zero["tools"]:
            z, direct = _ok_median(rows, "W7-0ms", tool), _ok_median(rows, "W1", tool)
            if z is not None and direct:
                overhead[tool] = z / direct
        zero["proxy_overhead_vs_w1"] = overhead


WL_TITLES = {
    "W1": "W1 cold sync, {n} x {kib} KiB / {p} prefixes",
    "W2": "W2 re-sync, nothing changed",
    "W3": "W3 re-sync, 1% overwritten + 1% deleted (--delete)",
    "W4": "W4 one {mib} MiB object, cold",
    "W4C": "W4c the same object carrying a full-object CRC64NVME (via HAProxy)",
    "W7": "W7 = W1 behind HAProxy holding each request {ms} ms",
}


def _w7_lines(summary: dict[str, Any], args: argparse.Namespace, cols: list[str]) -> list[str]:
    """The W7 row (ratio to s3sync's own W1) and the proxy-at-0-ms row (proxy cost per tool)."""
    out = []
    zero = summary["rows"].get("W7-0ms")
    if zero is not None:
        cells = []
        for t in cols:
            c = zero["tools"].get(t)
            if c is None:
                cells.append("—")
            elif c["status"] != "ok":
                cells.append("INVALID")
            else:
                ov = zero.get("proxy_overhead_vs_w1", {}).get(t)
                cells.append(fmt_s(c["median_s"]) + (f" ({ov:.2f} x W1)" if ov is not None else ""))
        out.append(
            "| W7 check: the same through the proxy at 0 ms (x the tool's direct W1) | "
            + " | ".join(cells)
            + " | — | proxy cost small | — |"
        )
    row = summary["rows"].get("W7")
    if row is not None:
        cells = []
        for t in cols:
            c = row["tools"].get(t)
            cells.append("—" if c is None else ("INVALID" if c["status"] != "ok" else fmt_s(c["median_s"])))
        own = row.get("ratio_to_own_w1")
        ratio = "—" if own is None else f"{own:.2f} x s3sync W1"
        if row["ratio"] is not None:
            ratio += f"; {row['ratio']:.2f} (vs {row['best_peer']})"
        title = WL_TITLES["W7"].format(ms=args.w7_delay_ms)
        out.append(
            f"| {title} | "
            + " | ".join(cells)
            + f" | {ratio} | ≤ {W7_OWN_W1_TARGET} x own W1 | {row['result']} |"
        )
    return out


def _w5_lines(summary: dict[str, Any], peers_na: list[str]) -> list[str]:
    """W5's extra rows: CPU per event and freshness lag per run, the capacity line, the hook's cost."""
    runs = summary.get("W5_runs") or []
    out = []
    for r in runs:
        val = (
            f"p50 {r.get('p50_ms')} ms · p99 {r.get('p99_ms')} ms · {r.get('cpu_ms_per_event')} ms CPU/event"
            f" · lag max {r.get('lag_max_s')} s"
        )
        title = f"W5 at {r['target_rate']:.0f}/s ({r['events']} events, held {r['achieved_rate']:.0f}/s)" + (
            ", `[hooks] command`" if r.get("hook") else ""
        )
        if "order" in r:  # --w5-hook: which pair, and which of its runs came first
            title += f" · pair {r.get('repeat', 0) + 1}, {r['order']}"
        out.append(f"| {title} | " + " | ".join([*peers_na, val]) + " | — | — | — |")
    cap = summary.get("W5_capacity")
    if cap is not None:
        val = "none of the rates tried" if cap["rate"] is None else f"{cap['rate']:.0f} events/s"
        out.append(
            "| W5 capacity: highest rate tried with p99 ≤ 10 ms (no hook) | "
            + " | ".join([*peers_na, val])
            + f" | — | ≥ 1000/s | {cap['result']} |"
        )
    for h in summary.get("W5_hook_cost", []):
        pairs = h.get("pairs", 1)
        spread = (
            f"geometric mean of {pairs} pairs, range {h['ratio_min']:.3f} to {h['ratio_max']:.3f}; "
            if pairs > 1
            else "1 pair; "
        )
        out.append(
            f"| W5 hook cost at {h['rate']:.0f}/s: CPU per event with ÷ without a hook | "
            + " | ".join(
                [
                    *peers_na,
                    f"{h['cpu_ratio']:.3f} ({spread}median p99 {h['p99_without']} → {h['p99_with']} ms)",
                ]
            )
            + f" | — | ≤ 1.05 | {'PASS' if h['cpu_ratio'] <= 1.05 else 'MISS'} |"
        )
    return out


def _w5_hook_cost(runs: list[dict[str, Any]], rate: float) -> dict[str, Any] | None:
    """The hook's cost at ``rate``: the geometric mean over the pairs (one repeat each) of
    CPU per event with the hook ÷ without, with the pairs' range.

    A ratio's geometric mean, not the arithmetic one: 0.8 and 1.25 are the same
    difference in opposite directions and must cancel. ``cpu_ratio`` keeps its
    name (the earlier single-pair field) and is now that mean.
    """
    pairs: dict[int, dict[bool, dict[str, Any]]] = {}
    for r in runs:
        if r["target_rate"] == rate and r.get("cpu_ms_per_event"):
            pairs.setdefault(r.get("repeat", 0), {})[bool(r.get("hook"))] = r
    done = [p for _, p in sorted(pairs.items()) if True in p and False in p]
    if not done:
        return None
    ratios = [p[True]["cpu_ms_per_event"] / p[False]["cpu_ms_per_event"] for p in done]
    return {
        "rate": rate,
        "cpu_ratio": math.exp(sum(math.log(x) for x in ratios) / len(ratios)),
        "pairs": len(ratios),
        "ratios": [round(x, 4) for x in ratios],
        "orders": [p[True].get("order", "hook second") for p in done],
        "ratio_min": min(ratios),
        "ratio_max": max(ratios),
        "p99_without": _median_or_none([p[False].get("p99_ms") for p in done]),
        "p99_with": _median_or_none([p[True].get("p99_ms") for p in done]),
    }


def _median_or_none(values: list[Any]) -> float | None:
    known = [v for v in values if v is not None]
    return round(statistics.median(known), 2) if known else None


def render_markdown(
    summary: dict[str, Any],
    info: dict[str, Any],
    args: argparse.Namespace,
    tools: list[str],
    notes: list[str],
) -> str:
    cols = [t for t in (*PEER_NAMES, "s3sync") if t in tools]
    lines = [
        "| workload | " + " | ".join(cols) + " | s3sync ÷ best peer | target | result |",
        "|---|" + "---|" * len(cols) + "---|---|---|",
    ]
    for wl in ("W1", "W2", "W3", "W4", "W4C"):
        row = summary["rows"].get(wl)
        if row is None:
            continue
        title = WL_TITLES[wl].format(
            n=args.w1_objects, kib=args.w1_size // 1024 or args.w1_size, p=args.w1_prefixes, mib=args.w4_mib
        )
        cells = []
        for t in cols:
            c = row["tools"].get(t)
            if c is None:
                cells.append("—")
            elif c["status"] != "ok":
                cells.append("INVALID")
            else:
                cells.append(fmt_s(c["median_s"]))
        ratio = "—" if row["ratio"] is None else f"{row['ratio']:.2f} (vs {row['best_peer']})"
        target = f"≤ {row['target']}"
        if wl == "W4":
            cp = row["tools"].get("cp")
            if cp and cp["status"] == "ok":
                title += f"; warm `cp` {fmt_s(cp['median_s'])}"
                if "ratio_to_cp" in row:
                    ratio += f"; {row['ratio_to_cp']:.1f} x cp"
            md5 = row["tools"].get("md5")
            if md5 and md5["status"] == "ok":
                title += f"; one-core MD5 floor {fmt_s(md5['median_s'])}"
                if row.get("ratio_to_md5") is not None:
                    ratio = f"**{row['ratio_to_md5']:.2f} x MD5 floor**; " + ratio
                target = f"≤ {W4_MD5_TARGET} x MD5 floor"
        lines.append(f"| {title} | " + " | ".join(cells) + f" | {ratio} | {target} | {row['result']} |")
    lines += _w7_lines(summary, args, cols)
    na = "n/a (no event mode)"
    if "W5" in summary:
        w5 = summary["W5"]
        peers_na = [na for t in cols if t != "s3sync"]
        val = f"p50 {w5.get('p50_ms', '—')} ms · p99 {w5.get('p99_ms', '—')} ms"
        val += f" · {w5.get('cpu_ms_per_event', '—')} ms CPU/event"
        val += f" · freshness lag max {w5.get('lag_max_s', '—')} s"
        if w5["missing_after_30s"]:
            val += f" ({w5['missing_after_30s']} never appeared)"
        title = (
            f"W5 event → file, {w5['events']} events at {w5['target_rate']:.0f}/s "
            f"(generator held {w5['achieved_rate']:.0f}/s, open loop)"
        )
        lines.append(
            f"| {title} | "
            + " | ".join([*peers_na, val])
            + f" | — | p99 ≤ {W5_P99_TARGET_MS:.0f} ms | {w5['result']} |"
        )
        lines += _w5_lines(summary, peers_na)
    if "W6" in summary:
        w6 = summary["W6"]
        peers_na = ["n/a" for t in cols if t != "s3sync"]
        parts = []
        for e in w6["sizes"]:
            parts.append(
                f"{e['objects']:,}: {e['rss_mb']:.0f} MB" if "rss_mb" in e else f"{e['objects']:,}: INVALID"
            )
        growth = f"{w6['growth']:.2f} x smallest" if "growth" in w6 else "—"
        lines.append(
            "| W6 peak RSS, no-change `sync` at N tracked objects | "
            + " | ".join([*peers_na, " · ".join(parts)])
            + f" | {growth} | ≤ {W6_GROWTH_TARGET} x and ≤ {W6_RSS_CAP_MB:.0f} MB | {w6['result']} |"
        )
    w8 = summary.get("W8")
    if w8:
        peers_na = ["n/a" for t in cols if t != "s3sync"]
        for p in w8["passes"]:
            if not p["workload"].startswith("W8"):
                continue
            kind = "no-change" if p["workload"] == "W8-nochange" else "cold"
            val = (
                f"{p['seconds']:.1f} s · CPU {p['cpu_seconds']:.1f} s · {p['max_rss_mb']:.0f} MB · "
                f"{p['list_calls']} LIST · {p['gets']:,} GET"
                if p["valid"]
                else f"INVALID ({p['reason'][:80]})"
            )
            ok = p["valid"] and p["list_calls"] == 0
            lines.append(
                f"| W8 inventory-driven `sync --inventory`, {kind}, {p['objects']:,} objects | "
                + " | ".join([*peers_na, val])
                + f" | — | 0 LIST calls | {'PASS' if ok else 'MISS'} |"
            )
    md = ["## Results", "", *lines, ""]
    # Secondary table: CPU seconds, which is what the per-object cost really is.
    cpu_lines = ["| workload | " + " | ".join(cols) + " |", "|---|" + "---|" * len(cols)]
    for wl in ("W1", "W2", "W3", "W4", "W4C", "W7-0ms", "W7"):
        row = summary["rows"].get(wl)
        if row is None:
            continue
        cells = []
        for t in cols:
            c = row["tools"].get(t)
            cells.append(
                "—" if c is None or c["status"] != "ok" else f"{c['cpu_s']:.2f} s / {c['rss_mb']:.0f} MB"
            )
        cpu_lines.append(f"| {wl} | " + " | ".join(cells) + " |")
    md += ["CPU time (user+sys, median) / peak RSS (max) of each tool's process:", "", *cpu_lines, ""]
    invalid = [
        f"- {wl} {t}: {c['reason']}"
        for wl, row in summary["rows"].items()
        for t, c in row["tools"].items()
        if c["status"] != "ok"
    ]
    if invalid:
        md += ["INVALID cells (wrong mirror or failure, so not timed):", "", *invalid, ""]
    if notes:
        md += ["Notes:", "", *[f"- {n}" for n in notes], ""]
    v = info["versions"]
    md += [
        f"Machine: {info['cpu']}, {info['cores']} cores, {info['ram_gb']} GB RAM, Linux {info['kernel']}, "
        f"Python {info['python']}. s3sync commit `{info['s3sync_commit']}`. Median of {args.repeats} "
        f"interleaved repeat(s).",
        "",
        "Versions: " + "; ".join(f"{k}: {val}" for k, val in v.items()),
        "",
    ]
    return "\n".join(md)


# ------------------------------------------------------------------------- main


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--quick", action="store_true", help="small sizes and 1 repeat (about a minute)")
    ap.add_argument("--repeats", type=int, default=None, help="repeats per tool (default 3, --quick 1)")
    ap.add_argument(
        "--workloads",
        default=",".join(w for w in ALL_WORKLOADS if w not in OPT_IN_WORKLOADS),
        help=f"comma list, e.g. W1,W2 (opt-in: {','.join(OPT_IN_WORKLOADS)})",
    )
    ap.add_argument("--tools", default="aws,s5cmd,rclone,s3sync", help="comma list of tools")
    ap.add_argument("--w1-objects", type=int, default=None, help="W1-W3 object count (default 5000)")
    ap.add_argument("--w1-prefixes", type=int, default=50)
    ap.add_argument("--w1-size", type=int, default=4096, help="W1-W3 object size in bytes")
    ap.add_argument("--w4-mib", type=int, default=None, help="W4 object size in MiB (default 1024)")
    ap.add_argument("--w5-events", type=int, default=None, help="W5 event count (default 5000)")
    ap.add_argument("--w5-rate", type=float, default=1000.0, help="W5 events per second (default 1000)")
    ap.add_argument(
        "--w5-rates",
        default="",
        help="W5: also run at these rates (comma list) for the capacity line (p99 <= 10 ms)",
    )
    ap.add_argument(
        "--w5-seconds", type=float, default=5.0, help="W5 sweep: seconds of events per extra rate"
    )
    ap.add_argument(
        "--w5-hook",
        action="store_true",
        help="W5: run every rate again with a [hooks] command, --repeats pairs per rate in alternating order",
    )
    ap.add_argument("--w6-sizes", default=None, help="W6 tracked-object counts (default 20000,200000)")
    ap.add_argument("--w7-delay-ms", type=int, default=20, help="W7: ms each request is held (default 20)")
    ap.add_argument(
        "--w7-zero-repeats", type=int, default=1, help="W7: passes through the proxy at 0 ms (default 1)"
    )
    ap.add_argument("--w8-objects", type=int, default=None, help="W8 tracked objects (default 1000000)")
    ap.add_argument(
        "--w8-cold-objects", type=int, default=None, help="W8 cold pass objects (default 50000; 0 = skip)"
    )
    ap.add_argument(
        "--w8-w6-sizes", default=None, help="W6 sizes run by bench/scale.py (default --w8-objects)"
    )
    ap.add_argument("--s3sync-concurrency", type=int, default=None, help="pass --concurrency to s3sync")
    ap.add_argument("--timeout", type=float, default=600.0, help="seconds before a pass is killed")
    ap.add_argument("--keep", action="store_true", help="keep bench/.data and bench/.work afterwards")
    ap.add_argument("--results-dir", type=Path, default=BENCH_DIR / "results")
    args = ap.parse_args(argv)
    q = args.quick
    args.repeats = args.repeats or (1 if q else 3)
    args.w1_objects = args.w1_objects or (1000 if q else 5000)
    args.w4_mib = args.w4_mib or (128 if q else 1024)
    args.w5_events = args.w5_events or (1000 if q else 5000)
    args.w5_rates = [float(x) for x in args.w5_rates.split(",") if x.strip()]
    args.w6_sizes = [int(x) for x in (args.w6_sizes or ("2000,20000" if q else "20000,200000")).split(",")]
    args.w8_objects = args.w8_objects or (100_000 if q else 1_000_000)
    if args.w8_cold_objects is None:
        args.w8_cold_objects = 5_000 if q else 50_000
    args.w8_w6_sizes = args.w8_w6_sizes or str(args.w8_objects)
    args.workloads = [w.strip().upper() for w in args.workloads.split(",") if w.strip()]
    args.tools = [t.strip() for t in args.tools.split(",") if t.strip()]
    unknown = set(args.workloads) - set(ALL_WORKLOADS)
    if unknown:
        ap.error(f"unknown workloads {sorted(unknown)}")
    bad_tools = set(args.tools) - {*PEER_NAMES, "s3sync"}
    if bad_tools:
        ap.error(f"unknown tools {sorted(bad_tools)}")
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    spawner.spawner()  # before the harness grows: see run_child
    t_start = time.monotonic()
    if any(t in PEER_NAMES for t in args.tools):
        peers.ensure_peers(log)
    elif not (peers.PEERS_DIR / "bin" / "rclone").exists():
        peers.ensure_peers(log)  # the server is rclone, so the peers venv is needed anyway
    peers.S3SYNC_CONCURRENCY = args.s3sync_concurrency
    # Untimed: byte-compile s3sync's sources. An installed package ships compiled; an
    # editable checkout whose files just changed would otherwise be compiled again in
    # every pass (the passes run with PYTHONDONTWRITEBYTECODE=1, like every tool).
    subprocess.run(
        [str(REPO_DIR / ".venv" / "bin" / "python"), "-m", "compileall", "-q", str(REPO_DIR / "src")],
        check=False,
        capture_output=True,
    )
    bench = Bench(args)
    known = peers.all_tools()
    for name in args.tools:
        if name == "s3sync":
            ok, why = peers.s3sync_available()
            if not ok:
                log(f"s3sync is not runnable yet, measuring the peers only: {why}")
                bench.notes.append(f"s3sync not measured: {why}")
                continue
        bench.tools[name] = known[name]
    info = machine_info(bench.tools, bench.env)
    log(f"machine: {info['cpu']} x{info['cores']}, {info['ram_gb']} GB; tools: {', '.join(bench.tools)}")
    bench.server.start()
    log(f"rclone serve s3 on {bench.server.url} over {bench.data}")
    steps: dict[str, Callable[[], None]] = {
        "W1": bench.w1,
        "W2": bench.w2,
        "W3": bench.w3,
        "W4": bench.w4,
        "W4C": bench.w4c,
        "W5": bench.w5,
        "W6": bench.w6,
        "W7": bench.w7,
        "W8": bench.w8,
    }
    try:
        for wl in RUN_ORDER:
            if wl in args.workloads:
                t0 = time.monotonic()
                bench.current = wl
                try:
                    steps[wl]()
                except (RuntimeError, OSError, subprocess.SubprocessError) as exc:
                    log(f"{wl} aborted: {exc}")
                    bench.notes.append(f"{wl} aborted: {exc}")
                log(f"{wl} took {time.monotonic() - t0:.1f} s")
    finally:
        bench.server.stop()
        if not args.keep:
            rmtree(bench.data)
            rmtree(bench.work)
    summary = summarise(bench)
    md = render_markdown(summary, info, args, list(bench.tools), bench.notes)
    elapsed = time.monotonic() - t_start
    stamp = _dt.datetime.now(_dt.UTC).strftime("%Y%m%dT%H%M%SZ")
    record = {
        "timestamp": stamp,
        "elapsed_s": round(elapsed, 1),
        "command": " ".join([Path(sys.argv[0]).name, *(sys.argv[1:] if argv is None else argv)]),
        "args": {k: (str(v) if isinstance(v, Path) else v) for k, v in vars(args).items()},
        "machine": info,
        "tool_notes": {n: t.note for n, t in bench.tools.items()},
        "summary": summary,
        "passes": [dataclasses.asdict(p) for p in bench.passes],
        "notes": bench.notes,
    }
    args.results_dir.mkdir(parents=True, exist_ok=True)
    text = json.dumps(record, indent=2, default=str)
    (args.results_dir / f"{stamp}.json").write_text(text)
    (args.results_dir / "latest.json").write_text(text)
    header = f"# Benchmark {stamp}\n\nCommand: `{record['command']}` ({elapsed:.0f} s in all)\n\n"
    (args.results_dir / "latest.md").write_text(header + md)
    print(md)
    log(f"done in {elapsed:.0f} s; results in {args.results_dir / (stamp + '.json')}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
