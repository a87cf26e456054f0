"""Model-based test of the sync core: random interleavings against the real engine, one oracle.

A Hypothesis state machine drives the real :class:`~s3sync.sync.engine.Engine`
(real moto server behind the fault proxy, real mirror directory, real SQLite
state, either GET path)
through random interleavings of:

- S3 mutations: puts and overwrites (sizes from 0 to 70 kB), multipart uploads
  with *unequal* parts (5 MiB + 8, 5 MiB, 16 bytes: the layout "3 parts of
  part 1's size" also fits, so a guessed layout gives a false ETag mismatch),
  deletes; each produces the S3 event record S3 would send, with a sequencer;
- notifications delivered late, out of order, twice, or never (each through the
  product's own event parser, then ``Engine.intake``: journaled, as an HTTP 202);
- reconcile passes running *while* events arrive (a listed upsert meets a
  pending remove in the queue: defect 3), cancelled by restarts; S3 slow to
  answer GETs and HEADs, listings taken at once but delivered late (the proxy's
  latency and throttle), so transfers overlap and changes queue up;
- local faults: the keys ``a`` and ``a/b`` cannot both be files, so a rename
  fails on a key conflict whichever comes second;
- restarts of the engine, draining for 0 to 2 seconds (in-flight work is then
  cancelled and replayed from the journal).

After the last step: no more events, quiescence (queue, workers, journal and
reconciles idle), one reconcile (``delete = false``), then the oracle of
docs/reliability.md's invariants (``support.model.check_mirror``): the mirror equals the
bucket byte for byte except counted skips; no journaled remove was lost; a
lingering file (its delete event lost) holds bytes its key once had; no temp
is left; no descriptor into the example's directory (nor an event loop's) is
left open, and no "Bad file descriptor" was ever recorded.

``S3SYNC_MODEL_EXAMPLES`` sets the number of examples (default 4, derandomized,
so the normal suite is repeatable; ``make chaos`` runs 200 random ones).
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import os
import shutil
import tempfile
import time
import uuid
from pathlib import Path
from typing import Any

import pytest
from faultproxy import FaultProxy
from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, precondition, rule, run_state_machine_as_test
from support.core import core
from support.eventkit import s3_event, s3_record
from support.model import FdAudit, KeyModel, MiB, check_mirror, upload_parts
from support.s3kit import AWS_ENV, temp_files, tree

from s3sync.model import Change, ChangeSource
from s3sync.sources.events import parse_payload

EXAMPLES = int(os.environ.get("S3SYNC_MODEL_EXAMPLES", "4"))
STEPS = int(os.environ.get("S3SYNC_MODEL_STEPS", "25"))
RANDOM = "S3SYNC_MODEL_EXAMPLES" in os.environ  # chaos: fresh random examples; else the same ones
KEYS = ["a", "a/b", "d/x y.txt", "ü+1.bin"]
SIZES = [0, 1, 700, 70_000]
LAYOUT = [5 * MiB + 8, 5 * MiB, 16]  # unequal parts that also fit "3 parts of part 1's size"
QUIET_WITHIN = 60.0


class CoreMachine(RuleBasedStateMachine):
    """One example: a fresh bucket and mirror, an engine, random steps, then the oracle."""

    s3: Any = None
    proxy: Any = None
    endpoint = ""
    base = Path(".")

    def __init__(self) -> None:
        super().__init__()
        self.loop = asyncio.new_event_loop()
        self.dir = Path(tempfile.mkdtemp(prefix="model-", dir=self.base))
        self.audit = FdAudit(self.dir)
        self.mirror = self.dir / "mirror"
        self.bucket = f"model-{uuid.uuid4().hex[:12]}"
        self.s3.create_bucket(Bucket=self.bucket)
        self.keys: dict[str, KeyModel] = {}
        self.events: dict[int, list[Change]] = {}  # id -> the changes its record parses to
        self.undelivered: list[int] = []
        self.ids = itertools.count(1)
        self.seq = itertools.count(0x0055AED6DCD90281E5)
        self.multipart = 0
        self.passes = 0
        self.background = False
        self.fast_get = True
        self.stack: contextlib.AsyncExitStack | None = None
        self.engine: Any = None
        self.reconciles: list[asyncio.Task[Any]] = []
        self.problems_seen: list[str] = []
        self.settings: Any = None

    # -- plumbing ------------------------------------------------------------
    def run(self, coro: Any) -> Any:
        return self.loop.run_until_complete(asyncio.wait_for(coro, QUIET_WITHIN))

    def _settings(self, fast_get: bool, workers: int) -> Any:
        from s3sync.config import load_settings

        return load_settings(
            overrides={
                "s3": {"bucket": self.bucket, "endpoint_url": self.endpoint, "fast_get": fast_get},
                "sync": {
                    "local_dir": str(self.mirror),
                    "periodic": False,
                    "fsync": False,
                    "delete": False,
                    "concurrency": workers,
                    "retry_attempts": 2,
                    "multipart_threshold_mb": 8,
                    "part_size_mb": 5,
                },
            },
            environ=dict(AWS_ENV),
        )

    async def _open(self, drain: float = 10) -> None:
        self.stack = contextlib.AsyncExitStack()
        self.engine = await self.stack.enter_async_context(core(self.settings, drain_timeout=drain))
        await self.engine.start()
        await self.engine.replay_journal()
        if self.background:
            self.reconciles.append(asyncio.ensure_future(self._passes()))

    async def _passes(self) -> None:
        while True:
            await self.engine.reconcile()
            await asyncio.sleep(0.01)

    async def _close(self) -> None:
        for t in self.reconciles:
            t.cancel()
        await asyncio.gather(*self.reconciles, return_exceptions=True)
        self.reconciles.clear()
        if self.engine is not None:
            self._note_problems()
        if self.stack is not None:
            await self.stack.aclose()
        self.stack = self.engine = None

    def _note_problems(self) -> None:
        stats = self.engine.stats
        self.problems_seen += [str(p) for p in stats.recent_problems] + [str(stats.last_error or "")]

    def _record(self, key: str, name: str, **kw: Any) -> int:
        eid = next(self.ids)
        rec = s3_record(self.bucket, name, key, sequencer=f"{next(self.seq):018X}", **kw)
        parsed = parse_payload(s3_event(rec), ChangeSource.NOTIFICATION, bucket=self.bucket)
        assert len(parsed.changes) == 1, parsed
        self.events[eid] = parsed.changes
        if name.startswith("ObjectRemoved"):
            self.keys[key].last_delete = eid
        return eid

    # -- steps ---------------------------------------------------------------
    @rule(
        fast_get=st.booleans(),
        workers=st.sampled_from([1, 1, 4]),
        get_latency=st.sampled_from([0.0, 0.05, 0.2, 0.2]),
        list_bps=st.sampled_from([0, 0, 4000]),
        passes=st.booleans(),
    )
    def start(self, fast_get: bool, workers: int, get_latency: float, list_bps: int, passes: bool) -> None:
        """Opens the engine (once): GET path, workers (1 lets changes queue up behind each other),
        how slow S3 answers GETs and HEADs, and whether a listing arrives late (taken, then
        trickled: a reconcile acts on a listing older than the events that arrive meanwhile),
        and whether passes run back to back in the background all along (each acts on a
        listing taken while the steps between go on)."""
        if self.engine is not None:
            return
        self.proxy.clear()
        if get_latency:
            self.proxy.add("latency", op="GET", seconds=get_latency)
            self.proxy.add("latency", op="HEAD", seconds=get_latency)
        if list_bps:
            self.proxy.add("throttle", op="LIST", bytes_per_second=list_bps)
        self.fast_get = fast_get
        self.settings = self._settings(fast_get, workers)
        self.background = passes
        self.run(self._open())

    @precondition(lambda self: self.engine is not None)
    @rule(
        key=st.sampled_from(KEYS),
        op=st.sampled_from(["put", "put", "put", "multipart", "delete", "delete"]),
        size=st.sampled_from(SIZES),
        salt=st.integers(0, 3),
        fate=st.sampled_from(["now", "now", "now", "twice", "later", "never"]),
    )
    def mutate(self, key: str, op: str, size: int, salt: int, fate: str) -> None:
        """Change S3 (a put, a multipart upload with unequal parts, or a delete of a live key),
        then its event: delivered now, twice, later (out of order, by ``deliver_late``) or never."""
        m = self.keys.setdefault(key, KeyModel())
        if op == "delete" and m.live is not None:
            self.s3.delete_object(Bucket=self.bucket, Key=key)
            m.live = None
            eid = self._record(key, "ObjectRemoved:Delete")
        else:
            if op == "multipart" and self.multipart < 2:
                self.multipart += 1
                body, etag = upload_parts(self.s3, self.bucket, key, LAYOUT, salt=str(salt))
                name = "ObjectCreated:CompleteMultipartUpload"
            else:
                body = (f"{key}:{salt}:".encode() * (size // 4 + 1))[:size]
                etag = self.s3.put_object(Bucket=self.bucket, Key=key, Body=body)["ETag"]
                name = "ObjectCreated:Put"
            m.live, m.last_delete = body, None
            m.versions.append(body)
            eid = self._record(key, name, size=len(body), etag=etag.strip('"'))
        if fate in ("now", "twice"):
            self._deliver(eid, 2 if fate == "twice" else 1)
        elif fate == "later":
            self.undelivered.append(eid)

    def _deliver(self, eid: int, copies: int) -> None:
        changes = self.events[eid]
        for _ in range(copies):
            assert self.run(self.engine.intake(list(changes))) == len(changes)
        self.keys[changes[0].key].delivered.add(eid)

    @precondition(lambda self: self.engine is not None and bool(self.undelivered))
    @rule(data=st.data(), copies=st.sampled_from([1, 1, 2]), keep=st.booleans())
    def deliver_late(self, data: st.DataObject, copies: int, keep: bool) -> None:
        """An event held back, any of them (out of order), once or twice; maybe again later."""
        eid = data.draw(st.sampled_from(self.undelivered))
        if not keep:
            self.undelivered.remove(eid)
        self._deliver(eid, copies)

    @precondition(lambda self: self.engine is not None and self.passes < 3)
    @rule(
        racing=st.booleans(),
        key=st.sampled_from(KEYS),
        op=st.sampled_from(["put", "delete", "delete"]),
        fate=st.sampled_from(["now", "now", "later", "never"]),
    )
    def reconcile(self, racing: bool, key: str, op: str, fate: str) -> None:
        """A pass in the background, acting on a snapshot: the step returns once S3 has been asked
        for the listing, so what comes next happens after that snapshot and before the pass's
        listed upserts are queued (they meet the events queued meanwhile). ``racing``: an S3
        change (and its event) lands right there, between the listing and the pass's action."""
        self.passes += 1  # preconditions must not depend on timing: count passes, not running ones
        asked = self.proxy.count("LIST")
        self.reconciles.append(self.loop.create_task(self.engine.reconcile()))
        end = time.monotonic() + 5
        while self.proxy.count("LIST") == asked and time.monotonic() < end:
            self.run(asyncio.sleep(0.001))
        time.sleep(0.02)  # the event loop is not running: moto answers, nobody reads it yet
        if racing:
            self.mutate(key=key, op=op, size=700, salt=3, fate=fate)

    @precondition(lambda self: self.engine is not None)
    @rule(seconds=st.sampled_from([0.0, 0.01, 0.05]))
    def settle(self, seconds: float) -> None:
        """Let the workers (and any pass) run a little."""
        self.run(asyncio.sleep(seconds))
        self.reconciles = [t for t in self.reconciles if not t.done()]

    @precondition(lambda self: self.engine is not None)
    @rule(drain=st.sampled_from([0.0, 0.05, 2.0]))
    def restart(self, drain: float) -> None:
        """Stop (cancelling passes, and work still in flight after ``drain`` seconds), start again."""
        self.run(self._restart(drain))

    async def _restart(self, drain: float) -> None:
        for t in self.reconciles:
            t.cancel()
        await asyncio.gather(*self.reconciles, return_exceptions=True)
        self.reconciles.clear()
        self._note_problems()
        assert self.engine is not None
        await self.engine.stop(drain_timeout=drain)
        await self._close()
        await self._open()

    # -- the oracle ----------------------------------------------------------
    async def _quiet(self) -> None:
        end = time.monotonic() + QUIET_WITHIN
        engine = self.engine
        while True:
            busy = [t for t in self.reconciles if not t.done()]
            q = engine.queue
            if not busy and q.depth == 0 and q.in_flight == 0 and not await engine.state.journal_pending():
                return
            if time.monotonic() > end:
                pending = [c.key for _, c in await engine.state.journal_pending()]
                stats = engine.stats
                raise AssertionError(
                    f"not quiescent after {QUIET_WITHIN}s: depth={q.depth} in_flight={q.in_flight} "
                    f"journal={pending} failed={dict(stats.failed)} last_error={stats.last_error}"
                )
            await asyncio.sleep(0.02)

    async def _finish(self) -> tuple[dict[str, bytes], set[str]]:
        for t in self.reconciles:  # the background passes, if any, end here
            t.cancel()
        await asyncio.gather(*self.reconciles, return_exceptions=True)
        self.reconciles.clear()
        await self._quiet()
        report = await self.engine.reconcile()
        assert report.aborted is None and report.failed == 0, report.as_json() | {"errors": report.errors}
        await self._quiet()
        skipped = {e["key"] for e in report.errors if e["error"] in ("key_conflict", "unsafe_key")}
        skipped |= self.engine.reconciler.told_unsafe  # reported by an earlier pass, counted silently now
        return tree(self.mirror), skipped

    def teardown(self) -> None:
        try:
            if self.engine is None:
                return
            got, skipped = self.run(self._finish())
            self.run(self._close())
            problems = check_mirror(got, self.keys, skipped, temp_files(self.mirror))
            problems += [f"descriptor left open: {fd}" for fd in self.audit.leaks()]
            problems += [p for p in self.problems_seen if "Bad file descriptor" in p or "EBADF" in p]
            assert not problems, f"path={'lean' if self.fast_get else 'boto'}: " + "; ".join(problems)
        finally:
            with contextlib.suppress(Exception):
                self.run(self._close())
            self.loop.close()
            shutil.rmtree(self.dir, ignore_errors=True)


@pytest.mark.timeout(120 + EXAMPLES * 8)  # one pytest test for all the examples
def test_model(s3: Any, proxy: FaultProxy, tmp_path: Path) -> None:
    """Every example's oracle holds (``S3SYNC_MODEL_EXAMPLES`` of them)."""
    CoreMachine.s3, CoreMachine.proxy, CoreMachine.endpoint = s3, proxy, proxy.url
    CoreMachine.base = tmp_path
    run_state_machine_as_test(
        CoreMachine,
        settings=settings(
            max_examples=EXAMPLES,
            stateful_step_count=STEPS,
            deadline=None,
            database=None,
            derandomize=not RANDOM,
            print_blob=True,
            suppress_health_check=list(HealthCheck),
        ),
    )


pytestmark = pytest.mark.filterwarnings("ignore::pytest.PytestUnraisableExceptionWarning")


def _play(machine: CoreMachine, steps: list[tuple[str, dict[str, Any]]]) -> None:
    """Run named steps of the machine in order, then its teardown (the oracle)."""
    try:
        for name, kw in steps:
            if name == "until_mirrored":
                end = time.monotonic() + 20
                while not (machine.mirror / kw["key"]).exists():
                    assert time.monotonic() < end, f"{kw['key']} never mirrored"
                    machine.settle(0.05)
                continue
            getattr(machine, name)(**kw)
    finally:
        machine.teardown()


#: Interleavings the random search reaches rarely, replayed step by step through the same machine.
SCENARIOS: dict[str, list[tuple[str, dict[str, Any]]]] = {
    # defect 3: an event's remove waits in the queue (the one worker is on a slow GET) when a
    # pass's listed upsert for the key arrives, from a listing taken before the delete
    "remove_meets_a_stale_listed_upsert": [
        ("start", {"workers": 1, "get_latency": 0.2, "list_bps": 0, "passes": False}),
        ("mutate", {"key": "a/b", "op": "put", "size": 700, "salt": 0, "fate": "now"}),
        ("until_mirrored", {"key": "a/b"}),
        ("mutate", {"key": "a/b", "op": "put", "size": 70_000, "salt": 1, "fate": "never"}),
        ("mutate", {"key": "d/x y.txt", "op": "put", "size": 700, "salt": 0, "fate": "now"}),
        ("reconcile", {"racing": True, "key": "a/b", "op": "delete", "fate": "now"}),
        ("settle", {"seconds": 0.05}),
    ],
    # defect 4: parts of 5 MiB + 8, 5 MiB and 16 bytes, by an event and then by a pass
    "unequal_parts": [
        ("start", {"workers": 4, "get_latency": 0.0, "list_bps": 0, "passes": False}),
        ("mutate", {"key": "ü+1.bin", "op": "multipart", "size": 0, "salt": 0, "fate": "now"}),
        ("mutate", {"key": "a", "op": "multipart", "size": 0, "salt": 1, "fate": "never"}),
        ("reconcile", {"racing": False, "key": "a", "op": "put", "fate": "now"}),
    ],
}


@pytest.mark.parametrize("fast_get", [True, False], ids=["lean", "boto"])
@pytest.mark.parametrize("scenario", sorted(SCENARIOS))
def test_model_scenario(scenario: str, fast_get: bool, s3: Any, proxy: FaultProxy, tmp_path: Path) -> None:
    """The oracle holds for each named interleaving, on both GET paths."""
    CoreMachine.s3, CoreMachine.proxy, CoreMachine.endpoint = s3, proxy, proxy.url
    CoreMachine.base = tmp_path
    steps = [(n, kw | {"fast_get": fast_get} if n == "start" else kw) for n, kw in SCENARIOS[scenario]]
    _play(CoreMachine(), steps)
