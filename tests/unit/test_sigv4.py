"""Our SigV4 signer must produce exactly what botocore's S3SigV4Auth produces."""

from __future__ import annotations

import datetime as dt
import functools
from typing import Any
from unittest import mock

from botocore.auth import S3SigV4Auth
from botocore.awsrequest import AWSRequest
from botocore.credentials import Credentials
from hypothesis import example, given, settings
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


_SECRET = "wJalrXUtnFEMI/K7MDENG+bPxRfiCYEXAMPLEKEY"


class _Sent(Exception):
    """Raised from botocore's before-send hook: the request was built and signed, never sent."""


@functools.cache
def _s3_client() -> Any:
    import botocore.config
    import botocore.session

    return botocore.session.get_session().create_client(
        "s3",
        endpoint_url="http://127.0.0.1:9000",
        region_name="eu-west-1",
        aws_access_key_id="AKIDEXAMPLE",
        aws_secret_access_key=_SECRET,
        config=botocore.config.Config(s3={"addressing_style": "path"}),
    )


def _botocore_client_head(key: str) -> tuple[str, str, dt.datetime]:
    """(URL, Authorization, signing instant) of botocore's S3 client's HeadObject for ``key``, path style."""
    client = _s3_client()
    seen: dict[str, str] = {}

    def text(v: str | bytes) -> str:
        return v.decode() if isinstance(v, bytes) else v

    def capture(request: AWSRequest, **_: object) -> None:
        seen["url"] = request.url
        seen["auth"] = text(request.headers["Authorization"])
        seen["date"] = text(request.headers["X-Amz-Date"])
        raise _Sent

    client.meta.events.register("before-send.s3.HeadObject", capture)
    try:
        client.head_object(Bucket="bkt", Key=key)
    except _Sent:
        pass
    finally:
        client.meta.events.unregister("before-send.s3.HeadObject", capture)
    when = dt.datetime.strptime(seen["date"], "%Y%m%dT%H%M%SZ").replace(tzinfo=dt.UTC)
    return seen["url"], seen["auth"], when


def _lean_target(key: str) -> str:
    """The request target the lean path sends for ``key`` (bucket ``bkt`` at 127.0.0.1:9000, path style)."""
    from s3sync.config import load_settings
    from s3sync.s3.lean import LeanPath

    settings = load_settings(
        overrides={"s3": {"bucket": "bkt", "endpoint_url": "http://127.0.0.1:9000", "region": "eu-west-1"}},
        environ={"AWS_ACCESS_KEY_ID": "AKIDEXAMPLE", "AWS_SECRET_ACCESS_KEY": _SECRET},
    )
    lean = LeanPath(settings.s3, lambda: None, timeout=5)  # type: ignore[arg-type,return-value]
    return lean._target(key)


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
    @example("a b/ü?#%+~=&;:@$,'!()*[]")
    @example("../x//y/./z")
    def test_arbitrary_keys(self, key: str) -> None:
        """Any raw key: the request target LeanPath builds, signed, equals botocore's S3 client's request.

        botocore's own S3 client serialises the key (the reference for how a key is
        percent-encoded in the path, where the real-S3 risk is) and signs it; our
        side starts from the same raw key through ``LeanPath._target``. Giving both
        one pre-encoded path would test the signer only, never the encoding.
        """
        url, auth, when = _botocore_client_head(key)
        target = _lean_target(key)
        assert "http://127.0.0.1:9000" + target == url
        signer = SigV4Signer("AKIDEXAMPLE", _SECRET, "eu-west-1", None)
        o = signer.sign("HEAD", "127.0.0.1:9000", target, "", {}, now=when)
        assert o["Authorization"] == auth
