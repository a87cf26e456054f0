"""Change hooks: tell a command and/or a URL about every change once it is durable in the mirror.

Two halves around the durable :class:`~s3sync.state.outbox.Outbox`:

- **record** (:meth:`Hooks.record`, the engine's ``on_applied``): after the
  apply rules wrote or removed a file, its change is committed to the outbox
  *before* the engine reports it applied (journal row settled, waiters woken).
  A change replayed from the journal after a crash is recorded even when the
  replay finds the file already written ("unchanged"): the crash may have come
  between the rename and the outbox commit. Duplicates are allowed, losses not.
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
import time
from typing import Any

import aiohttp
import structlog

from s3sync.config import Settings
from s3sync.errors import ConfigError
from s3sync.retry import Backoff
from s3sync.state.outbox import Outbox
from s3sync.stats import SyncStats
from s3sync.sync.engine import Engine
from s3sync.sync.queue import Work
from s3sync.sync.report import OpResult
from s3sync.watermarks import iso

log = structlog.get_logger(__name__)


def sign(secret: bytes, timestamp: int, body: bytes) -> str:
    """The ``X-S3Sync-Signature`` value, as ``lambda_forwarder.handler.sign`` makes it."""
    return "sha256=" + hmac.new(secret, str(timestamp).encode() + b"." + body, hashlib.sha256).hexdigest()


class Hooks:
    """The outbox, the recording step and the delivery task; see the module docstring."""

    def __init__(self, settings: Settings, stats: SyncStats) -> None:
        self.cfg = settings.hooks
        self.stats = stats
        self.outbox = Outbox(settings.sync.resolved_state_path)
        self.engine: Engine | None = None
        self._replayed: set[int] = set()
        self._secret: bytes | None = None
        self._wake = asyncio.Event()
        self._task: asyncio.Task[None] | None = None
        self._http: aiohttp.ClientSession | None = None
        if self.cfg.secret_file is not None:
            try:
                self._secret = self.cfg.secret_file.read_text(encoding="utf-8").strip().encode()
            except (OSError, UnicodeError) as exc:
                raise ConfigError(
                    f"hooks.secret_file: cannot read {str(self.cfg.secret_file)!r}: {exc}"
                ) from exc
            if not self._secret:
                raise ConfigError(f"hooks.secret_file: {str(self.cfg.secret_file)!r} is empty")
        stats.hooks_enabled = True

    async def attach(self, engine: Engine) -> None:
        """Open the outbox, hook into ``engine`` (before it takes intake), start delivering."""
        self.stats.hook_pending = await self.outbox.open()
        self._replayed = await self.outbox.journal_ids()  # the rows the journal replay will apply
        self.engine = engine
        engine.on_applied = self.record
        self._task = asyncio.create_task(self._deliver_loop(), name="hooks")
        if self.stats.hook_pending:
            log.info("re-delivering changes not acknowledged before", count=self.stats.hook_pending)

    async def close(self) -> None:
        if self._task is not None:
            self._task.cancel()
            await asyncio.gather(self._task, return_exceptions=True)
        if self._http is not None:
            await self._http.close()
        await self.outbox.close()

    # -- record ----------------------------------------------------------------
    async def record(self, work: Work, result: OpResult) -> None:
        op = {"download": "upsert", "delete": "remove"}.get(result.operation)
        if op is None or result.status not in ("success", "unchanged"):
            return
        if result.status == "unchanged" and not self._replayed.intersection(work.journal_ids):
            return  # nothing changed, and no crash can have hidden an earlier change
        assert self.engine is not None
        key, etag, size = result.key, None, None
        if result.status == "unchanged":  # a replayed change: report what the mirror holds now
            op = "upsert" if (await self.engine.held(key)).present else "remove"
        if op == "upsert":
            row = await self.engine.state.get(key)
            if row is not None:
                etag, size = row.etag, row.size
        doc = {
            "key": key,
            "path": "/".join(self.engine.mirror.mapper.parts(key)),
            "op": op,
            "etag": etag,
            "size": size,
            "source": work.change.source.value,
        }
        try:
            await self.outbox.add([doc])
        except Exception:
            # not recorded: the journaled change is retried, and its "unchanged" outcome is owed
            self._replayed.update(work.journal_ids)
            raise
        self._replayed.difference_update(work.journal_ids)  # owed no more
        self.stats.hook_pending += 1
        self._wake.set()

    # -- deliver ---------------------------------------------------------------
    async def _deliver_loop(self) -> None:
        backoff = Backoff(base=0.5, cap=60.0)
        batch: list[tuple[int, dict[str, Any]]] = []  # the head of the outbox, kept until acknowledged
        done: set[str] = set()  # the targets that acknowledged ``batch``
        while True:
            try:
                if not batch:
                    batch, done = await self.outbox.peek(self.cfg.max_batch), set()
                    if not batch:
                        self._wake.clear()
                        await self._wake.wait()
                        await asyncio.sleep(self.cfg.batch_ms / 1000)  # gather a batch
                        continue
                if not await self._call_all([doc for _, doc in batch], done):
                    await asyncio.sleep(backoff.next_delay())
                    continue
                await self.outbox.ack([i for i, _ in batch])
            except Exception as exc:  # the outbox itself failed (disk): keep the batch, try again later
                self.stats.hook_last_error = f"outbox: {exc}"
                log.error("change hook outbox failed; will retry", error=str(exc))
                await asyncio.sleep(backoff.next_delay())
                continue
            backoff.reset()
            self.stats.hook_pending = max(0, self.stats.hook_pending - len(batch))
            self.stats.hook_last_success_at = time.time()
            batch = []

    async def _call_all(self, changes: list[dict[str, Any]], done: set[str]) -> bool:
        fresh = self.stats.freshness
        body = json.dumps(
            {
                "changes": changes,
                "events_applied_through": iso(fresh.applied_through()),
                "reconciled_through": iso(fresh.reconciled_through),
            },
            separators=(",", ":"),
        ).encode()
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
                self.stats.hook_last_error = f"{target}: {problem}"
                log.warning(
                    "change hook failed; will retry", target=target, error=problem, changes=len(changes)
                )
                return False
            done.add(target)
        return True

    async def _run_command(self, body: bytes) -> str | None:
        try:
            proc = await asyncio.create_subprocess_exec(
                *self.cfg.command,
                stdin=asyncio.subprocess.PIPE,
                stdout=asyncio.subprocess.DEVNULL,
                stderr=asyncio.subprocess.PIPE,
            )
        except OSError as exc:  # not there, not executable: a failed call, retried like any other
            return f"cannot run {self.cfg.command[0]!r}: {exc.strerror or exc}"
        try:
            _, err = await proc.communicate(body)
        except BaseException:
            with contextlib.suppress(ProcessLookupError):
                proc.kill()
            await proc.wait()
            raise
        if proc.returncode == 0:
            return None
        tail = err.decode("utf-8", "replace").strip().splitlines()[-1:] if err else []
        return f"exit status {proc.returncode}" + (f": {tail[0][:200]}" if tail else "")

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
