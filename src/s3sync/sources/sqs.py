"""SQS consumer: long-poll a queue of S3 notifications and hand each batch on.

The one promise that matters (docs/design.md, decision 3): a message is deleted only
after the changes it carries are durably journaled by :meth:`Engine.intake`. The
consumer is three pieces, data flowing one way:

* this module, :class:`SqsConsumer`: *when* to receive. The lifecycle (start, stop with
  a grace), the connection, the long poll and backpressure;
* :mod:`s3sync.sources.sqs_batch`: *what* a received batch means. Each message decoded
  (poison left for the redrive policy, another shard's handed back), the changes
  journaled, only then the messages deleted;
* :mod:`s3sync.sources.sqs_queue`: the calls on the queue (receive, the visibility
  heartbeat of a slow batch, release, delete), each classified at the client.

What the loop itself follows from SQS semantics:

* **Long polling** (``WaitTimeSeconds``) in batches of up to 10, so an idle
  daemon makes one cheap request per ``wait_time_seconds``. Stopping in the middle
  of a poll cancels it: what SQS hands out then reappears after its visibility timeout.
* **Unavailable SQS** (connection refused, 5xx, throttling, bad credentials)
  is retried with exponential backoff and full jitter, forever: the HTTP
  endpoint and the periodic reconcile keep working meanwhile. The catch-all, which
  also covers the journal's disk, names what is left with
  :func:`~s3sync.local.errors.classify_local`.
* **Backpressure**: while the journal holds ``journal_high_water`` unapplied
  changes we stop receiving; the messages wait in SQS, which is built for it.

Shapes: the body may be a raw S3 event (S3 → SQS, or SNS raw message
delivery), an SNS envelope (S3 → SNS → SQS, the fan-out topology), an
EventBridge event or an ``s3:TestEvent``; :func:`~s3sync.sources.events.parse_body`
handles all.
"""

from __future__ import annotations

import asyncio
import contextlib
import random

import structlog

from s3sync.config import Settings
from s3sync.local.errors import classify_local
from s3sync.retry import Backoff
from s3sync.sources.sqs_batch import ConfirmFn, SqsBatch
from s3sync.sources.sqs_queue import SqsQueue
from s3sync.stats import SyncStats
from s3sync.sync.engine import Engine
from s3sync.watermarks import held

__all__ = ["SqsConsumer"]

log = structlog.get_logger(__name__)

#: First and largest pause between attempts while SQS is unreachable.
BACKOFF_INITIAL = 0.5
BACKOFF_MAX = 30.0
#: How often to look again while the journal is above its high-water mark.
BACKPRESSURE_POLL = 0.25


class SqsConsumer:
    """Owns one receive loop against ``settings.sqs.queue_url`` (start, run, stop)."""

    def __init__(
        self,
        settings: Settings,
        engine: Engine,
        stats: SyncStats,
        *,
        confirm: ConfirmFn | None = None,
        rng: random.Random | None = None,
    ) -> None:
        self.settings = settings
        self.engine = engine
        self.stats = stats
        self.queue_url = settings.sqs.queue_url
        self._batch = SqsBatch(settings, engine, stats, confirm=confirm)
        self._rng = rng or random.Random()
        self._stopping = asyncio.Event()
        self._task: asyncio.Task[None] | None = None
        self._backoff = Backoff(BACKOFF_INITIAL, BACKOFF_MAX, self._rng.random)
        #: True once a receive succeeded since the last failure (exposed for health/tests).
        self.connected = False
        self.last_error: str | None = None

    # -- lifecycle ---------------------------------------------------------
    async def start(self) -> None:
        if self._task is None:
            self._stopping.clear()
            self._task = asyncio.create_task(self._run(), name="sqs-consumer")
            log.info("SQS consumer started", queue_url=self.queue_url)

    async def stop(self, grace: float = 10.0) -> None:
        """Stop receiving; a batch being journaled finishes first (bounded by ``grace`` seconds)."""
        self._stopping.set()
        task, self._task = self._task, None
        if task is None:
            return
        done, _ = await asyncio.wait({task}, timeout=grace)
        if not done:
            task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task
        log.info("SQS consumer stopped")

    @property
    def running(self) -> bool:
        return self._task is not None and not self._task.done()

    # -- the loop ----------------------------------------------------------
    async def _run(self) -> None:
        import aioboto3
        from aiobotocore.config import AioConfig

        sqs = self.settings.sqs
        session = aioboto3.Session()
        config = AioConfig(
            connect_timeout=self.settings.s3.connect_timeout_seconds,
            # A long poll legitimately takes wait_time_seconds; leave room for it.
            read_timeout=sqs.wait_time_seconds + 15,
            # Our own loop does the backoff (forever, with jitter); botocore need
            # not hide an outage behind its own retries.
            retries={"max_attempts": 2, "mode": "standard"},
        )
        while not self._stopping.is_set():
            try:
                async with session.client(
                    "sqs",
                    endpoint_url=sqs.endpoint_url,
                    region_name=sqs.region or self.settings.s3.region,
                    config=config,
                ) as client:
                    await self._receive_loop(SqsQueue(client, self.queue_url, sqs, self.stats))
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                err = classify_local(exc)
                self.connected = False
                self.last_error = str(err)
                self.stats.sqs_messages["receive_errors"] += 1
                delay = self._next_delay()
                log.warning(
                    "SQS unavailable; retrying", error=str(err), error_code=err.code, retry_in=round(delay, 3)
                )
                await self._sleep(delay)

    async def _receive_loop(self, queue: SqsQueue) -> None:
        """Long-poll until stopping; each batch is handled (journaled, deleted) before the next poll."""
        while not self._stopping.is_set():
            if not await self._wait_for_room():
                return
            receive = asyncio.ensure_future(queue.receive())
            stop = asyncio.ensure_future(self._stopping.wait())
            try:
                await asyncio.wait({receive, stop}, return_when=asyncio.FIRST_COMPLETED)
            finally:
                stop.cancel()
            if not receive.done():
                # Stopping in the middle of a long poll: anything SQS hands out now
                # simply becomes visible again after the visibility timeout.
                receive.cancel()
                with contextlib.suppress(asyncio.CancelledError, Exception):
                    await receive
                return
            messages = receive.result()  # raises → reconnect with backoff
            if not self.connected:
                log.info("SQS connected", queue_url=self.queue_url)
            self.connected, self.last_error = True, None
            self._backoff.reset()
            if messages:
                await held(self.stats.freshness, self._batch.handle(queue, messages))  # not yet journaled

    async def _wait_for_room(self) -> bool:
        """Backpressure: do not receive while the journal is over its high-water mark."""
        high = self.settings.sync.journal_high_water
        paused = False
        while self.stats.journal_pending >= high or not self.engine.accepting:
            if not paused:
                paused = True
                self.stats.sqs_messages["paused"] += 1
                log.info("SQS receive paused", journal_pending=self.stats.journal_pending, high_water=high)
            if await self._sleep(BACKPRESSURE_POLL):
                return False
        return not self._stopping.is_set()

    # -- helpers -----------------------------------------------------------
    def _next_delay(self) -> float:
        """The shared full-jitter backoff (:mod:`s3sync.retry`), growing until a receive succeeds."""
        return self._backoff.next_delay()

    async def _sleep(self, seconds: float) -> bool:
        """Sleep unless asked to stop; True when stopping."""
        try:
            await asyncio.wait_for(self._stopping.wait(), seconds)
        except TimeoutError:
            return False
        return True
