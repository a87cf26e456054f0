"""Event intake with ``--shard K/N``: a per-host queue drops other shards' events; a shared one returns them.

The real daemon app with its SQS consumer against moto's SQS, shard 0 of 2.
"""

from __future__ import annotations

import json
import uuid
from pathlib import Path
from typing import Any

import pytest
from support.daemon import run_daemon
from support.eventkit import boto, s3_event, s3_record
from support.s3kit import seed, tree
from support.wait import wait_for

from s3sync.model import shard_of


@pytest.fixture
def sqs(moto_endpoint: str) -> Any:
    return boto("sqs", moto_endpoint)


def _pick(owner: int) -> str:
    return next(f"key-{i}.txt" for i in range(1000) if shard_of(f"key-{i}.txt", 2) == owner)


def _visible(sqs: Any, url: str) -> int:
    attrs = sqs.get_queue_attributes(
        QueueUrl=url, AttributeNames=["ApproximateNumberOfMessages", "ApproximateNumberOfMessagesNotVisible"]
    )["Attributes"]
    return int(attrs["ApproximateNumberOfMessages"]) + int(attrs["ApproximateNumberOfMessagesNotVisible"])


class TestShardedIntake:
    """Shard 0/2 applies its keys' events only; the others are ignored and counted."""

    @pytest.mark.parametrize("shared", [False, True])
    async def test_other_shards_events(
        self,
        s3: Any,
        sqs: Any,
        bucket: str,
        mirror: Path,
        make_settings: Any,
        moto_endpoint: str,
        shared: bool,
    ) -> None:
        mine, theirs = _pick(0), _pick(1)
        seed(s3, bucket, {mine: b"mine", theirs: b"theirs"})
        queue = sqs.create_queue(QueueName=f"q-{uuid.uuid4().hex[:12]}")["QueueUrl"]
        for key in (theirs, mine):
            body = json.dumps(s3_event(s3_record(bucket, "ObjectCreated:Put", key)))
            sqs.send_message(QueueUrl=queue, MessageBody=body)
        settings = make_settings(
            bucket,
            mirror,
            sync={"shard": "0/2"},
            sqs={
                "queue_url": queue,
                "endpoint_url": moto_endpoint,
                "wait_time_seconds": 1,
                "shared_queue": shared,
            },
        )
        async with run_daemon(settings) as d:
            await wait_for(lambda: mine in tree(mirror), what="this shard's file")
            # the other shard's change is ignored and counted (on a shared queue, once per
            # delivery: a released message may come back to this consumer before its owner's)
            other = (await d.stats())["changes_other_shard"]
            assert other >= 1 if shared else other == 1
            if shared:
                # handed back, not deleted: the owner's consumer will receive it
                s = (await d.stats())["sqs_messages"]
                assert s.get("released_other_shard", 0) >= 1
                assert _visible(sqs, queue) == 1
            else:
                await wait_for(lambda: _visible(sqs, queue) == 0, what="both messages deleted")
        assert theirs not in tree(mirror)
