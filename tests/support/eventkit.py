"""S3-shaped events for tests: notification records, SNS envelopes, EventBridge events, test events.

What S3, SNS and EventBridge send, built the way they build it (keys
form-encoded), so a test posts them to a daemon (:mod:`support.daemon`) or puts
them on an SQS queue exactly as AWS would.
"""

from __future__ import annotations

import contextlib
import json
from collections.abc import AsyncIterator
from typing import Any
from urllib.parse import quote_plus

from support.rawserver import RawServer, ServerConn, ok
from support.s3kit import AWS_ENV


def boto(service: str, endpoint: str) -> Any:
    import boto3

    return boto3.client(
        service,
        endpoint_url=endpoint,
        region_name="us-east-1",
        aws_access_key_id=AWS_ENV["AWS_ACCESS_KEY_ID"],
        aws_secret_access_key=AWS_ENV["AWS_SECRET_ACCESS_KEY"],
    )


# --------------------------------------------------------------------------- event shapes


def s3_record(
    bucket: str,
    name: str,
    key: str,
    *,
    size: int | None = None,
    etag: str | None = None,
    sequencer: str | None = None,
    version_id: str | None = None,
) -> dict[str, Any]:
    """One S3 event record as S3 sends it: the key form-encoded (``+`` for space)."""
    obj: dict[str, Any] = {"key": quote_plus(key, safe="/")}
    if size is not None:
        obj["size"] = size
    if etag is not None:
        obj["eTag"] = etag
    if sequencer is not None:
        obj["sequencer"] = sequencer
    if version_id is not None:
        obj["versionId"] = version_id
    return {
        "eventVersion": "2.1",
        "eventSource": "aws:s3",
        "awsRegion": "us-east-1",
        "eventTime": "2024-01-15T10:30:00.000Z",
        "eventName": name,
        "s3": {
            "s3SchemaVersion": "1.0",
            "configurationId": "test",
            "bucket": {"name": bucket, "arn": f"arn:aws:s3:::{bucket}"},
            "object": obj,
        },
    }


def s3_event(*records: dict[str, Any]) -> dict[str, Any]:
    return {"Records": list(records)}


def notification(bucket: str, *keys: str, name: str = "ObjectCreated:Put") -> dict[str, Any]:
    """One notification carrying a ``name`` record for each of ``keys``."""
    return s3_event(*(s3_record(bucket, name, k) for k in keys))


def sns_envelope(message: dict[str, Any]) -> dict[str, Any]:
    """An SNS Notification wrapping ``message`` (what an HTTPS subscription or SQS receives)."""
    return {
        "Type": "Notification",
        "MessageId": "5b2f8f63-0000-0000-0000-000000000000",
        "TopicArn": "arn:aws:sns:us-east-1:123456789012:s3-events",
        "Subject": "Amazon S3 Notification",
        "Message": json.dumps(message),
        "Timestamp": "2024-01-15T10:30:00.000Z",
        "SignatureVersion": "1",
        "Signature": "x",
        "SigningCertURL": "https://sns.us-east-1.amazonaws.com/SimpleNotificationService-x.pem",
        "UnsubscribeURL": "https://sns.us-east-1.amazonaws.com/?Action=Unsubscribe&SubscriptionArn=x",
    }


def eventbridge(bucket: str, detail_type: str, key: str, **obj: Any) -> dict[str, Any]:
    """An EventBridge S3 event (hyphenated ``detail`` fields)."""
    return {
        "version": "0",
        "id": "17793124-05d4-b198-2fde-7ededc63b103",
        "detail-type": detail_type,
        "source": "aws.s3",
        "account": "123456789012",
        "time": "2024-01-15T10:30:00Z",
        "region": "us-east-1",
        "resources": [f"arn:aws:s3:::{bucket}"],
        "detail": {
            "version": "0",
            "bucket": {"name": bucket},
            "object": {"key": quote_plus(key, safe="/"), **obj},
            "request-id": "N4N7GDK58NMKJ12R",
            "requester": "123456789012",
            "reason": "PutObject" if "Created" in detail_type else "DeleteObject",
        },
    }


def s3_test_event(bucket: str) -> dict[str, Any]:
    return {
        "Service": "Amazon S3",
        "Event": "s3:TestEvent",
        "Time": "2024-01-15T10:30:00.000Z",
        "Bucket": bucket,
        "RequestId": "5582815E1AEA5ADF",
        "HostId": "8cLeGAmw098X5cv4Zkwcmo8vvZa3eH3eKxsPzbB9wrR+YstdA6Knx4Ip8EXAMPLE",
    }


@contextlib.asynccontextmanager
async def request_recorder() -> AsyncIterator[tuple[str, list[str]]]:
    """A loopback HTTP server (a :class:`~support.rawserver.RawServer`) that records every request target."""
    seen: list[str] = []

    async def record(conn: ServerConn) -> None:
        while (req := await conn.read_request()) is not None:
            seen.append(req.split(b" ", 2)[1].decode("latin-1"))
            await conn.send(ok(b"ok", "Content-Type: text/plain; charset=utf-8"))

    async with RawServer(record) as server:
        yield server.url, seen
