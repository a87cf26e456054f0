"""Notification payloads (S3, SNS, SQS, EventBridge) → Change hints, and hostile input → 400."""

from __future__ import annotations

import contextlib
import copy
import json
import string
from typing import Any
from urllib.parse import quote_plus

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from s3sync.model import Change, ChangeKind, ChangeSource
from s3sync.sources.events import (
    MAX_NESTING,
    MAX_RECORDS,
    EventParseError,
    ParsedEvents,
    decode_key,
    is_trusted_sns_url,
    parse_body,
    parse_payload,
)

SRC = ChangeSource.NOTIFICATION
T0 = 1_700_000_000.0


def s3_record(
    event_name: str = "ObjectCreated:Put",
    key: str = "photos/2024/beach.jpg",
    *,
    size: Any = 1024,
    etag: Any = "0123456789abcdef0123456789abcdef",
    sequencer: Any = "0A1B2C3D4E5F678901",
    version_id: Any = None,
    bucket: str = "amzn-s3-demo-bucket",
    event_source: str = "aws:s3",
) -> dict[str, Any]:
    """A record shaped like the AWS "Event message structure" page (version 2.1)."""
    obj: dict[str, Any] = {"key": key, "sequencer": sequencer}
    if size is not None:
        obj["size"] = size
    if etag is not None:
        obj["eTag"] = etag
    if version_id is not None:
        obj["versionId"] = version_id
    return {
        "eventVersion": "2.1",
        "eventSource": event_source,
        "awsRegion": "us-west-2",
        "eventTime": "2024-03-01T12:00:00.000Z",
        "eventName": event_name,
        "userIdentity": {"principalId": "AWS:AIDAEXAMPLE"},
        "requestParameters": {"sourceIPAddress": "203.0.113.7"},
        "responseElements": {
            "x-amz-request-id": "C3D13FE58DE4C810",
            "x-amz-id-2": "FMyUVURIY8/IgAtTv8xRjskZQpcIZ9KG4V5Wp6S7S/JRWeUWerMUE5JgHvANOjpD",
        },
        "s3": {
            "s3SchemaVersion": "1.0",
            "configurationId": "s3sync-notify",
            "bucket": {
                "name": bucket,
                "ownerIdentity": {"principalId": "A3NL1KOZZKExample"},
                "arn": f"arn:aws:s3:::{bucket}",
            },
            "object": obj,
        },
    }


def s3_event(*records: dict[str, Any]) -> dict[str, Any]:
    return {"Records": list(records)}


def one(parsed: ParsedEvents) -> Change:
    assert len(parsed.changes) == 1, parsed
    return parsed.changes[0]


def sns_notification(message: Any) -> dict[str, Any]:
    """An SNS HTTP(S) delivery envelope, as SNS POSTs it to a subscribed endpoint."""
    return {
        "Type": "Notification",
        "MessageId": "22b80b92-fdea-4c2c-8f9d-bdfb0c7bf324",
        "TopicArn": "arn:aws:sns:us-west-2:123456789012:s3-events",
        "Subject": "Amazon S3 Notification",
        "Message": message if isinstance(message, str) else json.dumps(message),
        "Timestamp": "2024-03-01T12:00:01.000Z",
        "SignatureVersion": "1",
        "Signature": (
            "EXAMPLEpH+DcEwjAPg8O9mY8dReBSwksfg2S7WKQcikcNKWLQjwu6A4VbeS0QHVCkhRS7fUQvi2egU3N8"
            "58fiTDN6bkkOxYDVrY0Ad8L10Hs3zH81mtnPk5uvvolIC1CXGu43obcgFxeL3khZl8IKvO61GWB6jI9b5+gLPoBc1Q="
        ),
        "SigningCertURL": "https://sns.us-west-2.amazonaws.com/SimpleNotificationService-f3ecfb7224c7233fe7bb5f59f96de52f.pem",
        "UnsubscribeURL": "https://sns.us-west-2.amazonaws.com/?Action=Unsubscribe&SubscriptionArn=arn:aws:sns:us-west-2:123456789012:s3-events:c9135db0-26c4-47ec-8998-413945fb5a96",
    }


CONFIRM_URL = (
    "https://sns.us-west-2.amazonaws.com/?Action=ConfirmSubscription"
    "&TopicArn=arn:aws:sns:us-west-2:123456789012:s3-events"
    "&Token=2336412f37fb687f5d51e6e241d09c805a5a57b30d712f794cc5f6a988666d92768dd60a747ba6f3"
)


def sns_confirmation(url: Any = CONFIRM_URL) -> dict[str, Any]:
    return {
        "Type": "SubscriptionConfirmation",
        "MessageId": "165545c9-2a5c-472c-8df2-7ff2be2b3b1b",
        "Token": "2336412f37fb687f5d51e6e241d09c805a5a57b30d712f794cc5f6a988666d92768dd60a747ba6f3",
        "TopicArn": "arn:aws:sns:us-west-2:123456789012:s3-events",
        "Message": (
            "You have chosen to subscribe to the topic arn:aws:sns:us-west-2:123456789012:s3-events."
            "\nTo confirm the subscription, visit the SubscribeURL included in this message."
        ),
        "SubscribeURL": url,
        "Timestamp": "2024-03-01T11:59:00.000Z",
        "SignatureVersion": "1",
        "Signature": "EXAMPLE",
        "SigningCertURL": "https://sns.us-west-2.amazonaws.com/SimpleNotificationService-f3ecfb7224c7233fe7bb5f59f96de52f.pem",
    }


TEST_EVENT = {
    "Service": "Amazon S3",
    "Event": "s3:TestEvent",
    "Time": "2024-03-01T11:58:00.000Z",
    "Bucket": "amzn-s3-demo-bucket",
    "RequestId": "5582815E1AEA5ADF",
    "HostId": "8cLeGAmw098X5cv4Zkwcmo8vvZa3eH3eKxsPzbB9wrR+YstdA6Knx4Ip8EXAMPLE",
}


def eventbridge(
    detail_type: str = "Object Created",
    key: str = "example-key",
    *,
    reason: str = "PutObject",
    deletion_type: str | None = None,
    obj_extra: dict[str, Any] | None = None,
    source: str = "aws.s3",
) -> dict[str, Any]:
    """Shaped like the AWS "EventBridge event message structure" examples."""
    obj: dict[str, Any] = {
        "key": key,
        "size": 5,
        "etag": "b1946ac92492d2347c6235b4d2611184",
        "version-id": "IYV3p45BT0ac8hjHg1houSdS1a.Mro8e",
        "sequencer": "617f08299329d189",
    }
    if detail_type == "Object Deleted":
        obj = {"key": key, "sequencer": "617f0837b476e463"}
        if deletion_type == "Delete Marker Created":
            obj["version-id"] = "1QW9g1Z99LUNbvaaYVpW9xDlOLU.qxgF"
    obj.update(obj_extra or {})
    detail: dict[str, Any] = {
        "version": "0",
        "bucket": {"name": "amzn-s3-demo-bucket1"},
        "object": obj,
        "request-id": "N4N7GDK58NMKJ12R",
        "requester": "123456789012",
        "source-ip-address": "1.2.3.4",
        "reason": reason,
    }
    if deletion_type is not None:
        detail["deletion-type"] = deletion_type
    return {
        "version": "0",
        "id": "17793124-05d4-b198-2fde-7ededc63b103",
        "detail-type": detail_type,
        "source": source,
        "account": "111122223333",
        "time": "2021-11-12T00:00:00Z",
        "region": "ca-central-1",
        "resources": ["arn:aws:s3:::amzn-s3-demo-bucket1"],
        "detail": detail,
    }


def parse(payload: Any, **kw: Any) -> ParsedEvents:
    return parse_payload(payload, SRC, T0, **kw)


def parse_error(payload: Any) -> str:
    with pytest.raises(EventParseError) as info:
        parse(payload)
    return str(info.value)


class TestS3Records:
    """Direct S3 event notifications (and SNS raw message delivery, which is the same body)."""

    def test_put_becomes_an_upsert_with_every_field(self) -> None:
        """A Put record carries key, size, ETag, sequencer and the caller's source and time."""
        parsed = parse(s3_event(s3_record()))
        assert parsed.changes == [
            Change(
                key="photos/2024/beach.jpg",
                kind=ChangeKind.UPSERT,
                source=SRC,
                etag="0123456789abcdef0123456789abcdef",
                size=1024,
                sequencer="0A1B2C3D4E5F678901",
                version_id=None,
                delete_marker=False,
                received_at=T0,
            )
        ]
        assert (parsed.ignored, parsed.test_events, parsed.subscribe_url) == (0, 0, None)
        assert parsed.untrusted_subscribe_url is False

    @pytest.mark.parametrize(
        "name",
        [
            "ObjectCreated:Put",
            "ObjectCreated:Post",
            "ObjectCreated:Copy",
            "ObjectCreated:CompleteMultipartUpload",
            "s3:ObjectCreated:Put",
            "ObjectRestore:Completed",
        ],
    )
    def test_created_and_restored_are_upserts(self, name: str) -> None:
        """Every ObjectCreated flavour (with or without the s3: prefix) and a finished restore."""
        assert one(parse(s3_event(s3_record(name)))).kind is ChangeKind.UPSERT

    @pytest.mark.parametrize(
        ("name", "marker"),
        [
            ("ObjectRemoved:Delete", False),
            ("ObjectRemoved:DeleteMarkerCreated", True),
            ("LifecycleExpiration:Delete", False),
            ("LifecycleExpiration:DeleteMarkerCreated", True),
            ("s3:ObjectRemoved:Delete", False),
        ],
    )
    def test_removes_and_delete_markers(self, name: str, marker: bool) -> None:
        """Removals and expirations are removes; the DeleteMarkerCreated flavour says so."""
        record = s3_record(name, size=None, etag=None, version_id="Kn1Hc0Ehm8W7VtV5.3SxpWLWF0Zd0G1a")
        change = one(parse(s3_event(record)))
        assert change.kind is ChangeKind.REMOVE
        assert change.delete_marker is marker
        assert change.version_id == "Kn1Hc0Ehm8W7VtV5.3SxpWLWF0Zd0G1a"
        assert change.size is None and change.etag is None

    @pytest.mark.parametrize(
        "name",
        [
            "ObjectTagging:Put",
            "ObjectTagging:Delete",
            "ObjectAcl:Put",
            "ReducedRedundancyLostObject",
            "s3:ReducedRedundancyLostObject",
            "Replication:OperationFailedReplication",
            "ObjectRestore:Post",
            "ObjectRestore:Delete",
            "LifecycleTransition",
            "IntelligentTiering",
            "SomethingNew:FromTheFuture",
        ],
    )
    def test_events_that_do_not_change_bytes_are_ignored(self, name: str) -> None:
        """Tagging, ACL, replication, transitions and unknown names are counted, not acted on."""
        parsed = parse(s3_event(s3_record(name)))
        assert parsed.changes == [] and parsed.ignored == 1

    def test_ignored_records_are_not_validated(self) -> None:
        """A record we skip anyway does not fail the batch for a field we would not read."""
        record = s3_record("ObjectTagging:Put")
        record["s3"]["object"]["key"] = 42
        assert parse(s3_event(record)).ignored == 1

    def test_other_event_sources_are_ignored(self) -> None:
        """A non-S3 record in a Records list (e.g. a DynamoDB stream) is counted and skipped."""
        other = {"eventSource": "aws:dynamodb", "eventName": "INSERT", "dynamodb": {}}
        parsed = parse(s3_event(other, s3_record()))
        assert parsed.ignored == 1 and len(parsed.changes) == 1

    def test_s3_compatible_sources_are_accepted(self) -> None:
        """MinIO and Ceph send the same record shape with their own eventSource."""
        for source in ("minio:s3", "ceph:s3"):
            record = s3_record("s3:ObjectCreated:Put", event_source=source)
            assert one(parse(s3_event(record))).kind is ChangeKind.UPSERT

    def test_records_keep_payload_order(self) -> None:
        """Changes come out in the order the records came in."""
        records = [s3_record(key=f"k{i}") for i in range(5)]
        assert [c.key for c in parse(s3_event(*records)).changes] == [f"k{i}" for i in range(5)]

    def test_empty_records_is_fine(self) -> None:
        """An empty Records list is a valid, empty notification."""
        parsed = parse({"Records": []})
        assert parsed.changes == [] and parsed.ignored == 0

    def test_etag_quotes_are_stripped(self) -> None:
        """ETags go through normalize_etag, so a quoted one compares equal to a listing's."""
        change = one(parse(s3_event(s3_record(etag='"9b2cf535f27731c974343645a3985328-3"'))))
        assert change.etag == "9b2cf535f27731c974343645a3985328-3"

    def test_sequencer_kept_as_given(self) -> None:
        """Sequencers stay strings (compare_sequencers does the ordering)."""
        assert one(parse(s3_event(s3_record(sequencer="0055AED6DCD90281E5")))).sequencer == (
            "0055AED6DCD90281E5"
        )

    @pytest.mark.parametrize("bad", ["", "not-hex!", "ZZZZ", "1" * 65])
    def test_unusable_sequencer_is_dropped(self, bad: str) -> None:
        """A sequencer that is not hex cannot order anything, so it becomes None."""
        assert one(parse(s3_event(s3_record(sequencer=bad)))).sequencer is None

    def test_null_optional_fields(self) -> None:
        """JSON null for size, eTag, versionId and sequencer means 'not given'."""
        change = one(parse(s3_event(s3_record(size=None, etag=None, sequencer=None))))
        assert (change.size, change.etag, change.sequencer, change.version_id) == (
            None,
            None,
            None,
            None,
        )

    def test_zero_size_is_fine(self) -> None:
        """Empty objects exist; size 0 is valid."""
        assert one(parse(s3_event(s3_record(size=0)))).size == 0

    def test_received_at_defaults_to_now(self) -> None:
        """Without received_at, every change in one payload shares the parse time."""
        import time

        before = time.time()
        parsed = parse_payload(s3_event(s3_record(), s3_record()), ChangeSource.SQS)
        after = time.time()
        stamps = {c.received_at for c in parsed.changes}
        assert len(stamps) == 1 and before <= stamps.pop() <= after
        assert {c.source for c in parsed.changes} == {ChangeSource.SQS}


class TestKeyDecoding:
    """Keys in notifications are form-URL-encoded ('+' is a space) and decoded exactly once."""

    @pytest.mark.parametrize(
        ("raw", "key"),
        [
            ("red+flower.jpg", "red flower.jpg"),
            ("c%2B%2B/gcc-13%2B1.tar.gz", "c++/gcc-13+1.tar.gz"),
            ("caf%C3%A9/men%C3%BC.txt", "café/menü.txt"),
            ("a%2Fb/c", "a/b/c"),
            ("plain/key.txt", "plain/key.txt"),
            ("100%25+sure", "100% sure"),
            ("%E2%9C%93+done", "✓ done"),
            ("already/%ZZ", "already/%ZZ"),
            ("%28copy%29+%281%29.pdf", "(copy) (1).pdf"),
            ("logs/year%3D2026/month%3D01", "logs/year=2026/month=01"),
        ],
    )
    def test_decode(self, raw: str, key: str) -> None:
        """'+' → space, %XX → byte, UTF-8 multi-byte sequences reassemble."""
        assert decode_key(raw) == key
        assert one(parse(s3_event(s3_record(key=raw)))).key == key

    def test_unicode_key_not_encoded_by_sender(self) -> None:
        """A sender that forgot to encode non-ASCII still yields the obvious key."""
        assert one(parse(s3_event(s3_record(key="café.txt")))).key == "café.txt"

    @pytest.mark.parametrize("raw", ["bad%FF", "bad%C3", "%ED%A0%80"])
    def test_invalid_utf8_is_an_error(self, raw: str) -> None:
        """Percent-escapes that do not decode as UTF-8 are refused, not mangled."""
        with pytest.raises(EventParseError, match="URL-encoded UTF-8"):
            decode_key(raw)
        msg = parse_error(s3_event(s3_record(key=raw)))
        assert msg.startswith("Records[0].s3.object.key: ")

    def test_lone_surrogate_is_an_error(self) -> None:
        """JSON can smuggle a lone surrogate; such a key could never be sent to S3."""
        with pytest.raises(EventParseError):
            decode_key("bad\ud800key")

    def test_non_string_is_an_error(self) -> None:
        """decode_key itself refuses non-strings with EventParseError."""
        with pytest.raises(EventParseError, match="expected a string"):
            decode_key(42)  # type: ignore[arg-type]

    def test_empty_key_is_an_error(self) -> None:
        """No S3 object has an empty key."""
        assert parse_error(s3_event(s3_record(key=""))) == "Records[0].s3.object.key: empty"


class TestTestEvent:
    """S3 sends s3:TestEvent when a notification configuration is saved."""

    def test_test_event_is_acknowledged(self) -> None:
        """No change, counted as ignored and as a test event."""
        parsed = parse(TEST_EVENT)
        assert (parsed.changes, parsed.ignored, parsed.test_events) == ([], 1, 1)

    def test_test_event_through_sns(self) -> None:
        """SNS forwards the TestEvent inside Message like any other."""
        parsed = parse(sns_notification(TEST_EVENT))
        assert (parsed.changes, parsed.ignored, parsed.test_events) == ([], 1, 1)


class TestSnsEnvelope:
    """SNS Notification envelopes wrap the S3 event as JSON text in Message."""

    def test_notification_unwraps_message(self) -> None:
        """The inner S3 event is parsed as if it had been posted directly."""
        parsed = parse(sns_notification(s3_event(s3_record(key="docs/a+b.txt"))))
        assert one(parsed).key == "docs/a b.txt"
        assert parsed.ignored == 0

    def test_lambda_sns_records(self) -> None:
        """The Lambda SNS event shape: Records[].Sns.Message."""
        envelope = sns_notification(s3_event(s3_record("ObjectRemoved:Delete", size=None)))
        lambda_event = {
            "Records": [
                {
                    "EventSource": "aws:sns",
                    "EventVersion": "1.0",
                    "EventSubscriptionArn": "arn:aws:sns:us-west-2:123456789012:s3-events:abc",
                    "Sns": envelope,
                }
            ]
        }
        assert one(parse(lambda_event)).kind is ChangeKind.REMOVE

    def test_lambda_sns_record_without_type(self) -> None:
        """A hand-built Sns record without Type is treated as a Notification."""
        lambda_event = {"Records": [{"EventSource": "aws:sns", "Sns": {"Message": json.dumps(TEST_EVENT)}}]}
        assert parse(lambda_event).test_events == 1

    def test_message_not_json(self) -> None:
        """A plain-text SNS message is a malformed payload, named by field."""
        msg = parse_error(sns_notification("hello world"))
        assert msg.startswith("Message: not valid JSON")

    def test_message_missing(self) -> None:
        """A Notification without Message is refused."""
        envelope = sns_notification(TEST_EVENT)
        del envelope["Message"]
        assert parse_error(envelope) == "Message: missing"

    def test_unsubscribe_confirmation_is_ignored(self) -> None:
        """UnsubscribeConfirmation needs nothing from us."""
        envelope = sns_confirmation()
        envelope["Type"] = "UnsubscribeConfirmation"
        parsed = parse(envelope)
        assert (parsed.changes, parsed.ignored, parsed.subscribe_url) == ([], 1, None)

    def test_unknown_sns_type(self) -> None:
        """A Type we do not know is an error naming the field."""
        envelope = sns_notification(TEST_EVENT)
        envelope["Type"] = "Surprise"
        assert parse_error(envelope) == "Type: unrecognised SNS message type"


class TestSubscriptionConfirmation:
    """SubscribeURL is handed back only when it points at real SNS (no SSRF)."""

    def test_trusted_url_is_returned(self) -> None:
        """A genuine confirmation yields its SubscribeURL, counted as ignored."""
        parsed = parse(sns_confirmation())
        assert parsed.subscribe_url == CONFIRM_URL
        assert parsed.untrusted_subscribe_url is False
        assert (parsed.changes, parsed.ignored) == ([], 1)

    @pytest.mark.parametrize(
        "url",
        [
            "http://sns.us-west-2.amazonaws.com/?Action=ConfirmSubscription&Token=x",
            "https://sns.evil.com/?Action=ConfirmSubscription&Token=x",
            "https://sns.us-east-1.amazonaws.com.evil.com/?Action=ConfirmSubscription",
            "https://sns.us-east-1.amazonaws.com@evil.com/?Action=ConfirmSubscription",
            "https://user:pw@sns.us-east-1.amazonaws.com/?Action=ConfirmSubscription",
            "https://sns.us-east-1.amazonaws.com:8443/?Action=ConfirmSubscription",
            "https://sns.us-east-1.amazonaws.com/?Action=Unsubscribe&SubscriptionArn=x",
            "https://127.0.0.1/?Action=ConfirmSubscription",
        ],
    )
    def test_untrusted_url_is_refused(self, url: str) -> None:
        """Wrong scheme, host, userinfo, port or action: no URL, and the refusal is flagged."""
        parsed = parse(sns_confirmation(url))
        assert parsed.subscribe_url is None
        assert parsed.untrusted_subscribe_url is True
        assert parsed.ignored == 1

    def test_missing_subscribe_url(self) -> None:
        """A confirmation without SubscribeURL is malformed."""
        envelope = sns_confirmation()
        del envelope["SubscribeURL"]
        assert parse_error(envelope) == "SubscribeURL: missing"

    def test_subscribe_url_wrong_type(self) -> None:
        """A non-string SubscribeURL is malformed."""
        assert parse_error(sns_confirmation(["x"])) == ("SubscribeURL: expected a string, got array")


class TestIsTrustedSnsUrl:
    """The host check itself, independent of the confirmation flow."""

    @pytest.mark.parametrize(
        "url",
        [
            "https://sns.us-east-1.amazonaws.com/?Action=ConfirmSubscription",
            "https://sns.eu-central-1.amazonaws.com/",
            "https://sns.ap-southeast-2.amazonaws.com:443/x",
            "https://sns.cn-north-1.amazonaws.com.cn/",
            "https://sns.us-gov-west-1.amazonaws.com/",
            "https://SNS.US-EAST-1.AMAZONAWS.COM/",
            "https://sns.us-west-2.amazonaws.com/SimpleNotificationService-abc.pem",
        ],
    )
    def test_trusted(self, url: str) -> None:
        """Regional SNS endpoints, including China and GovCloud, over https on 443."""
        assert is_trusted_sns_url(url)

    @pytest.mark.parametrize(
        "url",
        [
            "",
            "http://sns.us-east-1.amazonaws.com/",
            "https://sns.evil.com/",
            "https://sns.us-east-1.amazonaws.com.evil.com/",
            "https://sns.us-east-1.amazonaws.com@evil.com/",
            "https://evil.com@sns.us-east-1.amazonaws.com/",
            "https://sns.us-east-1.amazonaws.com:8443/",
            "https://sns.us-east-1.amazonaws.com:99999/",
            "https://sns.us-east-1.amazonaws.com:abc/",
            "https://sns.us-east-1.amazonaws.com\\@evil.com/",
            "https://sns.us-east-1.amazonaws.com./",
            "https://sqs.us-east-1.amazonaws.com/",
            "https://xsns.us-east-1.amazonaws.com/",
            "https://sns.amazonaws.com/",
            "https://sns.us-east-1.amazonaws.com\n.evil.com/",
            "https://sns.us-east-1.amazonaws.com /",
            "https://[::1]/",
            "https://sns.us-east-1.amazonaws.c\u043em/",
            "//sns.us-east-1.amazonaws.com/",
            "sns.us-east-1.amazonaws.com",
            "javascript:alert(1)",
        ],
    )
    def test_untrusted(self, url: str) -> None:
        """Look-alikes, userinfo tricks, odd ports, whitespace and non-ASCII are refused."""
        assert not is_trusted_sns_url(url)

    def test_non_string(self) -> None:
        """A non-string is simply not trusted (no exception)."""
        assert not is_trusted_sns_url(None)  # type: ignore[arg-type]


class TestSqsShapes:
    """SQS bodies: the consumer calls parse_body per message; Lambda batches wrap them."""

    def test_sqs_body_with_sns_envelope(self) -> None:
        """S3 → SNS → SQS: the SQS body is the SNS envelope as text."""
        body = json.dumps(sns_notification(s3_event(s3_record()))).encode()
        assert one(parse_body(body, ChangeSource.SQS)).source is ChangeSource.SQS

    def test_sqs_body_str_is_accepted(self) -> None:
        """boto gives SQS bodies as str; parse_body takes those too."""
        assert one(parse_body(json.dumps(s3_event(s3_record())), ChangeSource.SQS))

    def test_lambda_sqs_batch(self) -> None:
        """The Lambda SQS event shape: Records[].body holds the S3 event text."""
        event = {
            "Records": [
                {
                    "messageId": "059f36b4-87a3-44ab-83d2-661975830a7d",
                    "receiptHandle": "AQEBwJnKyrHigUMZj6rYigCgxlaS3SLy0a",
                    "body": json.dumps(s3_event(s3_record(key="a"))),
                    "attributes": {"ApproximateReceiveCount": "1"},
                    "messageAttributes": {},
                    "md5OfBody": "e4e68fb7bd0e697a0ae8f1bb342846b3",
                    "eventSource": "aws:sqs",
                    "eventSourceARN": "arn:aws:sqs:us-east-2:123456789012:my-queue",
                    "awsRegion": "us-east-2",
                },
                {"eventSource": "aws:sqs", "body": json.dumps(TEST_EVENT)},
            ]
        }
        parsed = parse(event)
        assert [c.key for c in parsed.changes] == ["a"]
        assert parsed.test_events == 1

    def test_lambda_sqs_body_not_json(self) -> None:
        """A non-JSON SQS body names its record."""
        event = {"Records": [{"eventSource": "aws:sqs", "body": "{"}]}
        assert parse_error(event).startswith("Records[0].body: not valid JSON")


class TestEventBridge:
    """S3 events delivered through EventBridge (detail-type / detail)."""

    def test_object_created(self) -> None:
        """Object Created is an upsert with key, size, etag, sequencer and version."""
        change = one(parse(eventbridge()))
        assert change == Change(
            key="example-key",
            kind=ChangeKind.UPSERT,
            source=SRC,
            etag="b1946ac92492d2347c6235b4d2611184",
            size=5,
            sequencer="617f08299329d189",
            version_id="IYV3p45BT0ac8hjHg1houSdS1a.Mro8e",
            delete_marker=False,
            received_at=T0,
        )

    def test_object_deleted_permanently(self) -> None:
        """Object Deleted (Permanently Deleted) is a plain remove."""
        event = eventbridge("Object Deleted", reason="DeleteObject", deletion_type="Permanently Deleted")
        change = one(parse(event))
        assert change.kind is ChangeKind.REMOVE and change.delete_marker is False
        assert change.sequencer == "617f0837b476e463"

    def test_object_deleted_marker(self) -> None:
        """Object Deleted with a delete marker sets delete_marker and passes the version."""
        event = eventbridge("Object Deleted", reason="DeleteObject", deletion_type="Delete Marker Created")
        change = one(parse(event))
        assert change.kind is ChangeKind.REMOVE and change.delete_marker is True
        assert change.version_id == "1QW9g1Z99LUNbvaaYVpW9xDlOLU.qxgF"

    def test_lifecycle_expiration(self) -> None:
        """Lifecycle expirations arrive as Object Deleted with reason Lifecycle Expiration."""
        event = eventbridge(
            "Object Deleted", reason="Lifecycle Expiration", deletion_type="Permanently Deleted"
        )
        assert one(parse(event)).kind is ChangeKind.REMOVE

    def test_restore_completed_is_an_upsert_hint(self) -> None:
        """A finished restore makes the bytes readable again."""
        assert one(parse(eventbridge("Object Restore Completed"))).kind is ChangeKind.UPSERT

    @pytest.mark.parametrize(
        "detail_type",
        [
            "Object Tags Added",
            "Object Tags Deleted",
            "Object ACL Updated",
            "Object Restore Initiated",
            "Object Restore Expired",
            "Object Storage Class Changed",
            "Object Access Tier Changed",
        ],
    )
    def test_metadata_only_types_are_ignored(self, detail_type: str) -> None:
        """Detail types that do not change the bytes are counted as ignored."""
        parsed = parse(eventbridge(detail_type))
        assert parsed.changes == [] and parsed.ignored == 1

    def test_other_sources_are_ignored(self) -> None:
        """A broad rule may forward e.g. EC2 events; they are ignored, not errors."""
        parsed = parse(eventbridge(source="aws.ec2"))
        assert parsed.changes == [] and parsed.ignored == 1

    def test_moto_spelling_of_etag(self) -> None:
        """moto emits eTag instead of etag in EventBridge details; both work."""
        event = eventbridge()
        obj = event["detail"]["object"]
        obj["eTag"] = obj.pop("etag")
        assert one(parse(event)).etag == "b1946ac92492d2347c6235b4d2611184"

    def test_key_decoded_like_s3_records(self) -> None:
        """EventBridge keys get the same decoding as S3 records (documented in the module)."""
        assert one(parse(eventbridge(key="my+doc%2B1.txt"))).key == "my doc+1.txt"

    def test_missing_key(self) -> None:
        """The error names the EventBridge path."""
        event = eventbridge()
        del event["detail"]["object"]["key"]
        assert parse_error(event) == "detail.object.key: missing"

    def test_missing_detail(self) -> None:
        """An aws.s3 object event without detail is malformed."""
        event = eventbridge()
        del event["detail"]
        assert parse_error(event) == "detail: missing"


class TestBatch:
    """A JSON array of any of the shapes is a batch; results concatenate in order."""

    def test_mixed_batch(self) -> None:
        """S3 event, SNS envelope, TestEvent, EventBridge and a confirmation in one array."""
        batch = [
            s3_event(s3_record(key="one")),
            sns_notification(s3_event(s3_record("ObjectRemoved:Delete", key="two", size=None))),
            TEST_EVENT,
            eventbridge(key="three"),
            sns_confirmation(),
        ]
        parsed = parse(batch)
        assert [(c.key, c.kind) for c in parsed.changes] == [
            ("one", ChangeKind.UPSERT),
            ("two", ChangeKind.REMOVE),
            ("three", ChangeKind.UPSERT),
        ]
        assert (parsed.ignored, parsed.test_events) == (2, 1)
        assert parsed.subscribe_url == CONFIRM_URL

    def test_empty_batch(self) -> None:
        """An empty array carries no event: a 400 naming the problem (README, "HTTP API": bad input)."""
        assert "empty array" in parse_error([])

    def test_error_path_includes_batch_index(self) -> None:
        """Errors inside a batch name the item index and the field."""
        bad = s3_record()
        del bad["s3"]["object"]["key"]
        assert parse_error([TEST_EVENT, s3_event(s3_record(), bad)]) == (
            "[1].Records[1].s3.object.key: missing"
        )

    def test_error_path_through_sns(self) -> None:
        """Errors inside an SNS Message name the envelope field too."""
        bad = s3_record(size=-1)
        assert parse_error(sns_notification(s3_event(bad))) == (
            "Message.Records[0].s3.object.size: expected a non-negative integer in range"
        )


class TestBucketFilter:
    """With bucket=..., records for other buckets (fan-in topics) are ignored."""

    def test_other_bucket_ignored(self) -> None:
        """Only the mirrored bucket's records become changes."""
        payload = s3_event(s3_record(key="mine", bucket="b1"), s3_record(key="theirs", bucket="b2"))
        parsed = parse(payload, bucket="b1")
        assert [c.key for c in parsed.changes] == ["mine"] and parsed.ignored == 1

    def test_eventbridge_other_bucket_ignored(self) -> None:
        """EventBridge details are filtered by detail.bucket.name."""
        parsed = parse(eventbridge(), bucket="another-bucket")
        assert parsed.changes == [] and parsed.ignored == 1

    def test_no_filter_by_default(self) -> None:
        """Without bucket=..., every bucket's records are kept."""
        payload = s3_event(s3_record(bucket="b1"), s3_record(bucket="b2"))
        assert len(parse(payload).changes) == 2


def _mutate(path: list[Any], value: Any, *, delete: bool = False) -> dict[str, Any]:
    record = s3_record()
    target: Any = record
    for part in path[:-1]:
        target = target[part]
    if delete:
        del target[path[-1]]
    else:
        target[path[-1]] = value
    return s3_event(record)


class TestErrors:
    """Malformed payloads raise EventParseError naming the field; nothing else escapes."""

    @pytest.mark.parametrize(
        ("payload", "message"),
        [
            (42, "payload: expected a JSON object, got number"),
            ("text", "payload: expected a JSON object, got string"),
            (None, "payload: expected a JSON object, got null"),
            ({}, "payload: unrecognised payload"),
            ({"hello": "world"}, "payload: unrecognised payload"),
            ({"Records": {}}, "Records: expected an array, got object"),
            ({"Records": [1]}, "Records[0]: expected a JSON object, got number"),
            ([1], "[0]: expected a JSON object, got number"),
            (
                {"Records": [{"eventSource": 5}]},
                "Records[0].eventSource: expected a string, got number",
            ),
            (_mutate(["eventName"], None, delete=True), "Records[0].eventName: missing"),
            (_mutate(["eventName"], 7), "Records[0].eventName: expected a string, got number"),
            (_mutate(["s3"], None, delete=True), "Records[0].s3: missing"),
            (_mutate(["s3"], []), "Records[0].s3: expected an object, got array"),
            (_mutate(["s3", "object"], "x"), "Records[0].s3.object: expected an object, got string"),
            (_mutate(["s3", "object", "key"], None, delete=True), "Records[0].s3.object.key: missing"),
            (
                _mutate(["s3", "object", "key"], 12),
                "Records[0].s3.object.key: expected a string, got number",
            ),
            (
                _mutate(["s3", "object", "key"], None),
                "Records[0].s3.object.key: expected a string, got null",
            ),
            (
                _mutate(["s3", "object", "size"], True),
                "Records[0].s3.object.size: expected a non-negative integer, got boolean",
            ),
            (
                _mutate(["s3", "object", "size"], 1.5),
                "Records[0].s3.object.size: expected a non-negative integer, got number",
            ),
            (
                _mutate(["s3", "object", "size"], "1024"),
                "Records[0].s3.object.size: expected a non-negative integer, got string",
            ),
            (
                _mutate(["s3", "object", "size"], -1),
                "Records[0].s3.object.size: expected a non-negative integer in range",
            ),
            (
                _mutate(["s3", "object", "size"], 2**64),
                "Records[0].s3.object.size: expected a non-negative integer in range",
            ),
            (
                _mutate(["s3", "object", "eTag"], 5),
                "Records[0].s3.object.eTag: expected a string, got number",
            ),
            (
                _mutate(["s3", "object", "sequencer"], 5),
                "Records[0].s3.object.sequencer: expected a string, got number",
            ),
            (
                _mutate(["s3", "object", "versionId"], {}),
                "Records[0].s3.object.versionId: expected a string, got object",
            ),
            (
                _mutate(["s3", "bucket", "name"], 3),
                "Records[0].s3.bucket.name: expected a string, got number",
            ),
            (
                {"Type": "Notification", "Message": 3},
                "Message: expected a string, got number",
            ),
            (
                {"Records": [{"EventSource": "aws:sns", "Sns": "x"}]},
                "Records[0].Sns: expected an object, got string",
            ),
        ],
    )
    def test_messages_name_the_field(self, payload: Any, message: str) -> None:
        """Each malformed field yields a message that starts with its JSON path."""
        assert parse_error(payload).startswith(message)

    def test_too_many_records(self) -> None:
        """A flood of records is refused before any of them is parsed."""
        payload: dict[str, Any] = {"Records": [{}] * (MAX_RECORDS + 1)}
        assert "too many records" in parse_error(payload)

    def test_too_many_records_across_envelopes(self) -> None:
        """The limit counts records across a whole batch, not per envelope."""
        chunk = s3_event(*[s3_record()] * (MAX_RECORDS // 2))
        assert "too many records" in parse_error([chunk, chunk, s3_event(s3_record())])

    def test_limit_itself_is_allowed(self) -> None:
        """Exactly MAX_RECORDS records parse."""
        parsed = parse(s3_event(*[s3_record()] * MAX_RECORDS))
        assert len(parsed.changes) == MAX_RECORDS

    def test_huge_batch_array(self) -> None:
        """A batch array longer than the record limit is refused up front."""
        assert "too many records" in parse_error([TEST_EVENT] * (MAX_RECORDS + 1))

    def test_sns_nesting_limit(self) -> None:
        """SNS envelopes nested inside each other stop at MAX_NESTING."""
        payload: Any = TEST_EVENT
        for _ in range(MAX_NESTING):
            payload = sns_notification(payload)
        assert parse(payload).test_events == 1
        assert "nested too deeply" in parse_error(sns_notification(payload))

    def test_arrays_in_arrays_are_refused(self) -> None:
        """A batch holds envelopes, not further batches."""
        assert parse_error([[TEST_EVENT]]) == "[0]: expected a JSON object, got array"

    def test_batch_arrays_count_towards_nesting(self) -> None:
        """Batches inside SNS messages inside batches are envelopes too."""
        payload: Any = TEST_EVENT
        for _ in range(MAX_NESTING):
            payload = [sns_notification(payload)]
        assert "nested too deeply" in parse_error(payload)

    def test_never_mutates_input(self) -> None:
        """Parsing leaves the caller's payload untouched (it may be journaled verbatim)."""
        payload: list[Any] = [s3_event(s3_record()), eventbridge(), sns_confirmation()]
        before = copy.deepcopy(payload)
        parse(payload)
        assert payload == before


class TestParseBody:
    """parse_body: bytes → JSON → parse_payload, with JSON failures as EventParseError."""

    def test_valid_body(self) -> None:
        """A UTF-8 JSON body parses like the decoded payload."""
        body = json.dumps(s3_event(s3_record(key="caf%C3%A9"))).encode()
        assert one(parse_body(body, SRC, T0)).key == "café"

    def test_bom_tolerated(self) -> None:
        """A UTF-8 byte-order mark in front of the JSON is accepted."""
        body = b"\xef\xbb\xbf" + json.dumps(TEST_EVENT).encode()
        assert parse_body(body, SRC).test_events == 1

    @pytest.mark.parametrize(
        "body",
        [b"", b"{", b"not json", b"\xff\xfe{}", b"[" * 100_000, b"1" * 5000, b"{'a': 1}"],
    )
    def test_invalid_json(self, body: bytes) -> None:
        """Empty, truncated, non-UTF-8, absurdly nested or huge-number bodies: a clean 400."""
        with pytest.raises(EventParseError, match=r"^body is not valid JSON: "):
            parse_body(body, SRC)

    def test_valid_json_wrong_shape(self) -> None:
        """Valid JSON of the wrong shape reports the shape problem, not a JSON one."""
        with pytest.raises(EventParseError, match="unrecognised payload"):
            parse_body(b'{"ok": true}', SRC)

    def test_bytearray_and_memoryview(self) -> None:
        """Any bytes-like body works (aiohttp may hand over either)."""
        raw = json.dumps(TEST_EVENT).encode()
        assert parse_body(bytearray(raw), SRC).test_events == 1
        assert parse_body(memoryview(raw), SRC).test_events == 1


# --------------------------------------------------------------------------- properties

_json_scalars = (
    st.none()
    | st.booleans()
    | st.integers(min_value=-(2**70), max_value=2**70)
    | st.floats(allow_nan=True, allow_infinity=True)
    | st.text(max_size=20)
    | st.sampled_from(
        [
            "aws:s3",
            "aws:sns",
            "aws:sqs",
            "minio:s3",
            "ObjectCreated:Put",
            "ObjectRemoved:DeleteMarkerCreated",
            "s3:TestEvent",
            "Notification",
            "SubscriptionConfirmation",
            "Object Created",
            "Object Deleted",
            "aws.s3",
            "Delete Marker Created",
            CONFIRM_URL,
            "%FF",
            "a+b%2B",
        ]
    )
)
_field_names = st.sampled_from(
    [
        "Records",
        "eventSource",
        "EventSource",
        "eventName",
        "s3",
        "object",
        "bucket",
        "name",
        "key",
        "size",
        "eTag",
        "etag",
        "sequencer",
        "versionId",
        "version-id",
        "Event",
        "Type",
        "Message",
        "SubscribeURL",
        "Sns",
        "body",
        "detail-type",
        "source",
        "detail",
        "deletion-type",
    ]
) | st.text(max_size=8)

json_values = st.recursive(
    _json_scalars,
    lambda children: st.lists(children, max_size=4) | st.dictionaries(_field_names, children, max_size=6),
    max_leaves=40,
)


def _plausible(children: st.SearchStrategy[Any]) -> st.SearchStrategy[Any]:
    """Near-valid shapes, so the fuzzer reaches the deep branches, not just the top check."""
    obj = st.fixed_dictionaries(
        {"key": children | st.text(max_size=10)},
        optional={"size": children, "eTag": children, "sequencer": children, "versionId": children},
    )
    record = st.fixed_dictionaries(
        {
            "eventSource": st.sampled_from(["aws:s3", "minio:s3"]) | children,
            "eventName": st.sampled_from(["ObjectCreated:Put", "ObjectRemoved:Delete"]) | children,
            "s3": st.fixed_dictionaries({"object": obj | children}, optional={"bucket": children}),
        }
    )
    s3 = st.fixed_dictionaries({"Records": st.lists(record | children, max_size=3)})
    sns = st.fixed_dictionaries(
        {
            "Type": st.sampled_from(["Notification", "SubscriptionConfirmation"]) | children,
            "Message": st.builds(json.dumps, s3) | children,
        },
        optional={"SubscribeURL": st.sampled_from([CONFIRM_URL, "http://x"]) | children},
    )
    eb = st.fixed_dictionaries(
        {
            "source": st.just("aws.s3") | children,
            "detail-type": st.sampled_from(["Object Created", "Object Deleted"]) | children,
            "detail": st.fixed_dictionaries({"object": obj | children}) | children,
        }
    )
    return s3 | sns | eb | st.lists(s3 | sns | eb, max_size=3)


class TestProperties:
    """Hypothesis: hostile payloads only ever yield ParsedEvents or EventParseError."""

    @settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])
    @given(json_values)
    def test_arbitrary_json_never_crashes(self, payload: Any) -> None:
        """Arbitrary JSON-like values: a result or EventParseError, nothing else."""
        try:
            result = parse(payload)
        except EventParseError:
            return
        assert isinstance(result, ParsedEvents)
        assert result.ignored >= result.test_events >= 0

    @settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])
    @given(_plausible(json_values))
    def test_near_valid_payloads_never_crash(self, payload: Any) -> None:
        """Well-shaped envelopes with hostile fields: a result or EventParseError."""
        try:
            result = parse(payload)
        except EventParseError:
            return
        for change in result.changes:
            assert isinstance(change.key, str) and change.key
            change.key.encode("utf-8")
            assert change.size is None or (type(change.size) is int and change.size >= 0)
            assert change.etag is None or isinstance(change.etag, str)

    @settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])
    @given(st.binary(max_size=200) | st.builds(lambda v: json.dumps(v).encode(), json_values))
    def test_arbitrary_bodies_never_crash(self, body: bytes) -> None:
        """Arbitrary bytes through parse_body: a result or EventParseError."""
        with contextlib.suppress(EventParseError):
            parse_body(body, SRC)

    @settings(max_examples=200, deadline=None)
    @given(st.text(alphabet=st.characters(exclude_categories=["Cs"]), min_size=1))
    def test_key_round_trip(self, key: str) -> None:
        """Whatever the key, quote_plus(key, safe='/') in a record decodes back to it."""
        record = s3_record(key=quote_plus(key, safe="/"))
        assert one(parse(s3_event(record))).key == key

    @settings(max_examples=100, deadline=None)
    @given(st.text(alphabet=string.printable, min_size=1))
    def test_key_round_trip_eventbridge(self, key: str) -> None:
        """The same encoding round-trips through the EventBridge shape."""
        assert one(parse(eventbridge(key=quote_plus(key)))).key == key


# --------------------------------------------------------------------------- moto


class TestMotoPayloads:
    """The JSON moto really emits (no sequencer, keys quote_plus-encoded) parses."""

    @pytest.fixture
    def aws(self) -> Any:
        from moto import mock_aws

        with mock_aws():
            yield

    def _queue(self) -> tuple[Any, str, str]:
        import boto3  # type: ignore[import-untyped,unused-ignore]

        sqs = boto3.client("sqs", region_name="us-east-1")
        url = sqs.create_queue(QueueName="events")["QueueUrl"]
        arn = sqs.get_queue_attributes(QueueUrl=url, AttributeNames=["QueueArn"])["Attributes"]["QueueArn"]
        return sqs, url, arn

    def _drain(self, sqs: Any, url: str, want: int) -> list[str]:
        bodies: list[str] = []
        for _ in range(20):  # moto delivers synchronously; this only bounds the loop
            msgs = sqs.receive_message(QueueUrl=url, MaxNumberOfMessages=10).get("Messages", [])
            bodies += [m["Body"] for m in msgs]
            if len(bodies) >= want:
                break
        return bodies

    def test_s3_to_sqs(self, aws: None) -> None:
        """Put and delete of an awkward key arrive via SQS and decode to the real key."""
        import boto3  # type: ignore[import-untyped,unused-ignore]

        sqs, url, arn = self._queue()
        s3 = boto3.client("s3", region_name="us-east-1")
        s3.create_bucket(Bucket="mirror")
        s3.put_bucket_notification_configuration(
            Bucket="mirror",
            NotificationConfiguration={
                "QueueConfigurations": [
                    {"QueueArn": arn, "Events": ["s3:ObjectCreated:*", "s3:ObjectRemoved:*"]}
                ]
            },
        )
        key = "dir/red flower+1 café (copy).txt"
        s3.put_object(Bucket="mirror", Key=key, Body=b"hello")
        s3.delete_object(Bucket="mirror", Key=key)
        bodies = self._drain(sqs, url, 3)
        changes: list[Change] = []
        tests = 0
        for body in bodies:
            parsed = parse_body(body, ChangeSource.SQS, bucket="mirror")
            changes += parsed.changes
            tests += parsed.test_events
        upserts = [c for c in changes if c.kind is ChangeKind.UPSERT]
        removes = [c for c in changes if c.kind is ChangeKind.REMOVE]
        assert [c.key for c in upserts] == [key]
        assert upserts[0].size == 5
        assert upserts[0].etag == "5d41402abc4b2a76b9719d911017c592"
        assert upserts[0].sequencer is None
        assert [c.key for c in removes] == [key]

    def test_s3_to_sns_to_sqs(self, aws: None) -> None:
        """S3 → SNS → SQS delivers an SNS envelope in the SQS body; it unwraps."""
        import boto3  # type: ignore[import-untyped,unused-ignore]

        sqs, url, arn = self._queue()
        sns = boto3.client("sns", region_name="us-east-1")
        topic = sns.create_topic(Name="s3-events")["TopicArn"]
        sns.subscribe(TopicArn=topic, Protocol="sqs", Endpoint=arn)
        s3 = boto3.client("s3", region_name="us-east-1")
        s3.create_bucket(Bucket="mirror")
        s3.put_bucket_notification_configuration(
            Bucket="mirror",
            NotificationConfiguration={
                "TopicConfigurations": [{"TopicArn": topic, "Events": ["s3:ObjectCreated:*"]}]
            },
        )
        s3.put_object(Bucket="mirror", Key="a b/c+d.bin", Body=b"x" * 10)
        bodies = self._drain(sqs, url, 1)
        keys = [c.key for b in bodies for c in parse_body(b, ChangeSource.SQS).changes]
        assert "a b/c+d.bin" in keys
