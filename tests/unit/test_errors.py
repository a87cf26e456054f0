"""Error classification: every failure maps to one branch of the tree, once, at the boundary.

The exceptions here are the real ones (botocore's ``ClientError`` built from the
response dict botocore itself produces, aiohttp's transport errors, real
``OSError`` subclasses), so a change in how a library spells a failure shows up
as a failing test rather than as a silently permanent error in production.
"""

from __future__ import annotations

import asyncio
import errno

import aiohttp
import pytest
from botocore.exceptions import (
    ClientError,
    ConnectionClosedError,
    ConnectTimeoutError,
    EndpointConnectionError,
    FlexibleChecksumError,
    NoCredentialsError,
    ReadTimeoutError,
)
from hypothesis import given
from hypothesis import strategies as st

from s3sync.errors import (
    ArchivedError,
    ChangedDuringTransferError,
    FatalError,
    IntegrityError,
    LocalIOError,
    NotFoundError,
    PermanentError,
    RetriesExceededError,
    RetryableError,
    S3SyncError,
    UnsafeKeyError,
)
from s3sync.s3.errors import classify, classify_status
from s3sync.s3.http_parse import HttpError


def client_error(
    code: str, status: int, message: str = "", *, headers: dict[str, str] | None = None, **extra: str
) -> ClientError:
    """A ClientError shaped exactly as botocore builds it from an S3 error response."""
    response = {
        "Error": {"Code": code, "Message": message, **extra},
        "ResponseMetadata": {"HTTPStatusCode": status, "HTTPHeaders": headers or {}},
    }
    return ClientError(response, "GetObject")


class TestClientErrorCodes:
    """botocore ClientErrors are classified by their S3 error code and HTTP status."""

    @pytest.mark.parametrize(
        ("code", "status"),
        [
            ("SlowDown", 503),
            ("ServiceUnavailable", 503),
            ("InternalError", 500),
            ("RequestTimeout", 400),
            ("RequestTimeTooSkewed", 403),
            ("Throttling", 400),
            ("TooManyRequests", 429),
        ],
    )
    def test_transient_codes_are_retryable(self, code: str, status: int) -> None:
        """Throttling, 5xx and clock-skew codes are retried, even when their status is a 4xx."""
        assert type(classify(client_error(code, status))) is RetryableError

    @pytest.mark.parametrize(
        "code", ["InvalidAccessKeyId", "SignatureDoesNotMatch", "AccessDenied", "ExpiredToken"]
    )
    def test_credential_codes_are_fatal(self, code: str) -> None:
        """Bad or expired credentials stop everything: no key can succeed until an operator acts."""
        assert type(classify(client_error(code, 403))) is FatalError

    def test_no_such_key_is_not_found(self) -> None:
        """NoSuchKey is a per-item NotFoundError, not a fatal one."""
        assert type(classify(client_error("NoSuchKey", 404))) is NotFoundError

    def test_head_404_with_numeric_code_is_not_found(self) -> None:
        """A HEAD 404 has no body, so botocore's code is just "404"; it is still NotFound."""
        assert type(classify(client_error("404", 404))) is NotFoundError

    def test_numeric_code_without_status_uses_the_code(self) -> None:
        """When the metadata has no status, a numeric code stands in for it."""
        exc = ClientError({"Error": {"Code": "503", "Message": ""}}, "HeadObject")
        assert type(classify(exc)) is RetryableError

    def test_no_such_bucket_is_fatal_and_names_the_bucket(self) -> None:
        """A missing bucket is fatal even though its status is 404, and the message names it."""
        err = classify(client_error("NoSuchBucket", 404, "gone", BucketName="photos"))
        assert type(err) is FatalError
        assert "'photos'" in str(err)

    def test_precondition_failed_means_changed_during_transfer(self) -> None:
        """A 412 on an If-Match range means the object was replaced mid-download: retry."""
        err = classify(client_error("PreconditionFailed", 412))
        assert type(err) is ChangedDuringTransferError
        assert isinstance(err, RetryableError)

    def test_wrong_region_message_names_both_regions(self) -> None:
        """S3's "region 'x' is wrong; expecting 'y'" becomes one line naming the real region."""
        msg = "the region 'us-east-1' is wrong; expecting 'eu-west-1'"
        err = classify(client_error("AuthorizationHeaderMalformed", 400, msg, Bucket="b"))
        assert type(err) is FatalError
        assert "'eu-west-1'" in str(err) and "'us-east-1'" in str(err)

    def test_redirect_with_region_header_is_fatal(self) -> None:
        """A 301 with x-amz-bucket-region is a wrong-region set-up mistake, not a per-item error."""
        err = classify(client_error("PermanentRedirect", 301, headers={"x-amz-bucket-region": "ap-south-1"}))
        assert type(err) is FatalError
        assert "ap-south-1" in str(err)

    def test_unknown_4xx_code_is_permanent(self) -> None:
        """An unrecognised client error fails the item only."""
        assert type(classify(client_error("InvalidRequest", 400))) is PermanentError

    def test_invalid_object_state_is_archived(self) -> None:
        """403 InvalidObjectState (Glacier, not restored) is an ArchivedError: a skip, not a failure."""
        err = classify(client_error("InvalidObjectState", 403))
        assert type(err) is ArchivedError and err.code == "archived"

    def test_cause_is_the_original_exception(self) -> None:
        """The classified error keeps botocore's exception as its cause for the logs."""
        original = client_error("SlowDown", 503)
        assert classify(original).__cause__ is original


class TestHttpStatuses:
    """classify_status maps a bare HTTP status (the lean path) to the same tree."""

    @pytest.mark.parametrize("status", [500, 502, 503, 504, 599, 429])
    def test_server_errors_and_429_are_retryable(self, status: int) -> None:
        """Every 5xx and 429 is transient."""
        assert type(classify_status(status)) is RetryableError

    def test_404_is_not_found(self) -> None:
        """A bare 404 means the object is gone."""
        assert type(classify_status(404)) is NotFoundError

    def test_412_is_changed(self) -> None:
        """A bare 412 means the If-Match etag no longer holds."""
        assert type(classify_status(412)) is ChangedDuringTransferError

    @pytest.mark.parametrize("status", [400, 401, 403, 405, 416])
    def test_other_client_errors_are_permanent(self, status: int) -> None:
        """4xx without a known code fail the item, not the daemon."""
        assert type(classify_status(status)) is PermanentError

    def test_301_without_region_information_is_permanent(self) -> None:
        """A redirect we cannot explain is reported as a failure of the item."""
        assert type(classify_status(301)) is PermanentError

    def test_message_carries_status_code_and_text(self) -> None:
        """The message keeps status, code and S3's text so logs are actionable."""
        assert str(classify_status(503, "SlowDown", "Please reduce")) == "503 SlowDown Please reduce"

    @given(st.integers(min_value=0, max_value=999), st.text(max_size=30), st.text(max_size=60))
    def test_never_raises_and_always_classifies(self, status: int, code: str, message: str) -> None:
        """Any status, code and message (hostile server text) yields one of our errors."""
        assert isinstance(classify_status(status, code, message), S3SyncError)

    @given(st.integers(min_value=500, max_value=599), st.text(max_size=30))
    def test_any_5xx_is_retryable_unless_bucket_or_region_is_wrong(self, status: int, code: str) -> None:
        """Whatever code a 5xx carries, it is retried (the set-up mistakes aside)."""
        err = classify_status(status, code)
        if code in ("NoSuchBucket", "NoSuchKey", "NotFound", "PreconditionFailed"):
            return
        assert isinstance(err, RetryableError)


class TestOSErrors:
    """Local failures: a full or read-only disk fails the item, a flaky socket is retried."""

    @pytest.mark.parametrize("code", [errno.ENOSPC, errno.EDQUOT, errno.EROFS, errno.EACCES, errno.EPERM])
    def test_disk_and_permission_errors_are_local_io(self, code: int) -> None:
        """Disk full, quota, read-only or permission problems are LocalIOError with the file name."""
        err = classify(OSError(code, "boom", "/mirror/a.txt"))
        assert type(err) is LocalIOError
        assert "/mirror/a.txt" in str(err)

    def test_permission_error_subclass_is_local_io(self) -> None:
        """PermissionError carries EACCES and is classified by errno, not by class."""
        assert type(classify(PermissionError(errno.EACCES, "denied", "/x"))) is LocalIOError

    @pytest.mark.parametrize(
        "exc",
        [
            ConnectionResetError(errno.ECONNRESET, "reset by peer"),
            ConnectionRefusedError(errno.ECONNREFUSED, "refused"),
            BrokenPipeError(errno.EPIPE, "broken pipe"),
            OSError(errno.EHOSTUNREACH, "no route"),
        ],
    )
    def test_socket_errors_are_retryable(self, exc: OSError) -> None:
        """Resets, refusals and broken pipes are transient."""
        assert type(classify(exc)) is RetryableError

    def test_lean_path_http_error_is_retryable(self) -> None:
        """The lean client's transport failure (a ConnectionError) is retried."""
        assert type(classify(HttpError("connection lost"))) is RetryableError

    def test_bare_oserror_without_message_still_has_text(self) -> None:
        """An OSError with no args is described by its type, never an empty message."""
        assert str(classify(ConnectionResetError())) == "ConnectionResetError"


class TestTimeoutsAndTransports:
    """Timeouts and every library's spelling of "the connection broke" are retryable."""

    @pytest.mark.parametrize("exc", [TimeoutError(), TimeoutError("no data for 300s")])
    def test_timeouts_are_retryable(self, exc: BaseException) -> None:
        """Timeouts, with or without a message, are transient."""
        assert type(classify(exc)) is RetryableError

    def test_incomplete_read_is_retryable(self) -> None:
        """asyncio's IncompleteReadError (a truncated body) is transient."""
        assert type(classify(asyncio.IncompleteReadError(b"abc", 10))) is RetryableError

    @pytest.mark.parametrize(
        "exc",
        [
            ReadTimeoutError(endpoint_url="http://127.0.0.1:1"),
            ConnectTimeoutError(endpoint_url="http://127.0.0.1:1"),
            EndpointConnectionError(endpoint_url="http://127.0.0.1:1"),
            ConnectionClosedError(endpoint_url="http://127.0.0.1:1"),
        ],
    )
    def test_botocore_transport_errors_are_retryable(self, exc: BaseException) -> None:
        """botocore's connection and timeout errors are transient."""
        assert type(classify(exc)) is RetryableError

    @pytest.mark.parametrize(
        "exc",
        [
            aiohttp.ClientPayloadError("Response payload is not completed"),
            aiohttp.ServerDisconnectedError(),
            aiohttp.ClientOSError(errno.ECONNRESET, "reset"),
        ],
    )
    def test_aiohttp_transport_errors_are_retryable(self, exc: BaseException) -> None:
        """aiohttp's payload and disconnect errors are transient."""
        assert type(classify(exc)) is RetryableError

    def test_subclass_of_a_transient_error_is_retryable(self) -> None:
        """A library subclass of a known transient error is matched through its MRO."""

        class VendorPayloadError(aiohttp.ClientPayloadError):
            pass

        assert type(classify(VendorPayloadError("cut"))) is RetryableError


class TestOtherExceptions:
    """Our own errors pass through; anything unknown is permanent for the item."""

    def test_retries_exceeded_passes_through_as_permanent(self) -> None:
        """RetriesExceededError is returned as is: the retry budget is spent, the item fails."""
        last = RetryableError("503 SlowDown")
        exc = RetriesExceededError(last, 5)
        err = classify(exc)
        assert err is exc
        assert isinstance(err, PermanentError) and not isinstance(err, RetryableError)
        assert err.last is last and err.attempts == 5
        assert "5 attempts" in str(err)

    @pytest.mark.parametrize(
        "exc", [UnsafeKeyError("k"), IntegrityError("md5"), FatalError("creds"), RetryableError("x")]
    )
    def test_our_errors_are_returned_unchanged(self, exc: S3SyncError) -> None:
        """Classifying twice never re-wraps (classification happens once)."""
        assert classify(exc) is exc

    def test_missing_credentials_are_fatal_with_a_hint(self) -> None:
        """botocore's NoCredentialsError becomes a fatal error telling the operator what to set."""
        err = classify(NoCredentialsError())
        assert type(err) is FatalError
        assert "AWS_ACCESS_KEY_ID" in str(err)

    def test_flexible_checksum_error_is_integrity(self) -> None:
        """botocore's additional-checksum mismatch is an IntegrityError, like our own mismatches."""
        err = classify(FlexibleChecksumError(error_msg="crc32 mismatch"))
        assert type(err) is IntegrityError
        assert "crc32 mismatch" in str(err)

    def test_unknown_exception_is_permanent_and_named(self) -> None:
        """An exception nobody recognises fails the item and names its type."""
        err = classify(ValueError("bad"))
        assert type(err) is PermanentError
        assert str(err) == "ValueError: bad"
