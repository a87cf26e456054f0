"""SQS consumer: long-poll a queue of S3 notifications and hand them to the engine.

The one promise that matters (docs/design.md, decision 3): a message is deleted only
after the changes it carries are durably journaled by :meth:`Engine.intake`.
A crash anywhere before ``DeleteMessageBatch`` means SQS redelivers the message
after its visibility timeout; the duplicate is harmless because events are
hints. Everything else follows from SQS semantics:

* **Long polling** (``WaitTimeSeconds``) in batches of up to 10, so an idle
  daemon makes one cheap request per ``wait_time_seconds``.
* **Slow batches** keep their messages invisible: a heartbeat calls
  ``ChangeMessageVisibilityBatch`` at half the visibility timeout until the
  batch is journaled, so another consumer of the same queue does not get them.
* **Poison messages** (bodies we cannot parse) are logged, counted and *not*
  deleted: they come back until the queue's redrive policy moves them to its
  dead-letter queue, which is where an operator can look at them. Deleting
  them would silently lose whatever they meant.
* **Unavailable SQS** (connection refused, 5xx, throttling, bad credentials)
  is retried with exponential backoff and full jitter, forever: the HTTP
  endpoint and the periodic reconcile keep working meanwhile.
* **Backpressure**: while the journal holds ``journal_high_water`` unapplied
  changes we stop receiving; the messages wait in SQS, which is built for it.
* **Errors are classified at the client**: every SQS call runs inside
  :func:`~s3sync.s3.errors.map_errors` (botocore's errors have one shape for every
  AWS service), so the loop sees the error tree; its catch-alls, which also cover
  the journal's disk, name what is left with :func:`~s3sync.local.errors.classify_local`.

Shapes: the body may be a raw S3 event (S3 → SQS, or SNS raw message
delivery), an SNS envelope (S3 → SNS → SQS, the fan-out topology), an
EventBridge event or an ``s3:TestEvent``; :func:`parse_body` handles all.
"""

from __future__ import annotations

import asyncio
import contextlib
import random
import time
from collections.abc import Awaitable, Callable
from typing import Any

import structlog

from s3sync.config import Settings
from s3sync.local.errors import classify_local
from s3sync.model import Change, ChangeSource
from s3sync.retry import Backoff
from s3sync.s3.errors import map_errors
from s3sync.sources.events import EventParseError, parse_body
from s3sync.stats import SyncStats
from s3sync.sync.engine import Engine
from s3sync.watermarks import held

__all__ = ["SqsConsumer"]

log = structlog.get_logger(__name__)

#: First and largest pause between attempts while SQS is unreachable.
BACKOFF_INITIAL = 0.5
BACKOFF_MAX = 30.0
#: How long a message for other shards stays hidden when handed back to a shared queue.
RELEASE_DELAY_SECONDS = 1
#: How often to look again while the journal is above its high-water mark.
BACKPRESSURE_POLL = 0.25

ConfirmFn = Callable[[str], Awaitable[None]]


class _MappedClient:
    """The SQS client at its boundary: each call raises a classified :class:`S3SyncError`."""

    __slots__ = ("_client",)

    def __init__(self, client: Any) -> None:
        self._client = client

    def __getattr__(self, name: str) -> Callable[..., Awaitable[Any]]:
        method = getattr(self._client, name)

        async def call(**kwargs: Any) -> Any:
            with map_errors():
                return await method(**kwargs)

        return call


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
        self._confirm = confirm
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
                    await self._receive_loop(_MappedClient(client))
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

    async def _receive_loop(self, client: Any) -> None:
        sqs = self.settings.sqs
        while not self._stopping.is_set():
            if not await self._wait_for_room():
                return
            receive = asyncio.ensure_future(
                client.receive_message(
                    QueueUrl=self.queue_url,
                    MaxNumberOfMessages=sqs.max_messages,
                    WaitTimeSeconds=sqs.wait_time_seconds,
                    VisibilityTimeout=sqs.visibility_timeout_seconds,
                    AttributeNames=["ApproximateReceiveCount"],
                )
            )
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
            response = receive.result()  # raises → reconnect with backoff
            if not self.connected:
                log.info("SQS connected", queue_url=self.queue_url)
            self.connected, self.last_error = True, None
            self._backoff.reset()
            messages = response.get("Messages") or []
            if messages:
                await held(self.stats.freshness, self._handle(client, messages))  # not yet journaled

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

    async def _handle(self, client: Any, messages: list[dict[str, Any]]) -> None:
        """Parse, journal, then delete; see the module docstring for why in this order."""
        received = time.time()
        self.stats.sqs_messages["received"] += len(messages)
        changes: list[Change] = []
        done: list[dict[str, Any]] = []
        ignored = 0
        for msg in messages:
            try:
                parsed = parse_body(
                    msg.get("Body", ""), ChangeSource.SQS, received, bucket=self.settings.s3.bucket
                )
            except EventParseError as exc:
                self.stats.sqs_messages["poison"] += 1
                self.stats.events["sqs", "rejected"] += 1
                log.error(
                    "unparseable SQS message left for the redrive policy",
                    message_id=msg.get("MessageId"),
                    receive_count=(msg.get("Attributes") or {}).get("ApproximateReceiveCount"),
                    error=str(exc),
                )
                continue
            if self._foreign(parsed.changes):
                # a shared queue: another shard's message goes back for its owner at once
                await self._release(client, msg)
                self.stats.other_shard += len(parsed.changes)
                continue
            changes.extend(parsed.changes)
            ignored += parsed.ignored
            self.stats.test_events += parsed.test_events
            if parsed.subscribe_url and self._confirm is not None:
                await self._confirm(parsed.subscribe_url)
            if parsed.untrusted_subscribe_url:
                log.warning("refused SNS SubscribeURL on an untrusted host", message_id=msg.get("MessageId"))
            done.append(msg)
        if not done:
            return
        heartbeat = asyncio.create_task(self._keep_invisible(client, done), name="sqs-heartbeat")
        try:
            accepted = await self.engine.intake(changes)
        finally:
            heartbeat.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await heartbeat
        self.stats.events["sqs", "accepted"] += accepted
        self.stats.events["sqs", "ignored"] += ignored
        await self._delete(client, done)

    async def _keep_invisible(self, client: Any, messages: list[dict[str, Any]]) -> None:
        """Extend the visibility timeout every half timeout while the batch is still being journaled."""
        vt = self.settings.sqs.visibility_timeout_seconds
        while True:
            await asyncio.sleep(vt / 2)
            entries = [
                {"Id": str(i), "ReceiptHandle": m["ReceiptHandle"], "VisibilityTimeout": vt}
                for i, m in enumerate(messages)
            ]
            try:
                resp = await client.change_message_visibility_batch(QueueUrl=self.queue_url, Entries=entries)
                self.stats.sqs_messages["extended"] += len(resp.get("Successful") or [])
                log.info("extended SQS visibility for a slow batch", messages=len(messages), seconds=vt)
            except asyncio.CancelledError:
                raise
            except Exception as exc:  # the worst case is a redelivery, i.e. a duplicate hint
                log.warning("could not extend SQS visibility", error=str(classify_local(exc)))

    def _foreign(self, changes: list[Change]) -> bool:
        """On a shared queue (``[sqs] shared_queue``), a message only for other shards' keys."""
        shard = self.engine.shard
        return (
            self.settings.sqs.shared_queue
            and not shard.everything
            and bool(changes)
            and not any(shard.owns(c.key) for c in changes)
        )

    async def _release(self, client: Any, msg: dict[str, Any]) -> None:
        """Make a message visible again soon (not deleted): another host's consumer takes it.

        Not at once (visibility 0): this consumer would receive it again at once and spin
        while the owner is down; ``RELEASE_DELAY_SECONDS`` bounds that to one bounce a second.
        """
        self.stats.sqs_messages["released_other_shard"] += 1
        try:
            await client.change_message_visibility(
                QueueUrl=self.queue_url,
                ReceiptHandle=msg["ReceiptHandle"],
                VisibilityTimeout=RELEASE_DELAY_SECONDS,
            )
        except asyncio.CancelledError:
            raise
        except Exception as exc:  # it reappears after the visibility timeout anyway
            log.warning("could not release another shard's SQS message", error=str(classify_local(exc)))

    async def _delete(self, client: Any, messages: list[dict[str, Any]]) -> None:
        entries = [{"Id": str(i), "ReceiptHandle": m["ReceiptHandle"]} for i, m in enumerate(messages)]
        try:
            resp = await client.delete_message_batch(QueueUrl=self.queue_url, Entries=entries)
        except asyncio.CancelledError:
            raise
        except Exception as exc:
            # Already journaled: a redelivery is only a duplicate. Not worth a reconnect.
            self.stats.sqs_messages["delete_failed"] += len(entries)
            log.warning("SQS delete failed; the messages will be redelivered", error=str(classify_local(exc)))
            return
        self.stats.sqs_messages["deleted"] += len(resp.get("Successful") or [])
        failed = resp.get("Failed") or []
        if failed:
            self.stats.sqs_messages["delete_failed"] += len(failed)
            log.warning(
                "some SQS deletes failed; those messages will be redelivered",
                failed=[f.get("Code") for f in failed],
            )

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
