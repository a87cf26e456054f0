"""Our SigV4 signer must produce exactly what botocore's S3SigV4Auth produces."""

from __future__ import annotations

import datetime as dt
from unittest import mock
from urllib.parse import quote

from botocore.auth import S3SigV4Auth
from botocore.awsrequest import AWSRequest
from botocore.credentials import Credentials
from hypothesis import given, settings
from hypothesis import strategies as st

from s3sync.s3.sigv4 import SigV4Signer

NOW = dt.datetime(2026, 11, 24, 16, 34, 14, tzinfo=dt.UTC)


def _botocore(method: str, url: str, headers: dict[str, str], token: str | None) -> dict[str, str]:
    creds = Credentials("AKIDEXAMPLE", "wJalrXUtnFEMI/K7MDENG+bPxRfiCYEXAMPLEKEY", token)
    req = AWSRequest(method=method, url=url, headers=headers)
    # pin botocore's clock (a third-party function) so both sign the same instant
    with mock.patch("botocore.auth.get_current_datetime", return_value=NOW.replace(tzinfo=None)):
        S3SigV4Auth(creds, "s3", "eu-west-1").add_auth(req)
    return dict(req.headers.items())


def _ours(
    method: str, host: str, path: str, query: str, headers: dict[str, str], token: str | None
) -> dict[str, str]:
    signer = SigV4Signer("AKIDEXAMPLE", "wJalrXUtnFEMI/K7MDENG+bPxRfiCYEXAMPLEKEY", "eu-west-1", token)
    return signer.sign(method, host, path, query, headers, now=NOW)


class TestAgainstBotocore:
    """Byte-for-byte agreement with botocore, the reference implementation."""

    def test_plain_get(self) -> None:
        """A GET of a simple key signs identically."""
        b = _botocore("GET", "http://127.0.0.1:9000/bucket/a/b.txt", {}, None)
        o = _ours("GET", "127.0.0.1:9000", "/bucket/a/b.txt", "", {}, None)
        assert o["Authorization"] == b["Authorization"]

    def test_listing_query_and_headers(self) -> None:
        """Query strings are canonicalised (sorted) and extra headers are signed the same way."""
        q = "continuation-token=abc%2Bdef&encoding-type=url&list-type=2&max-keys=1000&prefix=p%20q%2F"
        hdrs = {"If-None-Match": '"0123"', "Range": "bytes=0-9", "x-amz-checksum-mode": "ENABLED"}
        b = _botocore("GET", f"https://s3.eu-west-1.amazonaws.com/bucket/?{q}", dict(hdrs), "TOKEN")
        o = _ours("GET", "s3.eu-west-1.amazonaws.com", "/bucket/", q, dict(hdrs), "TOKEN")
        assert o["Authorization"] == b["Authorization"]
        assert o["X-Amz-Security-Token"] == "TOKEN"

    @settings(max_examples=60, deadline=None)
    @given(st.text(min_size=1, max_size=40).filter(lambda k: "\x00" not in k))
    def test_arbitrary_keys(self, key: str) -> None:
        """Any key, once URI-encoded, signs identically (S3 does not normalise paths)."""
        path = "/bkt/" + quote(key, safe="/~")
        b = _botocore("HEAD", "http://127.0.0.1:9000" + path, {}, None)
        o = _ours("HEAD", "127.0.0.1:9000", path, "", {}, None)
        assert o["Authorization"] == b["Authorization"]
