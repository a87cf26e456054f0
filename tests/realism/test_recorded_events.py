"""Every event body S3 really delivered (``tests/data/aws-truth/events``) drives the mirror.

Each recorded body, its placeholders filled in with this test's bucket, key,
version id and sequencer, is delivered the two ways the daemon takes events:
``POST /api/v1/s3-notification`` and the SQS consumer (moto SQS). Before
delivery the test makes S3 (moto, behind the AWS proxy) what the event
describes -- the object put, copied, uploaded in parts, deleted, hidden by a
delete marker, a version removed, a marker removed, restored from GLACIER --
and the mirror must follow: the file appears, goes, returns to the version now
current. Tagging, ACL and restore-initiated events are acknowledged and
ignored: no GET, no change. Events without ``sequencer`` or ``size`` (deletes,
tagging, ACL, EventBridge restores) work like the others, and so do the
placeholders the recording kept (a non-hex ``"sequencer"`` is no sequencer).
Both GET paths.
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any
from urllib.parse import quote_plus, unquote_plus

import pytest
from support.awstruth import event, event_names, untyped
from support.daemon import run_daemon
from support.eventkit import boto
from support.proxy import Proxy
from support.s3kit import tree
from support.wait import wait_for

SEQ = "0062E99A88DC407460"
PATHS = pytest.mark.parametrize("fast_get", [True, False], ids=["lean", "boto"])
INTAKES = pytest.mark.parametrize("intake", ["http", "sqs"])
DATA = b"something"  # the recorded bodies' eTag 437b930d... is md5("something")

#: What each recording describes, so the test can make S3 match it (see the module docstring).
SCENARIO = {
    "sqs-ObjectCreated-Put.json": "create",
    "sqs-ObjectCreated-Put--key-encoding.json": "create",
    "sqs-ObjectCreated-Put--versioned.json": "create-versioned",
    "sqs-ObjectCreated-Put--versioning-suspended.json": "create-suspended",
    "sqs-ObjectCreated-Copy.json": "copy",
    "sqs-ObjectCreated-CompleteMultipartUpload.json": "multipart",
    "sqs-message-ObjectCreated-Put--xray.json": "create",
    "sns-envelope-ObjectCreated-Put.json": "create",
    "lambda-ObjectCreated-Put.dynamodb-typed.json": "create",
    "lambda-ObjectCreated-Post.dynamodb-typed.json": "create",
    "eventbridge-Object-Created.json": "create",
    "sqs-ObjectRemoved-Delete.json": "delete",
    "eventbridge-Object-Deleted.json": "delete",
    "sqs-ObjectRemoved-Delete--versioned.json": "version-deleted",
    "sqs-ObjectRemoved-DeleteMarkerCreated.json": "marker-created",
    "sqs-ObjectRemoved-Delete--delete-marker-removed.json": "marker-removed",
    "eventbridge-Object-Deleted--delete-marker-removed.json": "marker-removed",
    "sqs-ObjectTagging-Put.json": "ignored",
    "sqs-ObjectTagging-Delete.json": "ignored",
    "sqs-ObjectAcl-Put.json": "ignored",
    "eventbridge-Object-ACL-Updated.json": "ignored",
    "sqs-ObjectRestore-Post.json": "restore-initiated",
    "eventbridge-Object-Restore-Initiated.json": "restore-initiated",
    "sqs-ObjectRestore-Completed.json": "restored",
    "eventbridge-Object-Restore-Completed.json": "restored",
}
#: Keys for the recordings whose key is a placeholder; S3 records carry them form-encoded.
GENERIC_KEY = "dir/obj one+€.txt"
EVENTBRIDGE_KEY = "eb/plain-key.txt"


def test_every_recording_has_a_scenario() -> None:
    assert sorted(SCENARIO) == event_names()


def wire(name: str, vid: str | None) -> tuple[dict[str, Any], dict[str, Any]]:
    """(the JSON the daemon receives, SQS system attributes) for a recording, placeholders filled."""
    values: dict[str, Any] = {
        "<region>": "us-east-1",
        "<partition>": "aws",
        "date": "2026-12-05T21:00:00.000Z",
        "sequencer": SEQ,
        "object-sequencer": SEQ,
        "<object-key:1>": quote_plus(GENERIC_KEY, safe="/"),
        "<object-key:2>": quote_plus(GENERIC_KEY, safe="/"),
        "<key-name:1>": EVENTBRIDGE_KEY,
    }
    if vid is not None:
        values["version-id"] = vid
        values["<version-id:3>"] = vid
    body = event(name, **values)
    attrs: dict[str, Any] = {}
    if name.startswith("lambda-"):
        body = {"Records": [untyped(body)]}
    elif name.startswith("sqs-message-"):
        attrs = {
            "AWSTraceHeader": {"StringValue": body["Attributes"]["AWSTraceHeader"], "DataType": "String"}
        }
        body = body["Body"]
    elif name.startswith("sns-envelope-"):
        body = {**body, "Message": json.dumps(body["Message"])}  # a JSON string on the wire
    elif name.startswith("sqs-"):
        body = {"Records": [body]}
    return body, attrs


def with_bucket(body: Any, bucket: str) -> Any:
    text = json.dumps(body)
    for placeholder in ("<resource:1>", "<bucket-name:1>"):
        text = text.replace(placeholder, bucket)
    return json.loads(text)


def key_of(body: dict[str, Any]) -> str:
    """The S3 key the delivered body names (S3 records are form-encoded, EventBridge keys raw here)."""
    if "detail" in body:
        return str(body["detail"]["object"]["key"])
    if "Message" in body:
        body = json.loads(body["Message"])
    return unquote_plus(body["Records"][0]["s3"]["object"]["key"])


class World:
    """The bucket, as the recording describes it, before and after the event."""

    def __init__(self, s3: Any, bucket: str, key: str) -> None:
        self.s3, self.bucket, self.key = s3, bucket, key

    def versioning(self, status: str) -> None:
        self.s3.put_bucket_versioning(Bucket=self.bucket, VersioningConfiguration={"Status": status})

    def put(self, data: bytes = DATA, **kw: Any) -> str | None:
        vid = self.s3.put_object(Bucket=self.bucket, Key=self.key, Body=data, **kw).get("VersionId")
        return str(vid) if vid is not None else None

    def before(self, scenario: str) -> dict[str, bytes]:
        """Set up what existed before the event; returns what the first reconcile should mirror."""
        if scenario in ("delete", "ignored"):
            self.put()
            return {self.key: DATA}
        if scenario in ("version-deleted", "marker-created"):
            self.versioning("Enabled")
            self.put(b"older")
            if scenario == "version-deleted":
                self.newest = self.put(DATA)
            return {self.key: DATA if scenario == "version-deleted" else b"older"}
        if scenario == "marker-removed":
            self.versioning("Enabled")
            self.put()
            self.marker = str(self.s3.delete_object(Bucket=self.bucket, Key=self.key)["VersionId"])
            return {}
        if scenario in ("restore-initiated", "restored"):
            self.put(StorageClass="GLACIER")
            return {}
        if scenario == "create-versioned":
            self.versioning("Enabled")
        elif scenario == "create-suspended":
            self.versioning("Suspended")
        return {}

    def act(self, scenario: str) -> tuple[str | None, dict[str, bytes]]:
        """Do what the event reports; returns (the version id it names, the mirror expected after)."""
        if scenario in ("create", "create-versioned", "create-suspended"):
            return self.put(), {self.key: DATA}
        if scenario == "copy":
            self.s3.put_object(Bucket=self.bucket, Key="copy-source", Body=DATA)
            self.s3.copy_object(Bucket=self.bucket, Key=self.key, CopySource=f"{self.bucket}/copy-source")
            return None, {self.key: DATA}  # the source had no event: not mirrored
        if scenario == "multipart":
            up = self.s3.create_multipart_upload(Bucket=self.bucket, Key=self.key)
            part = self.s3.upload_part(
                Bucket=self.bucket, Key=self.key, UploadId=up["UploadId"], PartNumber=1, Body=b"m" * 6144
            )
            self.s3.complete_multipart_upload(
                Bucket=self.bucket,
                Key=self.key,
                UploadId=up["UploadId"],
                MultipartUpload={"Parts": [{"PartNumber": 1, "ETag": part["ETag"]}]},
            )
            return None, {self.key: b"m" * 6144}
        if scenario == "delete":
            self.s3.delete_object(Bucket=self.bucket, Key=self.key)
            return None, {}
        if scenario == "version-deleted":  # the newest version removed: the older one is current again
            self.s3.delete_object(Bucket=self.bucket, Key=self.key, VersionId=self.newest)
            return self.newest, {self.key: b"older"}
        if scenario == "marker-created":
            return str(self.s3.delete_object(Bucket=self.bucket, Key=self.key)["VersionId"]), {}
        if scenario == "marker-removed":
            # recorded after versioning was Suspended; moto 5.2.6 answers 500 to that (FakeDeleteMarker
            # has no dispose()), so the marker is removed with versioning Enabled: the same event
            self.s3.delete_object(Bucket=self.bucket, Key=self.key, VersionId=self.marker)
            return self.marker, {self.key: DATA}
        if scenario == "ignored":
            self.s3.put_object_tagging(
                Bucket=self.bucket, Key=self.key, Tagging={"TagSet": [{"Key": "k", "Value": "v"}]}
            )
            return None, {self.key: DATA}
        if scenario == "restore-initiated":
            return None, {}
        assert scenario == "restored"
        self.s3.restore_object(Bucket=self.bucket, Key=self.key, RestoreRequest={"Days": 1})
        return None, {self.key: DATA}


def deliverer(intake: str, moto_endpoint: str) -> tuple[dict[str, Any], Callable[..., Awaitable[None]]]:
    """(settings overrides, ``deliver(daemon, body, attrs, ignored)``) for one intake."""
    if intake == "http":

        async def post(d: Any, body: Any, attrs: dict[str, Any], ignored: bool) -> None:
            answer = await d.notify(body)
            assert answer == ({"accepted": 0, "ignored": 1} if ignored else {"accepted": 1, "ignored": 0})

        return {}, post
    sqs = boto("sqs", moto_endpoint)
    queue = str(sqs.create_queue(QueueName=f"q-{uuid.uuid4().hex[:12]}")["QueueUrl"])

    async def send(d: Any, body: Any, attrs: dict[str, Any], ignored: bool) -> None:
        extra = {"MessageSystemAttributes": attrs} if attrs else {}
        sqs.send_message(QueueUrl=queue, MessageBody=json.dumps(body), **extra)

        async def consumed() -> bool:
            st = (await d.stats())["sqs_messages"]
            return bool(st.get("deleted", 0) >= 1)

        await wait_for(consumed, what="the message consumed and deleted")
        left = sqs.get_queue_attributes(
            QueueUrl=queue,
            AttributeNames=["ApproximateNumberOfMessages", "ApproximateNumberOfMessagesNotVisible"],
        )["Attributes"]
        assert (
            int(left["ApproximateNumberOfMessages"]) + int(left["ApproximateNumberOfMessagesNotVisible"]) == 0
        )

    return {"sqs": {"queue_url": queue, "endpoint_url": moto_endpoint, "wait_time_seconds": 1}}, send


@PATHS
@INTAKES
@pytest.mark.parametrize("name", sorted(SCENARIO))
async def test_recorded_event(
    name: str,
    intake: str,
    fast_get: bool,
    s3: Any,
    bucket: str,
    mirror: Path,
    proxy: Proxy,
    make_settings: Any,
    moto_endpoint: str,
) -> None:
    scenario = SCENARIO[name]
    ignored = scenario in ("ignored", "restore-initiated")
    probe, _ = wire(name, "v")
    key = key_of(probe)
    world = World(s3, bucket, key)
    mirrored = world.before(scenario)
    sections, deliver = deliverer(intake, moto_endpoint)
    settings = make_settings(bucket, mirror, s3={"endpoint_url": proxy.url, "fast_get": fast_get}, **sections)
    async with run_daemon(settings) as d:
        if mirrored or scenario in ("restore-initiated", "restored", "marker-removed"):
            await d.reconcile()
            assert tree(mirror) == mirrored
        vid, expected = world.act(scenario)
        body, attrs = wire(name, vid)
        body = with_bucket(body, bucket)
        assert key_of(body) == key
        proxy.seen.clear()
        await deliver(d, body, attrs, ignored)
        await wait_for(lambda: tree(mirror) == expected, what=f"the mirror after {name}")
        await d.idle()
        assert tree(mirror) == expected
    if ignored:
        assert proxy.requests(key=key) == [], "an ignored event must not reach S3"
    else:
        seen = proxy.requests(key=key)
        assert seen, "the event was confirmed against S3"
        # a delete marker's version is never asked for (AWS answers 405 to that), nothing failed
        assert [s for s in seen if s.status == 405 or s.status >= 500] == [], [
            (s.op, s.query, s.status) for s in seen
        ]
