"""Forward S3 event notifications from AWS Lambda to a running s3sync daemon.

S3 can notify a Lambda function (directly, through SNS, or through an SQS queue)
but cannot reach a daemon on a private host by itself. This handler is the bridge:
it unwraps whatever envelope the notification arrived in and POSTs the S3 event
JSON to ``{API_ENDPOINT}/api/v1/s3-notification``, signed with the shared secret.

It depends on the Python standard library only, so the deployment package is this
one file: no layer, no vendored wheels, nothing to patch.

Delivery outcomes and who handles them::

    2xx ............................ delivered
    connection error / timeout,
    5xx, 429 ....................... retried here: exponential backoff, full jitter
                                     (429/503 ``Retry-After`` honoured, capped)
    other 4xx ...................... never retried (a bad secret stays bad)
    still failing .................. direct/SNS invocation: raise, so Lambda's own
                                     async retries and dead-letter queue take over;
                                     SQS batch: report the record in
                                     ``batchItemFailures`` so SQS redelivers it
                                     (and finally moves it to the queue's DLQ)

Exception tree::

    ForwarderError
    ├── ConfigError        environment missing or invalid
    ├── MalformedEventError  the invocation payload is not an S3 notification
    └── DeliveryError      the daemon did not accept the payload
        └── RejectedError  the daemon answered a non-retryable 4xx

Environment (read on every invocation, never at import):

=====================  =======  ====================================================
``API_ENDPOINT``       —        base URL of the daemon, e.g. ``https://mirror:8888``
``NOTIFICATION_SECRET`` —       HMAC secret shared with ``api.notification_secret``
``API_TOKEN``          —        bearer token (``api.token``), used when no secret
``TIMEOUT_SECONDS``    30       per-request timeout
``RETRY_ATTEMPTS``     3        retries after the first attempt
``RETRY_BASE_SECONDS`` 0.5      backoff base; the n-th retry waits U(0, base·2ⁿ⁻¹)
``RETRY_MAX_SECONDS``  20       cap for one backoff or ``Retry-After`` wait
``LOG_LEVEL``          INFO     level of the JSON log lines written to stdout
=====================  =======  ====================================================
"""

from __future__ import annotations

import email.utils
import hashlib
import hmac
import http.client
import json
import logging
import os
import random
import socket
import ssl
import sys
import time
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

__all__ = [
    "NOTIFICATION_PATH",
    "ConfigError",
    "DeliveryError",
    "ForwarderConfig",
    "ForwarderError",
    "MalformedEventError",
    "RejectedError",
    "forward",
    "lambda_handler",
    "sign",
]

NOTIFICATION_PATH = "/api/v1/s3-notification"
USER_AGENT = "s3sync-lambda-forwarder/1"

# Keep this much of the Lambda's remaining time free so that the handler can
# still return ``batchItemFailures`` (or raise cleanly) instead of being killed.
_DEADLINE_MARGIN_SECONDS = 2.0
# An attempt needs at least this much time to be worth starting.
_MIN_ATTEMPT_SECONDS = 1.0
# How much of an error response is read to extract the daemon's message.
_MAX_ERROR_BODY = 64 * 1024

# 4xx answers that are about this one payload rather than about the endpoint or
# the credentials: in an SQS batch, the other records are still worth trying.
_PAYLOAD_SPECIFIC_STATUSES = frozenset({400, 413, 415, 422})

# Transport failures worth another attempt. ``URLError`` wraps socket errors
# raised while connecting; errors while reading surface unwrapped.
_RETRYABLE_EXCEPTIONS: tuple[type[BaseException], ...] = (
    urllib.error.URLError,
    http.client.HTTPException,
    ConnectionError,
    TimeoutError,
    socket.timeout,
    OSError,
)


class ForwarderError(Exception):
    """Base of every error this module raises on purpose."""


class ConfigError(ForwarderError):
    """The function's environment is missing or invalid; fix the deployment."""


class MalformedEventError(ForwarderError):
    """The payload is not an S3 notification in any envelope we understand."""


class DeliveryError(ForwarderError):
    """The daemon did not accept the payload (after all allowed attempts)."""

    def __init__(self, message: str, *, status: int | None = None, attempts: int = 0) -> None:
        super().__init__(message)
        self.status = status
        self.attempts = attempts


class RejectedError(DeliveryError):
    """The daemon answered with a 4xx that another attempt would not change."""

    def __init__(self, message: str, *, status: int, attempts: int, daemon_message: str | None) -> None:
        super().__init__(message, status=status, attempts=attempts)
        self.daemon_message = daemon_message


# --------------------------------------------------------------------------- config


@dataclass(frozen=True)
class ForwarderConfig:
    """Settings for one invocation, parsed from the environment."""

    url: str
    secret: bytes | None = field(default=None, repr=False)
    token: str | None = field(default=None, repr=False)
    timeout: float = 30.0
    retry_attempts: int = 3
    retry_base: float = 0.5
    retry_max: float = 20.0

    @classmethod
    def from_env(cls, env: Mapping[str, str]) -> ForwarderConfig:
        """Validate everything up front so a typo fails loudly on the first event."""
        base = env.get("API_ENDPOINT", "").strip()
        if not base:
            raise ConfigError("API_ENDPOINT is not set (base URL of the s3sync daemon)")
        parsed = urllib.parse.urlsplit(base)
        if parsed.scheme not in ("http", "https") or not parsed.netloc:
            raise ConfigError(f"API_ENDPOINT must be an http(s) URL, got {_safe_url(base)!r}")
        path = parsed.path.rstrip("/")
        # Accept the full notification URL too: it is an easy mistake to make.
        if not path.endswith(NOTIFICATION_PATH):
            path += NOTIFICATION_PATH
        url = urllib.parse.urlunsplit((parsed.scheme, parsed.netloc, path, parsed.query, ""))

        secret = env.get("NOTIFICATION_SECRET", "")
        token = env.get("API_TOKEN", "").strip()
        return cls(
            url=url,
            secret=secret.encode("utf-8") if secret else None,
            token=token or None,
            timeout=_number(env, "TIMEOUT_SECONDS", 30.0, minimum=0.1),
            retry_attempts=int(_number(env, "RETRY_ATTEMPTS", 3, minimum=0, integer=True)),
            retry_base=_number(env, "RETRY_BASE_SECONDS", 0.5, minimum=0.0),
            retry_max=_number(env, "RETRY_MAX_SECONDS", 20.0, minimum=0.0),
        )

    @property
    def auth_mode(self) -> str:
        if self.secret is not None:
            return "hmac"
        return "bearer" if self.token is not None else "none"


def _number(
    env: Mapping[str, str], name: str, default: float, *, minimum: float, integer: bool = False
) -> float:
    raw = env.get(name, "").strip()
    if not raw:
        return default
    try:
        value = float(int(raw)) if integer else float(raw)
    except ValueError:
        kind = "an integer" if integer else "a number"
        raise ConfigError(f"{name} must be {kind}, got {raw!r}") from None
    if value < minimum or value != value:  # NaN compares unequal to itself
        raise ConfigError(f"{name} must be >= {minimum}, got {raw!r}")
    return value


def _safe_url(url: str) -> str:
    """The URL without user-info, which could carry credentials, for messages and logs."""
    parts = urllib.parse.urlsplit(url)
    netloc = parts.netloc.rpartition("@")[2]
    return urllib.parse.urlunsplit((parts.scheme, netloc, parts.path, "", ""))


# --------------------------------------------------------------------------- signing


def sign(secret: bytes, timestamp: int, body: bytes) -> str:
    """The ``X-S3Sync-Signature`` value: HMAC-SHA256 over ``"<timestamp>." + body``."""
    mac = hmac.new(secret, str(timestamp).encode("ascii") + b"." + body, hashlib.sha256)
    return "sha256=" + mac.hexdigest()


def _headers(config: ForwarderConfig, body: bytes, now: float) -> dict[str, str]:
    headers = {"Content-Type": "application/json", "User-Agent": USER_AGENT}
    if config.secret is not None:
        timestamp = int(now)
        headers["X-S3Sync-Timestamp"] = str(timestamp)
        headers["X-S3Sync-Signature"] = sign(config.secret, timestamp, body)
    elif config.token is not None:
        headers["Authorization"] = f"Bearer {config.token}"
    return headers


# --------------------------------------------------------------------------- logging


class _StdoutJsonHandler(logging.Handler):
    """Writes each record's message (already a JSON object) as one stdout line.

    Looks ``sys.stdout`` up at emit time so captured output in tests works, and
    does not go through the Lambda runtime's root handler, which would prefix
    every line with level and request id and break JSON parsing in Logs Insights.
    """

    def emit(self, record: logging.LogRecord) -> None:
        try:
            sys.stdout.write(record.getMessage() + "\n")
            sys.stdout.flush()
        except Exception:  # pragma: no cover - logging must never break delivery
            self.handleError(record)


def _logger() -> logging.Logger:
    logger = logging.getLogger("s3sync.lambda_forwarder")
    if not any(isinstance(h, _StdoutJsonHandler) for h in logger.handlers):
        logger.addHandler(_StdoutJsonHandler())
        logger.propagate = False
    level = os.environ.get("LOG_LEVEL", "INFO").upper()
    logger.setLevel(level if level in logging.getLevelNamesMapping() else "INFO")
    return logger


@dataclass
class _Log:
    """Binds the invocation's request id to every line; the only place logs are written."""

    logger: logging.Logger
    request_id: str | None

    def __call__(self, level: int, event: str, **fields: Any) -> None:
        if not self.logger.isEnabledFor(level):
            return
        line: dict[str, Any] = {
            "ts": round(time.time(), 3),
            "level": logging.getLevelName(level).lower(),
            "event": event,
        }
        if self.request_id:
            line["request_id"] = self.request_id
        line.update(fields)
        self.logger.log(level, json.dumps(line, default=str, separators=(",", ":")))


# --------------------------------------------------------------------------- payloads


@dataclass(frozen=True)
class _Payload:
    """One POST body and what it carries, for logging."""

    body: bytes
    keys: int
    kind: str


def _encode(document: Mapping[str, Any]) -> bytes:
    return json.dumps(document, separators=(",", ":"), ensure_ascii=False).encode("utf-8")


def _is_s3_event(doc: Any) -> bool:
    return (
        isinstance(doc, dict)
        and isinstance(doc.get("Records"), list)
        and all(
            isinstance(r, dict) and (r.get("eventSource") or r.get("EventSource")) == "aws:s3"
            for r in doc["Records"]
        )
    )


def _is_test_event(doc: Any) -> bool:
    return isinstance(doc, dict) and doc.get("Event") == "s3:TestEvent"


def _is_eventbridge_event(doc: Any) -> bool:
    return (
        isinstance(doc, dict)
        and doc.get("source") == "aws.s3"
        and isinstance(doc.get("detail-type"), str)
        and isinstance(doc.get("detail"), dict)
    )


def _is_sns_envelope(doc: Any) -> bool:
    return isinstance(doc, dict) and isinstance(doc.get("Type"), str) and "TopicArn" in doc


def _payloads_from_document(doc: Any) -> list[_Payload]:
    """Payloads the daemon understands, from one S3 event in any of its wrappings.

    SNS envelopes are unwrapped so that the daemon sees the S3 event itself; the
    other forms (S3 event, test event, EventBridge event) are forwarded as they
    are, since the daemon accepts each of them.
    """
    if _is_sns_envelope(doc):
        if doc.get("Type") != "Notification":
            # SubscriptionConfirmation etc.: the daemon knows what to do with them.
            return [_Payload(_encode(doc), 0, "sns-" + str(doc["Type"]))]
        message = doc.get("Message")
        if not isinstance(message, str):
            raise MalformedEventError("SNS notification without a string Message")
        return _payloads_from_document(_loads(message, "SNS Message"))
    if _is_s3_event(doc):
        return [_Payload(_encode({"Records": doc["Records"]}), len(doc["Records"]), "s3")]
    if _is_test_event(doc):
        return [_Payload(_encode(doc), 0, "s3-test")]
    if _is_eventbridge_event(doc):
        return [_Payload(_encode(doc), 1, "eventbridge")]
    raise MalformedEventError("not an S3 event, S3 test event, EventBridge or SNS notification")


def _loads(text: str, what: str) -> Any:
    try:
        return json.loads(text)
    except (TypeError, ValueError) as exc:
        raise MalformedEventError(f"{what} is not valid JSON: {exc}") from None


def _direct_payloads(event: Mapping[str, Any]) -> list[_Payload]:
    """Payloads for a direct (S3 or SNS) invocation: all S3 records in one POST."""
    records = event.get("Records")
    if not isinstance(records, list):
        return _payloads_from_document(event)
    s3_records: list[Any] = []
    others: list[_Payload] = []
    for record in records:
        if not isinstance(record, dict):
            raise MalformedEventError("a record is not a JSON object")
        source = record.get("eventSource") or record.get("EventSource")
        if source == "aws:s3":
            s3_records.append(record)
        elif source == "aws:sns":
            sns = record.get("Sns")
            if not isinstance(sns, dict) or not isinstance(sns.get("Message"), str):
                raise MalformedEventError("SNS record without Sns.Message")
            for payload in _payloads_from_document(_loads(sns["Message"], "Sns.Message")):
                if payload.kind == "s3":
                    s3_records.extend(json.loads(payload.body)["Records"])
                else:
                    others.append(payload)
        else:
            raise MalformedEventError(f"unsupported record source {source!r}")
    payloads = others
    if s3_records:
        payloads.insert(0, _Payload(_encode({"Records": s3_records}), len(s3_records), "s3"))
    return payloads


def _is_sqs_batch(event: Mapping[str, Any]) -> bool:
    records = event.get("Records")
    return (
        isinstance(records, list)
        and bool(records)
        and all(isinstance(r, dict) and r.get("eventSource") == "aws:sqs" for r in records)
    )


# --------------------------------------------------------------------------- delivery


@dataclass
class _Sender:
    """Delivers payloads with retries, within the time the invocation has left."""

    config: ForwarderConfig
    log: _Log
    sleep: Callable[[float], None]
    deadline: float | None  # time.monotonic() value; None when unbounded
    rng: random.Random = field(default_factory=random.Random)

    def __post_init__(self) -> None:
        self._opener = urllib.request.build_opener(_NoRedirect())

    def deliver(self, payload: _Payload) -> dict[str, Any]:
        total = 1 + self.config.retry_attempts
        last_problem = "no attempt made"
        last_status: int | None = None
        started = time.monotonic()
        for attempt in range(1, total + 1):
            timeout = self._attempt_timeout()
            if timeout is None:
                raise self._give_up(payload, attempt - 1, last_status, last_problem, "out of time")
            t0 = time.monotonic()
            retry_after: float | None = None
            try:
                status, body, retry_after_header = self._post(payload.body, timeout)
            except _RETRYABLE_EXCEPTIONS as exc:
                status, body = None, b""
                last_problem = _describe_exception(exc)
                if _is_certificate_error(exc):
                    # A wrong certificate stays wrong; retrying only burns time.
                    raise self._give_up(
                        payload, attempt, None, last_problem, "TLS verification failed"
                    ) from exc
            else:
                retry_after = _retry_after(retry_after_header, time.time())
                last_problem = f"HTTP {status}"
            last_status = status
            fields: dict[str, Any] = {
                "attempt": attempt,
                "of": total,
                "status": status,
                "keys": payload.keys,
                "kind": payload.kind,
                "duration_ms": round((time.monotonic() - t0) * 1000, 1),
            }
            if status is not None and 200 <= status < 300:
                self.log(
                    logging.INFO,
                    "forward.delivered",
                    **fields,
                    total_ms=round((time.monotonic() - started) * 1000, 1),
                )
                return _json_object(body)
            if status is not None and status != 429 and status < 500:
                message = _daemon_message(body)
                self.log(logging.ERROR, "forward.rejected", **fields, message=message)
                hint = _REJECTION_HINTS.get(status, "")
                raise RejectedError(
                    f"s3sync daemon rejected the notification: HTTP {status}"
                    + (f" ({message})" if message else "")
                    + (f"; {hint}" if hint else "")
                    + "; not retried",
                    status=status,
                    attempts=attempt,
                    daemon_message=message,
                )
            if attempt == total:
                self.log(logging.WARNING, "forward.attempt_failed", **fields, error=last_problem)
                break
            delay = self._backoff(attempt, retry_after)
            self.log(
                logging.WARNING,
                "forward.retry",
                **fields,
                error=last_problem,
                retry_in_ms=round(delay * 1000, 1),
            )
            if not self._has_time_for(delay):
                raise self._give_up(payload, attempt, last_status, last_problem, "out of time")
            self.sleep(delay)
        raise self._give_up(payload, total, last_status, last_problem, "retries exhausted")

    def _post(self, body: bytes, timeout: float) -> tuple[int, bytes, str | None]:
        """One POST: status, body and the ``Retry-After`` header."""
        # Sign per attempt: a retry minutes later must carry a fresh timestamp.
        headers = _headers(self.config, body, time.time())
        request = urllib.request.Request(self.config.url, data=body, headers=headers, method="POST")
        try:
            with self._opener.open(request, timeout=timeout) as response:
                return response.status, response.read(), response.headers.get("Retry-After")
        except urllib.error.HTTPError as exc:
            try:
                data = exc.read(_MAX_ERROR_BODY)
            except (OSError, http.client.HTTPException):
                data = b""
            finally:
                exc.close()
            return exc.code, data, exc.headers.get("Retry-After")

    def _backoff(self, attempt: int, retry_after: float | None) -> float:
        """Full jitter (AWS Architecture Blog), unless the daemon said how long to wait."""
        cap = self.config.retry_max
        if retry_after is not None:
            return min(retry_after, cap)
        return self.rng.uniform(0.0, min(cap, self.config.retry_base * 2 ** (attempt - 1)))

    def _remaining(self) -> float | None:
        if self.deadline is None:
            return None
        return self.deadline - time.monotonic()

    def _attempt_timeout(self) -> float | None:
        remaining = self._remaining()
        if remaining is None:
            return self.config.timeout
        if remaining < _MIN_ATTEMPT_SECONDS:
            return None
        return min(self.config.timeout, remaining)

    def _has_time_for(self, delay: float) -> bool:
        remaining = self._remaining()
        return remaining is None or remaining - delay >= _MIN_ATTEMPT_SECONDS

    def _give_up(
        self, payload: _Payload, attempts: int, status: int | None, problem: str, why: str
    ) -> DeliveryError:
        self.log(
            logging.ERROR,
            "forward.failed",
            attempts=attempts,
            status=status,
            keys=payload.keys,
            kind=payload.kind,
            error=problem,
            reason=why,
        )
        return DeliveryError(
            f"could not deliver to {_safe_url(self.config.url)} after {attempts} attempt(s), "
            f"{why}: {problem}",
            status=status,
            attempts=attempts,
        )


_REJECTION_HINTS = {
    401: "check that NOTIFICATION_SECRET (or API_TOKEN) matches the daemon's "
    "api.notification_secret (or api.token) and that the Lambda clock is sane",
    403: "check the daemon's authentication settings",
    404: "check API_ENDPOINT: it must be the daemon's base URL",
}


class _NoRedirect(urllib.request.HTTPRedirectHandler):
    """urllib turns a redirected POST into a body-less GET; a 3xx is a config error."""

    def redirect_request(self, *args: Any, **kwargs: Any) -> None:
        return None


def _retry_after(value: str | None, now: float) -> float | None:
    if not value:
        return None
    value = value.strip()
    try:
        return max(0.0, float(value))
    except ValueError:
        pass
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError, IndexError):
        return None
    return max(0.0, when.timestamp() - now)


def _is_certificate_error(exc: BaseException) -> bool:
    reason = getattr(exc, "reason", None)
    return isinstance(exc, ssl.SSLCertVerificationError) or isinstance(reason, ssl.SSLCertVerificationError)


def _describe_exception(exc: BaseException) -> str:
    reason = getattr(exc, "reason", None)
    inner = reason if isinstance(reason, BaseException) else exc
    text = str(inner) or type(inner).__name__
    return f"{type(inner).__name__}: {text}"


def _daemon_message(body: bytes) -> str | None:
    """The ``message`` of the daemon's error JSON, else a short excerpt of the body."""
    try:
        doc = json.loads(body)
    except (TypeError, ValueError):
        text = body[:200].decode("utf-8", "replace").strip()
        return text or None
    if isinstance(doc, dict):
        message = doc.get("message") or doc.get("error")
        return str(message) if message is not None else None
    return None


def _json_object(body: bytes) -> dict[str, Any]:
    try:
        doc = json.loads(body) if body else {}
    except ValueError:
        return {}
    return doc if isinstance(doc, dict) else {}


# --------------------------------------------------------------------------- entry points


def _deadline_from(context: Any) -> float | None:
    remaining_ms = getattr(context, "get_remaining_time_in_millis", None)
    if not callable(remaining_ms):
        return None
    try:
        remaining = float(remaining_ms()) / 1000.0
    except (TypeError, ValueError):
        return None
    return time.monotonic() + remaining - _DEADLINE_MARGIN_SECONDS


def forward(
    event: Mapping[str, Any],
    context: Any = None,
    *,
    env: Mapping[str, str] | None = None,
    sleep: Callable[[float], None] = time.sleep,
    rng: random.Random | None = None,
) -> dict[str, Any]:
    """``lambda_handler`` with its collaborators injectable (environment, sleep, randomness)."""
    config = ForwarderConfig.from_env(os.environ if env is None else env)
    log = _Log(_logger(), getattr(context, "aws_request_id", None))
    sender = _Sender(config, log, sleep, _deadline_from(context), rng or random.Random())
    if config.auth_mode == "none":
        log(
            logging.WARNING,
            "forward.unauthenticated",
            message="neither NOTIFICATION_SECRET nor API_TOKEN is set",
        )
    if not isinstance(event, Mapping):
        raise MalformedEventError(f"event is a {type(event).__name__}, not a JSON object")
    if _is_sqs_batch(event):
        return _forward_batch(event["Records"], sender, log)
    return _forward_direct(event, sender, log)


def lambda_handler(event: Mapping[str, Any], context: Any) -> dict[str, Any]:
    """AWS Lambda entry point (``handler.lambda_handler``)."""
    return forward(event, context)


def _forward_direct(event: Mapping[str, Any], sender: _Sender, log: _Log) -> dict[str, Any]:
    started = time.monotonic()
    try:
        payloads = _direct_payloads(event)
    except MalformedEventError as exc:
        log(logging.ERROR, "forward.malformed", error=str(exc))
        raise
    responses = [sender.deliver(p) for p in payloads]  # raises: Lambda retries, then DLQ
    keys = sum(p.keys for p in payloads)
    log(
        logging.INFO,
        "invocation.done",
        mode="direct",
        posts=len(payloads),
        keys=keys,
        duration_ms=round((time.monotonic() - started) * 1000, 1),
    )
    return {"delivered": len(payloads), "keys": keys, "responses": responses}


def _forward_batch(records: list[Any], sender: _Sender, log: _Log) -> dict[str, Any]:
    """Deliver each SQS message on its own and report the ones that failed.

    After a failure that is about the endpoint rather than the message (daemon
    down, bad secret, time running out), the rest of the batch is reported as
    failed without trying: each would only burn its own retries and the
    invocation's time, and SQS redelivers them all anyway.
    """
    started = time.monotonic()
    failures: list[dict[str, str]] = []
    broken: str | None = None
    delivered = 0
    for record in records:
        message_id = str(record.get("messageId", ""))
        if broken is not None:
            failures.append({"itemIdentifier": message_id})
            continue
        try:
            body = record.get("body")
            if not isinstance(body, str):
                raise MalformedEventError("SQS record without a string body")
            payloads = _payloads_from_document(_loads(body, "SQS body"))
            for payload in payloads:
                sender.deliver(payload)
            delivered += 1
        except MalformedEventError as exc:
            log(logging.ERROR, "batch.malformed", message_id=message_id, error=str(exc))
            failures.append({"itemIdentifier": message_id})
        except DeliveryError as exc:
            failures.append({"itemIdentifier": message_id})
            if exc.status not in _PAYLOAD_SPECIFIC_STATUSES:
                broken = str(exc)
    if broken is not None:
        log(logging.ERROR, "batch.aborted", failed=len(failures), reason=broken)
    log(
        logging.INFO,
        "invocation.done",
        mode="sqs",
        messages=len(records),
        delivered=delivered,
        failed=len(failures),
        duration_ms=round((time.monotonic() - started) * 1000, 1),
    )
    return {"batchItemFailures": failures}
