"""One SQS queue at its boundary: every call the consumer makes on it, with its counters.

Split from the consumer (:mod:`s3sync.sources.sqs`) so the loop that decides *when* to
call SQS and the batch that decides *what* a message means (:mod:`s3sync.sources.sqs_batch`)
never build a request or read a response. Every call runs inside
:func:`~s3sync.s3.errors.map_errors` (botocore's errors have one shape for every AWS
service), so callers see the error tree; what a failure leaves is named with
:func:`~s3sync.local.errors.classify_local`.

A receive that fails raises: the consumer reconnects with backoff. The three calls on
messages already received never raise, because the worst any of them can cause is a
redelivery, i.e. a duplicate hint, which is not worth a reconnect:

* **the heartbeat** (:meth:`SqsQueue.invisible_while`) calls ``ChangeMessageVisibilityBatch``
  at half the visibility timeout while a slow batch is being journaled, so another
  consumer of the same queue does not get its messages;
* **release** hands another shard's message back on a shared queue, visible again soon;
* **delete** acknowledges a journaled batch with one ``DeleteMessageBatch``.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import structlog

from s3sync.config.sections import SqsSettings
from s3sync.local.errors import classify_local
from s3sync.s3.errors import map_errors
from s3sync.stats import SyncStats

__all__ = ["RELEASE_DELAY_SECONDS", "Message", "SqsQueue"]

log = structlog.get_logger(__name__)

#: How long a message for other shards stays hidden when handed back to a shared queue.
RELEASE_DELAY_SECONDS = 1

#: One message as ``ReceiveMessage`` returns it (``Body``, ``ReceiptHandle``, ``MessageId``, ...).
Message = dict[str, Any]


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


class SqsQueue:
    """The calls on ``queue_url`` through one open aiobotocore SQS client."""

    def __init__(self, client: Any, queue_url: str, sqs: SqsSettings, stats: SyncStats) -> None:
        self._client = _MappedClient(client)
        self.queue_url = queue_url
        self._sqs = sqs
        self._stats = stats

    async def receive(self) -> list[Message]:
        """One long poll: up to ``max_messages``, hidden for ``visibility_timeout_seconds``."""
        sqs = self._sqs
        response = await self._client.receive_message(
            QueueUrl=self.queue_url,
            MaxNumberOfMessages=sqs.max_messages,
            WaitTimeSeconds=sqs.wait_time_seconds,
            VisibilityTimeout=sqs.visibility_timeout_seconds,
            AttributeNames=["ApproximateReceiveCount"],
        )
        return list(response.get("Messages") or [])

    @contextlib.asynccontextmanager
    async def invisible_while(self, messages: list[Message]) -> AsyncIterator[None]:
        """Keep ``messages`` invisible (the heartbeat) for as long as the block runs."""
        heartbeat = asyncio.create_task(self._keep_invisible(messages), name="sqs-heartbeat")
        try:
            yield
        finally:
            heartbeat.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await heartbeat

    async def _keep_invisible(self, messages: list[Message]) -> None:
        """Extend the visibility timeout every half timeout while the batch is still being journaled."""
        vt = self._sqs.visibility_timeout_seconds
        while True:
            await asyncio.sleep(vt / 2)
            entries = [
                {"Id": str(i), "ReceiptHandle": m["ReceiptHandle"], "VisibilityTimeout": vt}
                for i, m in enumerate(messages)
            ]
            try:
                resp = await self._client.change_message_visibility_batch(
                    QueueUrl=self.queue_url, Entries=entries
                )
                self._stats.sqs_messages["extended"] += len(resp.get("Successful") or [])
                log.info("extended SQS visibility for a slow batch", messages=len(messages), seconds=vt)
            except asyncio.CancelledError:
                raise
            except Exception as exc:  # the worst case is a redelivery, i.e. a duplicate hint
                log.warning("could not extend SQS visibility", error=str(classify_local(exc)))

    async def release(self, msg: Message) -> None:
        """Make a message visible again soon (not deleted): another host's consumer takes it.

        Not at once (visibility 0): this consumer would receive it again at once and spin
        while the owner is down; ``RELEASE_DELAY_SECONDS`` bounds that to one bounce a second.
        """
        self._stats.sqs_messages["released_other_shard"] += 1
        try:
            await self._client.change_message_visibility(
                QueueUrl=self.queue_url,
                ReceiptHandle=msg["ReceiptHandle"],
                VisibilityTimeout=RELEASE_DELAY_SECONDS,
            )
        except asyncio.CancelledError:
            raise
        except Exception as exc:  # it reappears after the visibility timeout anyway
            log.warning("could not release another shard's SQS message", error=str(classify_local(exc)))

    async def delete(self, messages: list[Message]) -> None:
        """Acknowledge a journaled batch; what SQS does not delete is redelivered (a duplicate hint)."""
        entries = [{"Id": str(i), "ReceiptHandle": m["ReceiptHandle"]} for i, m in enumerate(messages)]
        try:
            resp = await self._client.delete_message_batch(QueueUrl=self.queue_url, Entries=entries)
        except asyncio.CancelledError:
            raise
        except Exception as exc:
            # Already journaled: a redelivery is only a duplicate. Not worth a reconnect.
            self._stats.sqs_messages["delete_failed"] += len(entries)
            log.warning("SQS delete failed; the messages will be redelivered", error=str(classify_local(exc)))
            return
        self._stats.sqs_messages["deleted"] += len(resp.get("Successful") or [])
        failed = resp.get("Failed") or []
        if failed:
            self._stats.sqs_messages["delete_failed"] += len(failed)
            log.warning(
                "some SQS deletes failed; those messages will be redelivered",
                failed=[f.get("Code") for f in failed],
            )
