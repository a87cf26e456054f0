"""Change hooks: tell a command and/or a URL about every change once it is durable in the mirror.

Two halves around the durable :class:`~s3sync.state.outbox.Outbox`:

- **record** (:meth:`Hooks.record`, the engine's ``on_applied``): after the
  apply rules wrote or removed a file, its change goes to the outbox before it
  is reported applied. A journaled change's document rides the state store's
  next batch, in the transaction that settles its journal row; a change replayed
  from the journal after a crash is recorded even when the replay finds the
  file already written ("unchanged"): the crash may have come before that
  commit. A change no journal holds got a provisional row first
  (:meth:`Hooks.before`, ``on_applying``), made final here; one a crash left is
  reported at the next start as the mirror holds its key (:meth:`Hooks.resolve`).
  Duplicates are allowed, losses not.
- **deliver** (:meth:`Hooks._deliver_loop`, its own task): batches of up to
  ``max_batch`` changes, gathered for ``batch_ms``, in outbox order (so the
  changes of one key arrive in the order they were applied), one call per
  batch to each target; a batch leaves the outbox only once every target
  acknowledged it (the command exits 0, the URL answers 2xx). A failure is
  retried with a growing, jittered pause; the sync never waits for a hook, and
  the backlog is bounded only by the disk.

With ``[hooks] secret_file`` the POST is signed exactly like the Lambda
forwarder's requests (``X-S3Sync-Timestamp``, ``X-S3Sync-Signature:
sha256=<hex HMAC-SHA256 over "<timestamp>." + body>``), so a receiver can
verify it the way the daemon verifies the forwarder.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import hmac
import json
import os
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import aiohttp
import structlog

from s3sync.config.sections import HooksSettings
from s3sync.errors import ConfigError, S3SyncError
from s3sync.retry import Backoff
from s3sync.state.outbox import PROVISIONAL, Outbox
from s3sync.stats import SyncStats
from s3sync.sync.engine import Engine
from s3sync.sync.queue import Work
from s3sync.sync.report import OpResult
from s3sync.watermarks import iso

log = structlog.get_logger(__name__)


#: How often delivery looks for recorded changes still riding the state store's next batch
#: (committed within its FLUSH_SECONDS).
RIDE_POLL_SECONDS = 0.05


def sign(secret: bytes, timestamp: int, body: bytes) -> str:
    """The ``X-S3Sync-Signature`` value, as ``lambda_forwarder.handler.sign`` makes it."""
    return "sha256=" + hmac.new(secret, str(timestamp).encode() + b"." + body, hashlib.sha256).hexdigest()


@contextlib.contextmanager
def _document(body: bytes) -> Iterator[int]:
    """The batch document as an open file for the command's stdin — a file, not a pipe.

    A command need not read its input (``true``, a script that only pokes a
    service): through a pipe, writing the document fails once such a command
    has exited (EPIPE; under uvloop a closed-transport error), and that call
    failed forever — every retry the same. A file is read at the command's
    leisure, or not at all, and needs no writer while the command runs. An
    anonymous memory file where the OS has them, else an unlinked temp file.
    """
    if sys.platform == "linux":
        fd = os.memfd_create("s3sync-hook", os.MFD_CLOEXEC)
    else:  # pragma: no cover - Linux is where the daemon runs
        fd, name = tempfile.mkstemp(prefix="s3sync-hook-")
        os.unlink(name)
    try:
        view = memoryview(body)
        while view:
            view = view[os.write(fd, view) :]
        os.lseek(fd, 0, os.SEEK_SET)
        yield fd
    finally:
        os.close(fd)


class _Call:
    """One command call shared by the loop and the hooks' thread: either side may see the
    cancellation first, and whichever does kills the process (never a missed kill)."""

    def __init__(self) -> None:
        self.proc: subprocess.Popen[bytes] | None = None
        self.cancelled = False

    def cancel(self) -> None:
        self.cancelled = True
        self.kill()

    def kill(self) -> None:
        if self.proc is not None:
            with contextlib.suppress(OSError):
                self.proc.kill()


def _run(command: Sequence[str], body: bytes, call: _Call) -> tuple[int | None, bytes]:
    """Run ``command`` with the document on stdin: (exit status, stderr), or (None, why)."""
    try:
        with _document(body) as stdin:  # the child holds its own copy once started
            call.proc = subprocess.Popen(  # the operator's argv, no shell
                command, stdin=stdin, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE
            )
    except OSError as exc:  # not there, not executable: a failed call, retried like any other
        return None, f"cannot run {command[0]!r}: {exc.strerror or exc}".encode()
    if call.cancelled:
        call.kill()
    _, err = call.proc.communicate()
    return call.proc.returncode, err


class Hooks:
    """The outbox, the recording step and the delivery task; see the module docstring."""

    def __init__(self, cfg: HooksSettings, state_path: Path, stats: SyncStats) -> None:
        self.cfg = cfg
        self.stats = stats
        self.outbox = Outbox(state_path)
        self.engine: Engine | None = None
        self._replayed: set[int] = set()
        self._provisional: dict[str, int] = {}  # key → its provisional outbox row, while being applied
        self._secret: bytes | None = None
        self._wake = asyncio.Event()
        self._task: asyncio.Task[None] | None = None
        self._http: aiohttp.ClientSession | None = None
        self._runner = ThreadPoolExecutor(max_workers=1, thread_name_prefix="s3sync-hook")
        if self.cfg.secret_file is not None:
            try:
                self._secret = self.cfg.secret_file.read_text(encoding="utf-8").strip().encode()
            except (OSError, UnicodeError) as exc:
                raise ConfigError(
                    f"hooks.secret_file: cannot read {str(self.cfg.secret_file)!r}: {exc}"
                ) from exc
            if not self._secret:
                raise ConfigError(f"hooks.secret_file: {str(self.cfg.secret_file)!r} is empty")
        stats.health.hooks_enabled = True

    async def attach(self, engine: Engine) -> None:
        """Open the outbox, hook into ``engine`` (before it takes intake), start delivering."""
        await self.outbox.open(engine.state)
        resolved = await self.resolve(engine)
        if resolved:
            log.info(
                "changes a crash caught being applied are reported as the mirror holds them", count=resolved
            )
        self.stats.health.hook_pending = await self.outbox.count()
        self._replayed = await self.outbox.journal_ids()  # the rows the journal replay will apply
        self.engine = engine
        engine.on_applying = self.before
        engine.on_applied = self.record
        self._task = asyncio.create_task(self._deliver_loop(), name="hooks")
        if self.stats.health.hook_pending:
            log.info("re-delivering changes not acknowledged before", count=self.stats.health.hook_pending)

    async def close(self) -> None:
        if self._task is not None:
            self._task.cancel()
            await asyncio.gather(self._task, return_exceptions=True)
        if self._http is not None:
            await self._http.close()
        # a killed command's thread ends by itself; a grandchild holding its stderr must not hold us
        self._runner.shutdown(wait=False, cancel_futures=True)
        await self.outbox.close()

    # -- record ----------------------------------------------------------------
    async def before(self, work: Work) -> None:
        """The engine's ``on_applying``: a change no journal holds gets a provisional outbox row
        first, committed before the apply can write or remove anything (see :meth:`resolve`)."""
        if work.journal_ids:
            return  # the journal holds it: a crash replays it, and the replay records it
        change = work.change
        meta = change.meta
        doc = {
            "key": change.key,
            "etag": meta.etag if meta is not None else change.etag,  # what the listing said
            "size": meta.size if meta is not None else change.size,
            "source": change.source.value,
            PROVISIONAL: True,
        }
        (self._provisional[change.key],) = await self.outbox.add([doc])  # one writer per key

    async def record(self, work: Work, result: OpResult) -> None:
        """The engine's ``on_applied``: commit the change's document before it is reported."""
        provisional = self._provisional.pop(work.change.key, None)
        doc = await self._document(work, result)
        if doc is None:
            if provisional is not None:
                await self.outbox.settle(provisional, None)  # nothing happened: nothing to tell
            return
        try:
            if provisional is not None:
                await self.outbox.settle(provisional, doc)
            elif work.journal_ids:
                # committed with the store's next batch, in the transaction that removes its
                # journal row: until then a crash replays the change, and the replay records it
                self.outbox.ride([doc])
            else:
                await self.outbox.add([doc])
        except Exception:
            # not recorded: the journaled change is retried, and its "unchanged" outcome is owed
            # (a provisional row stays, and is resolved at the next start)
            self._replayed.update(work.journal_ids)
            raise
        self._replayed.difference_update(work.journal_ids)  # owed no more
        self.stats.health.hook_pending += 1
        self._wake.set()

    async def _document(self, work: Work, result: OpResult) -> dict[str, Any] | None:
        """What to tell about an applied change; None when there is nothing to tell."""
        op = {"download": "upsert", "delete": "remove"}.get(result.operation)
        if op is None or result.status not in ("success", "unchanged"):
            return None
        if result.status == "unchanged" and not self._replayed.intersection(work.journal_ids):
            return None  # nothing changed, and no crash can have hidden an earlier change
        assert self.engine is not None
        key, etag, size = result.key, None, None
        if result.status == "unchanged":  # a replayed change: report what the mirror holds now
            op = "upsert" if (await self.engine.held(key)).present else "remove"
        if op == "upsert":
            row = await self.engine.state.get(key)
            if row is not None:
                etag, size = row.etag, row.size
        return {
            "key": key,
            "path": "/".join(self.engine.mirror.mapper.parts(key)),
            "op": op,
            "etag": etag,
            "size": size,
            "source": work.change.source.value,
        }

    async def resolve(self, engine: Engine) -> int:
        """Settle the provisional rows a crash left: how many were reported.

        Such a change was being applied when the process died — before, during or
        after its rename or removal, nobody knows. So each is reported as what the
        mirror holds for its key now (present: an upsert, with the recorded ETag or,
        when the file has the listed size, the listed one; absent: a remove). A
        receiver may so hear of a change that had not happened yet (its key's
        current state, told once more), never miss one that had.
        """
        told = 0
        for row_id, doc in await self.outbox.provisional():
            key = doc["key"]
            try:
                path = "/".join(engine.mirror.mapper.parts(key))
                held = await engine.held(key)
            except S3SyncError:  # an unsafe key: never written, nothing to tell
                await self.outbox.settle(row_id, None)
                continue
            etag = held.etag if held.etag is not None or held.size != doc.get("size") else doc.get("etag")
            final = {
                "key": key,
                "path": path,
                "op": "upsert" if held.present else "remove",
                "etag": etag if held.present else None,
                "size": held.size if held.present else None,
                "source": doc.get("source"),
            }
            await self.outbox.settle(row_id, final)
            told += 1
        return told

    # -- deliver ---------------------------------------------------------------
    async def _deliver_loop(self) -> None:
        backoff = Backoff(base=0.5, cap=60.0)
        batch: list[tuple[int, str]] = []  # the head of the outbox (JSON text), kept until acknowledged
        done: set[str] = set()  # the targets that acknowledged ``batch``
        while True:
            try:
                if not batch:
                    batch, done = await self.outbox.peek(self.cfg.max_batch), set()
                    if not batch:
                        if self.stats.health.hook_pending:  # riding the store's next batch: look again soon
                            await asyncio.sleep(max(self.cfg.batch_ms / 1000, RIDE_POLL_SECONDS))
                            continue
                        self._wake.clear()
                        await self._wake.wait()
                        await asyncio.sleep(self.cfg.batch_ms / 1000)  # gather a batch
                        continue
                if not await self._call_all([doc for _, doc in batch], done):
                    await asyncio.sleep(backoff.next_delay())
                    continue
                await self.outbox.ack([i for i, _ in batch])
            except Exception as exc:  # the outbox itself failed (disk): keep the batch, try again later
                self.stats.health.hook_last_error = f"outbox: {exc}"
                log.error("change hook outbox failed; will retry", error=str(exc))
                await asyncio.sleep(backoff.next_delay())
                continue
            backoff.reset()
            self.stats.health.hook_pending = max(0, self.stats.health.hook_pending - len(batch))
            self.stats.health.hook_last_success_at = time.time()
            full, batch = len(batch) >= self.cfg.max_batch, []
            if not full:  # the next batch gathers too: one call per batch_ms under a steady stream
                await asyncio.sleep(self.cfg.batch_ms / 1000)

    async def _call_all(self, changes: list[str], done: set[str]) -> bool:
        """One batch (its changes as the outbox holds their JSON) to every target not yet done."""
        fresh = self.stats.freshness
        tail = json.dumps(
            {
                "events_applied_through": iso(fresh.applied_through()),
                "reconciled_through": iso(fresh.reconciled_through),
            },
            separators=(",", ":"),
        )
        body = ('{"changes":[' + ",".join(changes) + "]," + tail[1:]).encode()
        targets = [t for t in ("command", "url") if getattr(self.cfg, t) and t not in done]
        for target in targets:
            try:
                problem = await asyncio.wait_for(
                    self._run_command(body) if target == "command" else self._post(body),
                    self.cfg.timeout_seconds,
                )
            except TimeoutError:
                outcome, problem = "timeout", f"no answer within {self.cfg.timeout_seconds:g} s"
            else:
                outcome = "failed" if problem else "success"
            self.stats.hook_calls[outcome] += 1
            if problem:
                self.stats.health.hook_last_error = f"{target}: {problem}"
                log.warning(
                    "change hook failed; will retry", target=target, error=problem, changes=len(changes)
                )
                return False
            done.add(target)
        return True

    async def _run_command(self, body: bytes) -> str | None:
        """One call of the command: started and waited for on the hooks' own thread.

        Not ``asyncio.create_subprocess_exec``: under uvloop that is a plain
        ``fork()`` of the whole daemon, whose every page is then copy-on-write —
        measured 25,000 page faults and ~35 ms of CPU per call for a 100 MB
        process, five calls a second at 1,000 events/s. ``subprocess.Popen``
        uses ``vfork``: no page is copied or faulted. Its own single thread, so a
        command that runs for the whole ``timeout_seconds`` never holds one of
        the threads the sync's file work runs on. A cancelled call (timeout,
        shutdown) kills the command.
        """
        call = _Call()
        try:
            status, err = await asyncio.get_running_loop().run_in_executor(
                self._runner, _run, self.cfg.command, body, call
            )
        except BaseException:
            call.cancel()
            raise
        if status is None:
            return err.decode("utf-8", "replace")
        if status == 0:
            return None
        tail = err.decode("utf-8", "replace").strip().splitlines()[-1:] if err else []
        return f"exit status {status}" + (f": {tail[0][:200]}" if tail else "")

    async def _post(self, body: bytes) -> str | None:
        if self._http is None:
            self._http = aiohttp.ClientSession()
        headers = {"Content-Type": "application/json"}
        if self._secret is not None:
            ts = int(time.time())
            headers["X-S3Sync-Timestamp"] = str(ts)
            headers["X-S3Sync-Signature"] = sign(self._secret, ts, body)
        try:
            async with self._http.post(
                self.cfg.url, data=body, headers=headers, allow_redirects=False
            ) as resp:
                await resp.read()
                return None if 200 <= resp.status < 300 else f"HTTP {resp.status}"
        except aiohttp.ClientError as exc:
            return f"{type(exc).__name__}: {exc}"


__all__ = ["Hooks", "sign"]
