"""One received batch of SQS messages: decoded into changes, journaled, then deleted.

The one promise that matters (docs/design.md, decision 3) is kept here, in one method
(:meth:`SqsBatch.handle`): a message is deleted only after the changes it carries are
durably journaled by :meth:`Engine.intake`. A crash anywhere before the delete means SQS
redelivers the message after its visibility timeout; the duplicate is harmless because
events are hints. Split from the receive loop (:mod:`s3sync.sources.sqs`), which only
decides when to receive, and from the calls on the queue (:mod:`s3sync.sources.sqs_queue`).

Decoding a message (:func:`~s3sync.sources.events.parse_body`) ends one of three ways:

* **Poison** (a body we cannot parse): logged, counted and *not* deleted. It comes back
  until the queue's redrive policy moves it to its dead-letter queue, which is where an
  operator can look at it; deleting it would silently lose whatever it meant.
* **Another shard's** (``[sqs] shared_queue``, none of its keys ours): handed back to the
  queue at once for its owner, neither journaled nor deleted here.
* **Ours**: its changes are journaled with the rest of the batch, its SNS subscription
  (if it is one, on a trusted host) confirmed, and it is deleted with the batch.
"""

from __future__ import annotations

import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field

import structlog

from s3sync.config import Settings
from s3sync.model import Change, ChangeSource
from s3sync.sources.events import EventParseError, parse_body
from s3sync.sources.sqs_queue import Message, SqsQueue
from s3sync.stats import SyncStats
from s3sync.sync.engine import Engine

__all__ = ["ConfirmFn", "SqsBatch"]

log = structlog.get_logger(__name__)

ConfirmFn = Callable[[str], Awaitable[None]]


@dataclass(slots=True)
class _Decoded:
    """What a batch carries for this host: the changes, the messages that carried them."""

    changes: list[Change] = field(default_factory=list)
    done: list[Message] = field(default_factory=list)
    ignored: int = 0


class SqsBatch:
    """Turns each received batch into journaled changes and deleted messages, in that order."""

    def __init__(
        self, settings: Settings, engine: Engine, stats: SyncStats, *, confirm: ConfirmFn | None = None
    ) -> None:
        self.settings = settings
        self.engine = engine
        self.stats = stats
        self._confirm = confirm

    async def handle(self, queue: SqsQueue, messages: list[Message]) -> None:
        """Parse, journal, then delete; see the module docstring for why in this order."""
        received = time.time()
        self.stats.sqs_messages["received"] += len(messages)
        batch = await self._decode(queue, messages, received)
        if not batch.done:
            return
        async with queue.invisible_while(batch.done):
            accepted = await self.engine.intake(batch.changes)
        self.stats.events["sqs", "accepted"] += accepted
        self.stats.events["sqs", "ignored"] += batch.ignored
        await queue.delete(batch.done)

    async def _decode(self, queue: SqsQueue, messages: list[Message], received: float) -> _Decoded:
        """Each message's changes, or poison left in the queue, or another shard's handed back."""
        out = _Decoded()
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
                await queue.release(msg)
                self.stats.other_shard += len(parsed.changes)
                continue
            out.changes.extend(parsed.changes)
            out.ignored += parsed.ignored
            self.stats.test_events += parsed.test_events
            if parsed.subscribe_url and self._confirm is not None:
                await self._confirm(parsed.subscribe_url)
            if parsed.untrusted_subscribe_url:
                log.warning("refused SNS SubscribeURL on an untrusted host", message_id=msg.get("MessageId"))
            out.done.append(msg)
        return out

    def _foreign(self, changes: list[Change]) -> bool:
        """On a shared queue (``[sqs] shared_queue``), a message only for other shards' keys."""
        shard = self.engine.shard
        return (
            self.settings.sqs.shared_queue
            and not shard.everything
            and bool(changes)
            and not any(shard.owns(c.key) for c in changes)
        )
