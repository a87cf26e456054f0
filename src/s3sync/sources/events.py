"""Turn S3 / SNS / SQS / EventBridge notification payloads into :class:`Change` hints.

Pure: no I/O, no clock except ``time.time()`` when the caller gives no
``received_at``. The HTTP handler and the SQS consumer both call
:func:`parse_body` (or :func:`parse_payload` on already-decoded JSON) and get
either a :class:`ParsedEvents` or an :class:`EventParseError` -- never any other
exception, because the payload is attacker-controlled and a surprise
``KeyError`` would become a 500 instead of a 400.

Shapes understood (they nest: an SQS body may carry an SNS envelope whose
``Message`` is an S3 event, and a JSON array batches any of them)::

    {"Records": [{"eventSource": "aws:s3", "eventName": "ObjectCreated:Put", "s3": {...}}]}
    {"Service": "Amazon S3", "Event": "s3:TestEvent", ...}
    {"Type": "Notification", "Message": "<JSON text of any shape here>", ...}      SNS
    {"Type": "SubscriptionConfirmation", "SubscribeURL": "https://sns...", ...}   SNS
    {"Records": [{"EventSource": "aws:sns", "Sns": {"Message": "..."}}]}          Lambda ← SNS
    {"Records": [{"eventSource": "aws:sqs", "body": "..."}]}                      Lambda ← SQS
    {"source": "aws.s3", "detail-type": "Object Created", "detail": {...}}        EventBridge
    [ <any of the above>, ... ]                                                   batch

Events are hints (docs/design.md, decision 1): nothing here decides whether a file is
downloaded or deleted; the consumer confirms against S3. What this module must
get right is the *key* (URL-decoded exactly once), the kind, and refusing
anything malformed with a message that names the offending field.
"""

from __future__ import annotations

import json
import re
import time
from dataclasses import dataclass, field
from urllib.parse import parse_qs, urlsplit

from s3sync.model import Change, ChangeKind, ChangeSource, normalize_etag
from s3sync.sources.fields import (
    EventParseError,
    decode_key,
    join,
    json_type,
    opt_sequencer,
    opt_size,
    opt_str,
    req_dict,
    req_key,
    req_str,
)

__all__ = [
    "MAX_NESTING",
    "MAX_RECORDS",
    "EventParseError",
    "ParsedEvents",
    "decode_key",
    "is_trusted_sns_url",
    "parse_body",
    "parse_payload",
]

#: Most records/events (kept or ignored) one payload may carry. Real S3 sends one
#: record per message and an SQS batch is at most 10, so this only stops floods.
MAX_RECORDS = 10_000

#: Most envelopes (batch array, SNS ``Message``, SQS ``body``, Lambda ``Sns``)
#: one payload may stack. The deepest real chain is batch → SQS body → SNS → S3.
MAX_NESTING = 4

# Public SNS endpoints, including GovCloud (us-gov-*), ISO partitions and China
# (amazonaws.com.cn). Anything else -- a look-alike suffix, an IP, localhost -- is
# refused so that a forged SubscriptionConfirmation cannot make us GET an
# arbitrary URL (SSRF).
_SNS_HOST_RE = re.compile(r"sns\.[a-z]{2}(-gov|-iso[a-z]?)?-[a-z]+-\d\.amazonaws\.com(\.cn)?")

_S3_EVENT_SOURCE_SUFFIX = ":s3"  # aws:s3, and S3-compatible servers: minio:s3, ceph:s3
_SNS_TYPES = frozenset({"Notification", "SubscriptionConfirmation", "UnsubscribeConfirmation"})


@dataclass(frozen=True, slots=True)
class ParsedEvents:
    """Everything one payload asked for, in payload order.

    ``ignored`` counts records we understood but do not act on (tagging, ACL,
    replication, TestEvent, SNS confirmations, other buckets...) so the HTTP
    layer can answer ``{"accepted": N, "ignored": M}`` honestly.
    """

    changes: list[Change]
    ignored: int
    test_events: int
    subscribe_url: str | None
    untrusted_subscribe_url: bool


@dataclass(slots=True)
class _Acc:
    """Mutable accumulator threaded through the recursive walk."""

    source: ChangeSource
    received_at: float
    bucket: str | None
    changes: list[Change] = field(default_factory=list)
    ignored: int = 0
    test_events: int = 0
    seen: int = 0
    subscribe_url: str | None = None
    untrusted_subscribe_url: bool = False

    def count(self, n: int, path: str) -> None:
        """Charge ``n`` records against :data:`MAX_RECORDS` before doing any work on them."""
        self.seen += n
        if self.seen > MAX_RECORDS:
            raise EventParseError(
                f"{path or 'payload'}: too many records (more than {MAX_RECORDS} per payload)"
            )


# --------------------------------------------------------------------------- public API


def parse_body(
    body: bytes | bytearray | memoryview | str,
    source: ChangeSource,
    received_at: float | None = None,
    *,
    bucket: str | None = None,
) -> ParsedEvents:
    """Decode a raw HTTP/SQS body and parse it.

    ``str`` is accepted too because boto hands SQS message bodies over as text.
    A UTF-8 BOM is tolerated (some HTTP clients add one).
    """
    try:
        text = body if isinstance(body, str) else bytes(body).decode("utf-8-sig")
        payload = json.loads(text)
    except UnicodeDecodeError as exc:
        raise EventParseError(f"body is not valid JSON: not UTF-8 ({exc.reason})") from None
    except (ValueError, RecursionError, TypeError) as exc:
        # ValueError covers JSONDecodeError and int-digit limits; RecursionError
        # deeply nested arrays. Neither message echoes the body back.
        raise EventParseError(f"body is not valid JSON: {exc}") from None
    return parse_payload(payload, source, received_at, bucket=bucket)


def parse_payload(
    payload: object,
    source: ChangeSource,
    received_at: float | None = None,
    *,
    bucket: str | None = None,
) -> ParsedEvents:
    """Parse an already-decoded JSON value.

    ``bucket``, when given, is the bucket this daemon mirrors: records that name
    another bucket are ignored (an SNS topic or EventBridge bus may fan in
    several buckets). Records without a bucket name are kept. An access point
    (ARN or ``-s3alias`` alias) filters nothing: its events name the bucket
    behind it, which the configuration does not say.
    """
    if bucket is not None and (bucket.startswith("arn:") or bucket.endswith("-s3alias")):
        bucket = None
    acc = _Acc(
        source=source,
        received_at=time.time() if received_at is None else received_at,
        bucket=bucket,
    )
    _walk(payload, "", 0, acc)
    return ParsedEvents(
        changes=acc.changes,
        ignored=acc.ignored,
        test_events=acc.test_events,
        subscribe_url=acc.subscribe_url,
        untrusted_subscribe_url=acc.untrusted_subscribe_url,
    )


def is_trusted_sns_url(url: str) -> bool:
    """True only for ``https://sns.<region>.amazonaws.com[.cn]`` URLs.

    Strict on purpose: no userinfo (``https://sns...com@evil.com/``), no port but
    443, no look-alike suffix (``sns.us-east-1.amazonaws.com.evil.com``), no
    backslashes, whitespace or non-ASCII that different URL parsers (urllib here,
    yarl in aiohttp) might read differently.
    """
    if not isinstance(url, str) or not url or len(url) > 8192:
        return False
    if any(ch <= " " or ch == "\\" or ch >= "\x7f" for ch in url):
        return False
    try:
        parts = urlsplit(url)
        port = parts.port
    except ValueError:
        return False
    if parts.scheme != "https" or "@" in parts.netloc:
        return False
    host = parts.hostname
    if host is None or not _SNS_HOST_RE.fullmatch(host):
        return False
    return port in (None, 443)


# --------------------------------------------------------------------------- the walk


def _walk(value: object, path: str, depth: int, acc: _Acc) -> None:
    """Dispatch on the shape of ``value``; ``depth`` counts envelopes already opened."""
    if depth > MAX_NESTING:
        raise EventParseError(f"{path or 'payload'}: nested too deeply (more than {MAX_NESTING} envelopes)")
    if isinstance(value, list):
        # Batch items are envelopes, not records: only check the length up front so
        # a huge array is refused before any work; the records inside are counted.
        if not value:
            raise EventParseError(f"{path or 'payload'}: an empty array carries no event")
        if len(value) > MAX_RECORDS:
            raise EventParseError(
                f"{path or 'payload'}: too many records (more than {MAX_RECORDS} per payload)"
            )
        for i, item in enumerate(value):
            _walk_object(item, f"{path}[{i}]", depth + 1, acc)
        return
    _walk_object(value, path, depth, acc)


def _walk_object(value: object, path: str, depth: int, acc: _Acc) -> None:
    where = path or "payload"
    if not isinstance(value, dict):
        raise EventParseError(f"{where}: expected a JSON object, got {json_type(value)}")
    if depth > MAX_NESTING:
        raise EventParseError(f"{where}: nested too deeply (more than {MAX_NESTING} envelopes)")

    if "Records" in value:
        _walk_records(value["Records"], join(path, "Records"), depth, acc)
        return
    if value.get("Event") == "s3:TestEvent":
        acc.count(1, path)
        acc.ignored += 1
        acc.test_events += 1
        return
    sns_type = value.get("Type")
    if isinstance(sns_type, str) and sns_type in _SNS_TYPES:
        _walk_sns(value, path, depth, acc)
        return
    if "detail-type" in value and "source" in value:
        _walk_eventbridge(value, path, acc)
        return
    if "Type" in value:
        raise EventParseError(f"{join(path, 'Type')}: unrecognised SNS message type")
    raise EventParseError(
        f"{where}: unrecognised payload (expected S3 Records, an s3:TestEvent, "
        "an SNS envelope or an EventBridge event)"
    )


def _walk_records(records: object, path: str, depth: int, acc: _Acc) -> None:
    if not isinstance(records, list):
        raise EventParseError(f"{path}: expected an array, got {json_type(records)}")
    acc.count(len(records), path)
    for i, record in enumerate(records):
        rpath = f"{path}[{i}]"
        if not isinstance(record, dict):
            raise EventParseError(f"{rpath}: expected a JSON object, got {json_type(record)}")
        # S3 and SQS spell it eventSource, SNS-to-Lambda spells it EventSource.
        event_source = record.get("eventSource", record.get("EventSource"))
        if event_source is not None and not isinstance(event_source, str):
            raise EventParseError(f"{rpath}.eventSource: expected a string, got {json_type(event_source)}")
        if event_source == "aws:sns" or (event_source is None and "Sns" in record):
            sns = req_dict(record, "Sns", rpath)
            _walk_sns(sns, join(rpath, "Sns"), depth + 1, acc)
        elif event_source == "aws:sqs" or (event_source is None and "body" in record):
            body = req_str(record, "body", rpath)
            _walk_json_text(body, join(rpath, "body"), depth + 1, acc)
        elif (event_source is None and "s3" in record) or (
            event_source is not None and event_source.endswith(_S3_EVENT_SOURCE_SUFFIX)
        ):
            _walk_s3_record(record, rpath, acc)
        else:
            acc.ignored += 1


def _walk_s3_record(record: dict[object, object], path: str, acc: _Acc) -> None:
    event_name = req_str(record, "eventName", path)
    if event_name.startswith("s3:"):  # MinIO and some docs prefix it; S3 itself does not
        event_name = event_name[3:]
    category, _, action = event_name.partition(":")
    if category == "ObjectCreated" or (category == "ObjectRestore" and action == "Completed"):
        kind = ChangeKind.UPSERT
    elif category in ("ObjectRemoved", "LifecycleExpiration"):
        kind = ChangeKind.REMOVE
    else:
        # Tagging, ACL, replication, lifecycle transition, restore initiated/expired,
        # RRS lost, intelligent tiering: the bytes at the key are unchanged.
        acc.ignored += 1
        return

    s3 = req_dict(record, "s3", path)
    s3_path = join(path, "s3")
    if "bucket" in s3 and s3["bucket"] is not None:
        bucket_name = opt_str(req_dict(s3, "bucket", s3_path), "name", join(s3_path, "bucket"))
        if acc.bucket is not None and bucket_name is not None and bucket_name != acc.bucket:
            acc.ignored += 1
            return
    obj = req_dict(s3, "object", s3_path)
    obj_path = join(s3_path, "object")
    acc.changes.append(
        Change(
            key=req_key(obj, "key", obj_path),
            kind=kind,
            source=acc.source,
            etag=normalize_etag(opt_str(obj, "eTag", obj_path)),
            size=opt_size(obj, "size", obj_path),
            sequencer=opt_sequencer(obj, "sequencer", obj_path),
            version_id=opt_str(obj, "versionId", obj_path),
            delete_marker=action == "DeleteMarkerCreated",
            received_at=acc.received_at,
        )
    )


def _walk_sns(envelope: dict[object, object], path: str, depth: int, acc: _Acc) -> None:
    # Inside a Lambda "Sns" record Type is always present, but be lenient there.
    sns_type = envelope.get("Type", "Notification")
    if sns_type == "Notification":
        message = req_str(envelope, "Message", path)
        _walk_json_text(message, join(path, "Message"), depth + 1, acc)
    elif sns_type == "SubscriptionConfirmation":
        acc.count(1, path)
        acc.ignored += 1
        url = req_str(envelope, "SubscribeURL", path)
        if _is_confirm_url(url):
            if acc.subscribe_url is None:
                acc.subscribe_url = url
        else:
            acc.untrusted_subscribe_url = True
    elif sns_type == "UnsubscribeConfirmation":
        acc.count(1, path)
        acc.ignored += 1
    else:
        raise EventParseError(f"{join(path, 'Type')}: unrecognised SNS message type")


def _walk_json_text(text: str, path: str, depth: int, acc: _Acc) -> None:
    """An envelope whose payload is JSON *text* (SNS ``Message``, SQS ``body``)."""
    if depth > MAX_NESTING:
        raise EventParseError(f"{path}: nested too deeply (more than {MAX_NESTING} envelopes)")
    try:
        inner = json.loads(text)
    except (ValueError, RecursionError) as exc:
        raise EventParseError(f"{path}: not valid JSON ({exc})") from None
    _walk(inner, path, depth, acc)


# EventBridge detail-type → (kind) for the types that concern the bytes at a key.
_EVENTBRIDGE_KINDS = {
    "Object Created": ChangeKind.UPSERT,
    "Object Deleted": ChangeKind.REMOVE,
    "Object Restore Completed": ChangeKind.UPSERT,
}


def _walk_eventbridge(event: dict[object, object], path: str, acc: _Acc) -> None:
    acc.count(1, path)
    if event.get("source") != "aws.s3":
        acc.ignored += 1  # a broad EventBridge rule may forward other services too
        return
    detail_type = req_str(event, "detail-type", path)
    kind = _EVENTBRIDGE_KINDS.get(detail_type)
    if kind is None:
        acc.ignored += 1  # tags, ACL, storage class, restore initiated/expired...
        return
    detail = req_dict(event, "detail", path)
    dpath = join(path, "detail")
    if "bucket" in detail and detail["bucket"] is not None:
        bucket_name = opt_str(req_dict(detail, "bucket", dpath), "name", join(dpath, "bucket"))
        if acc.bucket is not None and bucket_name is not None and bucket_name != acc.bucket:
            acc.ignored += 1
            return
    obj = req_dict(detail, "object", dpath)
    opath = join(dpath, "object")
    deletion_type = opt_str(detail, "deletion-type", dpath)
    # AWS documents "etag" and "version-id"; moto emits "eTag". Accept both spellings.
    etag = opt_str(obj, "etag", opath) if "etag" in obj else opt_str(obj, "eTag", opath)
    version_id = (
        opt_str(obj, "version-id", opath) if "version-id" in obj else opt_str(obj, "versionId", opath)
    )
    acc.changes.append(
        Change(
            # Key encoding: the S3 notification docs say keys are URL-encoded; the
            # EventBridge docs do not say either way, and moto sends EventBridge keys
            # raw. We decode the same way as S3 records so that every source agrees
            # on one rule. If EventBridge actually sends raw keys, the only keys that
            # decode differently are those containing "+" or "%XX"; such a hint then
            # names a key that does not exist, S3 says 404, nothing is written or
            # deleted wrongly, and the periodic reconcile fetches the real key.
            key=req_key(obj, "key", opath),
            kind=kind,
            source=acc.source,
            etag=normalize_etag(etag),
            size=opt_size(obj, "size", opath),
            sequencer=opt_sequencer(obj, "sequencer", opath),
            version_id=version_id,
            delete_marker=kind is ChangeKind.REMOVE and deletion_type == "Delete Marker Created",
            received_at=acc.received_at,
        )
    )


def _is_confirm_url(url: str) -> bool:
    """A SubscribeURL we are willing to GET: real SNS, and only ConfirmSubscription."""
    if not is_trusted_sns_url(url):
        return False
    try:
        action = parse_qs(urlsplit(url).query).get("Action")
    except ValueError:
        return False
    return action == ["ConfirmSubscription"]
