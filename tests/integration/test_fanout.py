"""Fan-out for fleets: S3 → SNS topic → one SQS queue per daemon; every mirror converges.

moto delivers the bucket's notifications to the SNS topic and from there to
both queues (real event JSON, SNS envelopes in the SQS bodies), so nothing in
this test publishes an event by hand. Two daemons (in-process apps with their
own mirror directory and state) each consume their own queue.
"""

from __future__ import annotations

import contextlib
import uuid
from pathlib import Path
from typing import Any

from support.daemon import run_daemon
from support.eventkit import boto
from support.s3kit import body_for, tree
from support.wait import wait_for


def _fanout(moto_endpoint: str, bucket: str, queues: int, *, raw: bool = False) -> list[str]:
    """Topic + ``queues`` subscribed queues + the bucket notification; returns the queue URLs."""
    s3, sns, sqs = (boto(svc, moto_endpoint) for svc in ("s3", "sns", "sqs"))
    name = uuid.uuid4().hex[:10]
    topic = sns.create_topic(Name=f"s3-events-{name}")["TopicArn"]
    urls = []
    for i in range(queues):
        url = sqs.create_queue(QueueName=f"mirror-{name}-{i}")["QueueUrl"]
        arn = sqs.get_queue_attributes(QueueUrl=url, AttributeNames=["QueueArn"])["Attributes"]["QueueArn"]
        attrs = {"RawMessageDelivery": "true"} if raw and i == 1 else {}
        sns.subscribe(TopicArn=topic, Protocol="sqs", Endpoint=arn, Attributes=attrs)
        urls.append(url)
    s3.put_bucket_notification_configuration(
        Bucket=bucket,
        NotificationConfiguration={
            "TopicConfigurations": [
                {"TopicArn": topic, "Events": ["s3:ObjectCreated:*", "s3:ObjectRemoved:*"]}
            ]
        },
    )
    return urls


class TestFanOut:
    """Each daemon keeps its own mirror from its own queue, with no coordination between them."""

    async def test_two_daemons_converge(
        self, s3: Any, bucket: str, tmp_path: Path, make_settings: Any, moto_endpoint: str
    ) -> None:
        """Puts, overwrites and deletes reach both mirrors (one queue with SNS envelopes, one raw)."""
        queues = _fanout(moto_endpoint, bucket, 2, raw=True)
        mirrors = [tmp_path / f"mirror-{i}" for i in range(2)]
        settings = [
            make_settings(bucket, m, sqs={"queue_url": q, "endpoint_url": moto_endpoint,
                          "wait_time_seconds": 1})
            for m, q in zip(mirrors, queues, strict=True)
        ]
        async with contextlib.AsyncExitStack() as stack:
            daemons = [await stack.enter_async_context(run_daemon(s)) for s in settings]
            expected: dict[str, bytes] = {}
            for i in range(12):
                key = f"fleet/{i % 4}/obj {i}+ü.bin"
                expected[key] = body_for(key, 200 + i)
                s3.put_object(Bucket=bucket, Key=key, Body=expected[key])
            overwrite = "fleet/0/obj 0+ü.bin"
            expected[overwrite] = b"overwritten"
            s3.put_object(Bucket=bucket, Key=overwrite, Body=expected[overwrite])
            for key in ["fleet/1/obj 1+ü.bin", "fleet/2/obj 6+ü.bin"]:
                s3.delete_object(Bucket=bucket, Key=key)
                del expected[key]
            for m in mirrors:
                await wait_for(lambda m=m: tree(m) == expected, within=30, what=f"{m.name} converged")
            for d in daemons:
                st = await d.idle()
                assert st["synced_by_source"].get("sqs", 0) >= len(expected)
                assert st["test_events"] >= 1  # the s3:TestEvent S3 sends when the configuration is set
        sqs = boto("sqs", moto_endpoint)
        for q in queues:
            attrs = sqs.get_queue_attributes(QueueUrl=q, AttributeNames=["ApproximateNumberOfMessages"])
            assert attrs["Attributes"]["ApproximateNumberOfMessages"] == "0"
