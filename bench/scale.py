#!/usr/bin/env python3
"""Scale workloads: W8 (inventory-driven reconcile at 10⁶ objects) and W6 (memory per tracked object).

``python bench/scale.py --workloads W6,W8`` (``--help`` for the knobs). For each
size N the harness *generates* what a long-running deployment would have,
instead of syncing it first (a cold 10⁶-object pass is ~20 CPU-minutes here):

* a mirror directory of N small files with the mtimes s3sync would have set,
  and its state DB (``<mirror>/.s3sync/state.db``) with one row per object;
* an S3 Inventory report of those N objects, laid out as AWS writes it
  (``inventory/SOURCE/daily/YYYY-MM-DDTHH-MMZ/manifest.json`` + ``manifest.checksum``
  + gzip CSV data files in ``data/``, rows shuffled across files as AWS does not
  sort them, keys URL-encoded), served from a second bucket.

The objects themselves come from ``stubs3.py``, a stand-in S3 that computes
every object from its key (no per-object state) and counts requests, so the
numbers are the client's: one child process per pass, wall time around
spawn→reap, CPU and peak RSS from ``os.wait4``, LIST and GET counts from the stub.

* **W8 no-change**: ``s3sync sync --inventory s3://…`` over the generated mirror:
  must make 0 LIST calls on the source bucket and 0 GETs.
* **W8 cold**: the same report into an empty mirror (``--w8-cold-objects`` GETs):
  0 LIST calls; every object fetched and recorded.
* **W6**: listing-driven no-change ``s3sync sync`` at each of ``--w6-sizes``
  tracked objects; peak RSS, and its growth from the smallest to the largest.
"""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import datetime as dt
import gzip
import hashlib
import http.client
import json
import os
import random
import shutil
import sqlite3
import subprocess
import sys
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any
from urllib.parse import quote_plus

sys.path.insert(0, str(Path(__file__).resolve().parent))

import peers
import spawner
from run import log, run_child, tail
from server import wait_http
from stubs3 import MTIME, body_of, etag_of, iso, key_of

BENCH_DIR = Path(__file__).resolve().parent
SOURCE = "scale-src"
INV_BUCKET = "inv"
INV_PREFIX = f"inventory/{SOURCE}/daily"
REPORT_AGE_S = 6 * 3600  # the report was written six hours after the objects' LastModified
ROWS_PER_DATA_FILE = 250_000
W6_GROWTH_TARGET = 1.25
W6_RSS_CAP_MB = 150.0


@dataclasses.dataclass
class Result:
    workload: str
    objects: int
    seconds: float
    cpu_seconds: float
    max_rss_mb: float
    exit_code: int
    list_calls: int
    gets: int
    valid: bool
    reason: str = ""


# ----------------------------------------------------------------------- generation


def _write_dir(mirror: Path, first: int, last: int, size: int) -> None:
    for i in range(first, last):
        key = key_of(i)
        path = str(mirror / key)
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
        os.write(fd, body_of(key, size))
        os.close(fd)
        os.utime(path, (MTIME, MTIME))


def gen_mirror(mirror: Path, n: int, size: int) -> None:
    """N files named and filled as the stub serves them, mtime = LastModified, plus the state DB.

    Files are written by a few threads, one directory (1,000 keys) at a time: the
    syscalls release the GIL, and at 10⁶ files this is minutes saved.
    """
    state = mirror / ".s3sync" / "state.db"
    state.parent.mkdir(parents=True, exist_ok=True)
    spans = [(i, min(n, i + 1000)) for i in range(0, n, 1000)]
    for first, _ in spans:
        (mirror / key_of(first).partition("/")[0]).mkdir(exist_ok=True)
    with ThreadPoolExecutor(4) as pool:
        for fut in [pool.submit(_write_dir, mirror, a, b, size) for a, b in spans]:
            fut.result()
    rows = (
        (key_of(i), etag_of(key_of(i), size), size, float(MTIME), None, None, float(MTIME)) for i in range(n)
    )
    conn = sqlite3.connect(state)
    # The columns s3sync's StateStore creates (it adds what is missing with IF NOT EXISTS).
    conn.executescript(
        "CREATE TABLE IF NOT EXISTS objects (key TEXT PRIMARY KEY, etag TEXT, size INTEGER NOT NULL,"
        " last_modified REAL NOT NULL, version_id TEXT, sequencer TEXT, synced_at REAL NOT NULL)"
        " WITHOUT ROWID;"
    )
    with conn:
        conn.executemany("INSERT OR REPLACE INTO objects VALUES (?,?,?,?,?,?,?)", rows)
    conn.close()


def gen_report(root: Path, n: int, size: int, seed: int = 8) -> str:
    """An inventory report of the N synthetic objects under ``root/inv``; returns its s3:// location."""
    created = MTIME + REPORT_AGE_S
    stamp = dt.datetime.fromtimestamp(created, dt.UTC).strftime("%Y-%m-%dT%H-%MZ")
    base = root / INV_BUCKET / INV_PREFIX
    (base / "data").mkdir(parents=True, exist_ok=True)
    (base / stamp).mkdir(parents=True, exist_ok=True)
    order = list(range(n))
    random.Random(seed).shuffle(order)
    files = []
    when = iso(MTIME)
    for f, start in enumerate(range(0, n, ROWS_PER_DATA_FILE)):
        lines = []
        for i in order[start : start + ROWS_PER_DATA_FILE]:
            key = key_of(i)
            enc, etag = quote_plus(key, safe=""), etag_of(key, size)
            lines.append(f'"{SOURCE}","{enc}","{size}","{when}","{etag}","STANDARD"\n')
        body = gzip.compress("".join(lines).encode(), compresslevel=6, mtime=0)
        name = f"{INV_PREFIX}/data/{hashlib.sha1(f'{n}-{f}'.encode()).hexdigest()}.csv.gz"
        (root / INV_BUCKET / name).write_bytes(body)
        files.append({"key": name, "size": len(body), "MD5checksum": hashlib.md5(body).hexdigest()})
    manifest = {
        "sourceBucket": SOURCE,
        "destinationBucket": f"arn:aws:s3:::{INV_BUCKET}",
        "version": "2016-11-30",
        "creationTimestamp": str(created * 1000),
        "fileFormat": "CSV",
        "fileSchema": "Bucket, Key, Size, LastModifiedDate, ETag, StorageClass",
        "files": files,
    }
    raw = json.dumps(manifest, indent=2).encode()
    (base / stamp / "manifest.json").write_bytes(raw)
    (base / stamp / "manifest.checksum").write_text(hashlib.md5(raw).hexdigest())
    return f"s3://{INV_BUCKET}/{INV_PREFIX}/"


# ------------------------------------------------------------------------ the stub


@contextlib.contextmanager
def stub(work: Path, root: Path, n: int, size: int) -> Iterator[tuple[str, dict[str, int]]]:
    """A fresh stubs3 for one pass; yields its URL and, after the pass, its request counts."""
    port_file = work / "stub.port"
    port_file.unlink(missing_ok=True)
    argv = [sys.executable, str(BENCH_DIR / "stubs3.py"), "--source", SOURCE, "--count", str(n)]
    argv += ["--size", str(size), "--root", str(root), "--port-file", str(port_file)]
    logf = (work / "stub.log").open("ab")
    proc = subprocess.Popen(argv, stdout=logf, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL)
    counts: dict[str, int] = {}
    try:
        deadline = time.monotonic() + 30
        while not port_file.exists():
            if proc.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"stubs3 did not start: {tail(work / 'stub.log')}")
            time.sleep(0.02)
        port = int(port_file.read_text())
        wait_http("127.0.0.1", port)
        yield f"http://127.0.0.1:{port}", counts
        conn = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
        conn.request("GET", "/__stats")
        counts.update(json.loads(conn.getresponse().read()))
        conn.close()
    finally:
        proc.terminate()
        proc.wait(10)
        logf.close()


# ------------------------------------------------------------------------ the runs


class Scale:
    def __init__(self, args: argparse.Namespace) -> None:
        self.args = args
        self.work: Path = args.work
        if not args.reuse:
            shutil.rmtree(self.work, ignore_errors=True)
        (self.work / "logs").mkdir(parents=True, exist_ok=True)
        self.env = {**peers.base_env(self.work), "S3SYNC_SYNC__MAX_FILE_SIZE_MB": "0"}
        self.results: list[Result] = []
        self.notes: list[str] = []
        self._made: dict[int, tuple[Path, Path, str]] = {}

    def dataset(self, n: int) -> tuple[Path, Path, str]:
        """(mirror, stub root, inventory location) for N objects, generated once per N."""
        if n not in self._made:
            t0 = time.monotonic()
            d = self.work / f"n{n}"
            mirror, root = d / "mirror", d / "root"
            location = f"s3://{INV_BUCKET}/{INV_PREFIX}/"
            if self.args.reuse and (d / ".complete").exists():
                self._made[n] = (mirror, root, location)
                log(f"reusing the {n:,}-object data set in {d}")
                return self._made[n]
            shutil.rmtree(d, ignore_errors=True)
            mirror.mkdir(parents=True)
            gen_mirror(mirror, n, self.args.size)
            location = gen_report(root, n, self.args.size)
            (d / ".complete").touch()
            log(
                f"generated {n:,} objects (mirror, state DB, inventory report) "
                f"in {time.monotonic() - t0:.1f} s"
            )
            self._made[n] = (mirror, root, location)
        return self._made[n]

    def drop(self, n: int) -> None:
        made = self._made.pop(n, None)
        if made is not None:
            shutil.rmtree(made[0].parent, ignore_errors=True)

    def one_pass(
        self,
        workload: str,
        n: int,
        mirror: Path,
        root: Path,
        extra: list[str],
        expect_gets: int,
        expect_lists: int | None,
    ) -> Result:
        exe = peers.s3sync_bin()
        with stub(self.work, root, n, self.args.size) as (url, counts):
            argv = [str(exe), "sync", "--bucket", SOURCE, "--endpoint-url", url, "--dest", str(mirror)]
            argv += ["--no-progress", *extra]
            logp = self.work / "logs" / f"{workload}-{n}.log"
            rc, wall, cpu, rss = run_child(argv, self.env, logp, self.args.timeout)
        lists, gets = counts.get(f"LIST {SOURCE}", 0), counts.get("GET source", 0)
        reason = f"exit {rc}: {tail(logp)}" if rc else ""
        if not reason and gets != expect_gets:
            reason = f"{gets} GETs of source objects, expected {expect_gets}"
        if not reason and expect_lists is not None and lists != expect_lists:
            reason = f"{lists} LIST calls on the source bucket, expected {expect_lists}"
        if not reason and expect_gets:
            reason = check_cold(mirror, n, self.args.size)
        r = Result(workload, n, wall, cpu, rss, rc, lists, gets, not reason, reason)
        self.results.append(r)
        log(
            f"{workload} {n:>9,}  {wall:8.2f} s  cpu {cpu:7.2f} s  rss {rss:7.1f} MB  "
            f"LIST {lists}  GET {gets}  {'ok' if r.valid else 'INVALID (' + reason + ')'}"
        )
        return r

    def w8(self) -> None:
        ok, why = inventory_supported()
        if not ok:
            self.notes.append(f"W8 skipped: {why}")
            log(f"W8 skipped: {why}")
            return
        n = self.args.w8_objects
        mirror, root, location = self.dataset(n)
        self.one_pass("W8-nochange", n, mirror, root, ["--inventory", location], 0, 0)
        cold_n = self.args.w8_cold_objects
        if cold_n:
            if cold_n != n:
                root, location = self._report_only(cold_n)
            cold = self.work / f"cold-{cold_n}"
            shutil.rmtree(cold, ignore_errors=True)
            cold.mkdir(parents=True)
            self.one_pass("W8-cold", cold_n, cold, root, ["--inventory", location], cold_n, 0)
            shutil.rmtree(cold, ignore_errors=True)

    def _report_only(self, n: int) -> tuple[Path, str]:
        root = self.work / f"report-{n}"
        return root, gen_report(root, n, self.args.size)

    def w6(self) -> None:
        for n in self.args.w6_sizes:
            mirror, root, _ = self.dataset(n)
            pages = -(-n // 1000)
            self.one_pass("W6-nochange", n, mirror, root, [], 0, pages)
            if not self.args.reuse and (n != self.args.w8_objects or "W8" not in self.args.workloads):
                self.drop(n)


def check_cold(mirror: Path, n: int, size: int) -> str:
    """Every object recorded in the state DB; a sample of files has the served bytes."""
    db = mirror / ".s3sync" / "state.db"
    try:
        conn = sqlite3.connect(f"file:{db}?mode=ro", uri=True)
        rows = conn.execute("SELECT COUNT(*) FROM objects").fetchone()[0]
        conn.close()
    except sqlite3.Error as exc:
        return f"state DB unreadable: {exc}"
    if rows != n:
        return f"{rows} state rows, expected {n}"
    for i in random.Random(n).sample(range(n), min(n, 200)):
        key = key_of(i)
        try:
            if (mirror / key).read_bytes() != body_of(key, size):
                return f"{key} has the wrong bytes"
        except FileNotFoundError:
            return f"{key} missing"
    return ""


def inventory_supported() -> tuple[bool, str]:
    ok, why = peers.s3sync_available()
    if not ok:
        return False, why
    out = subprocess.run(
        [str(peers.s3sync_bin()), "sync", "--help"], capture_output=True, text=True, timeout=60
    )
    if "--inventory" not in out.stdout:
        return False, "this s3sync has no `sync --inventory` yet"
    return True, ""


def summarise(results: list[Result]) -> dict[str, Any]:
    out: dict[str, Any] = {"passes": [dataclasses.asdict(r) for r in results]}
    w6 = [r for r in results if r.workload == "W6-nochange" and r.valid]
    if len(w6) >= 2:
        small, large = w6[0], w6[-1]
        growth = large.max_rss_mb / small.max_rss_mb
        ok = growth <= W6_GROWTH_TARGET and max(r.max_rss_mb for r in w6) <= W6_RSS_CAP_MB
        out["W6"] = {"growth": round(growth, 3), "result": "PASS" if ok else "MISS"}
    w8 = [r for r in results if r.workload.startswith("W8")]
    if w8:
        out["W8"] = {"result": "PASS" if all(r.valid and r.list_calls == 0 for r in w8) else "MISS"}
    return out


def render(results: list[Result], summary: dict[str, Any]) -> str:
    lines = [
        "| workload | objects | wall | CPU | peak RSS | LIST calls (source) | GETs | valid |",
        "|---|---:|---:|---:|---:|---:|---:|---|",
    ]
    for r in results:
        lines.append(
            f"| {r.workload} | {r.objects:,} | {r.seconds:.1f} s | {r.cpu_seconds:.1f} s "
            f"| {r.max_rss_mb:.0f} MB "
            f"| {r.list_calls:,} | {r.gets:,} | {'yes' if r.valid else 'NO: ' + r.reason} |"
        )
    if "W6" in summary:
        lines.append(
            f"\nW6 growth smallest → largest: {summary['W6']['growth']} x "
            f"(target ≤ {W6_GROWTH_TARGET} x and ≤ {W6_RSS_CAP_MB:.0f} MB): {summary['W6']['result']}"
        )
    if "W8" in summary:
        lines.append(f"W8 (0 LIST calls on the source, every pass valid): {summary['W8']['result']}")
    return "\n".join(lines)


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--workloads", default="W6,W8", help="comma list of W6, W8")
    ap.add_argument("--w6-sizes", default="20000,200000,1000000", help="W6 tracked-object counts")
    ap.add_argument("--w8-objects", type=int, default=1_000_000, help="W8 no-change tracked objects")
    ap.add_argument(
        "--w8-cold-objects", type=int, default=None, help="W8 cold objects (default = --w8-objects; 0 = skip)"
    )
    ap.add_argument("--size", type=int, default=64, help="bytes per object")
    ap.add_argument("--timeout", type=float, default=3600.0, help="seconds before a pass is killed")
    ap.add_argument("--work", type=Path, default=BENCH_DIR / ".work-scale")
    ap.add_argument("--keep", action="store_true", help="keep the generated data afterwards")
    ap.add_argument(
        "--reuse", action="store_true", help="reuse complete data sets in --work (implies --keep)"
    )
    ap.add_argument("--results-dir", type=Path, default=BENCH_DIR / "results")
    args = ap.parse_args(argv)
    args.workloads = [w.strip().upper() for w in args.workloads.split(",") if w.strip()]
    args.w6_sizes = sorted(int(x) for x in args.w6_sizes.split(",") if x.strip())
    if args.w8_cold_objects is None:
        args.w8_cold_objects = args.w8_objects
    bad = set(args.workloads) - {"W6", "W8"}
    if bad:
        ap.error(f"unknown workloads {sorted(bad)} (this harness runs W6 and W8)")
    return args


def run(args: argparse.Namespace) -> tuple[list[Result], dict[str, Any], list[str]]:
    """Run the chosen workloads; used by ``run.py`` too."""
    scale = Scale(args)
    try:
        if "W8" in args.workloads:
            scale.w8()
        if "W6" in args.workloads:
            scale.w6()
    finally:
        if not (args.keep or args.reuse):
            shutil.rmtree(args.work, ignore_errors=True)
    return scale.results, summarise(scale.results), scale.notes


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    spawner.spawner()  # before the data sets grow this process (see run.run_child)
    t0 = time.monotonic()
    results, summary, notes = run(args)
    md = render(results, summary)
    stamp = dt.datetime.now(dt.UTC).strftime("%Y%m%dT%H%M%SZ")
    record = {
        "timestamp": stamp,
        "elapsed_s": round(time.monotonic() - t0, 1),
        "command": " ".join(["scale.py", *(sys.argv[1:] if argv is None else argv)]),
        "summary": summary,
        "notes": notes,
    }
    args.results_dir.mkdir(parents=True, exist_ok=True)
    (args.results_dir / f"scale-{stamp}.json").write_text(json.dumps(record, indent=2, default=str))
    (args.results_dir / "scale-latest.json").write_text(json.dumps(record, indent=2, default=str))
    print(md)
    for note in notes:
        print(f"- {note}")
    return 0 if all(r.valid for r in results) else 1


if __name__ == "__main__":
    sys.exit(main())
