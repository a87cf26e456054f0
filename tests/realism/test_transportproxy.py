"""The transport proxy itself: each hook produces what AWS (or a network) would send.

Checked with botocore (which knows AWS) and with raw sockets, so the s3sync
tests built on the proxy stand on something verified.
"""

from __future__ import annotations

import socket
from collections.abc import Iterator
from typing import Any

import boto3
import pytest
from botocore.config import Config
from botocore.exceptions import ClientError
from support.s3kit import AWS_ENV
from support.transportproxy import TransportProxy


@pytest.fixture
def tp(moto_endpoint: str) -> Iterator[TransportProxy]:
    with TransportProxy(moto_endpoint) as proxy:
        yield proxy


def client(url: str, secret: str = AWS_ENV["AWS_SECRET_ACCESS_KEY"], **cfg: Any) -> Any:
    return boto3.client(
        "s3",
        endpoint_url=url,
        region_name="us-east-1",
        aws_access_key_id=AWS_ENV["AWS_ACCESS_KEY_ID"],
        aws_secret_access_key=secret,
        config=Config(retries={"max_attempts": 1}, s3={"addressing_style": "path"}, **cfg),
    )


def raw_get(port: int, path: str) -> bytes:
    """A GET signed by botocore, sent on a raw socket, answered bytes returned as they came."""
    from botocore.auth import S3SigV4Auth
    from botocore.awsrequest import AWSRequest
    from botocore.credentials import Credentials

    host = f"127.0.0.1:{port}"
    req = AWSRequest("GET", f"http://{host}{path}", headers={"Connection": "close"})
    S3SigV4Auth(
        Credentials(AWS_ENV["AWS_ACCESS_KEY_ID"], AWS_ENV["AWS_SECRET_ACCESS_KEY"]), "s3", "us-east-1"
    ).add_auth(req)
    lines = [f"GET {path} HTTP/1.1", f"Host: {host}", *(f"{k}: {v}" for k, v in req.headers.items())]
    with socket.create_connection(("127.0.0.1", port)) as s:
        s.sendall(("\r\n".join(lines) + "\r\n\r\n").encode())
        out = b""
        while chunk := s.recv(65536):
            out += chunk
    return out


class TestFraming:
    """Bodies arrive re-framed exactly as configured."""

    def test_chunked_with_trailers(self, s3: Any, bucket: str, tp: TransportProxy) -> None:
        s3.put_object(Bucket=bucket, Key="k", Body=b"x" * 2500)
        tp.hooks.chunked, tp.hooks.trailers = True, [("x-t", "1")]
        raw = raw_get(tp.port_of("main"), f"/{bucket}/k")
        head, _, body = raw.partition(b"\r\n\r\n")
        assert b"Transfer-Encoding: chunked" in head and b"Content-Length" not in head
        assert body.startswith(b"3e8\r\n") and body.endswith(b"0\r\nx-t: 1\r\n\r\n")
        assert client(tp.url).get_object(Bucket=bucket, Key="k")["Body"].read() == b"x" * 2500

    def test_interim_and_close_delimited(self, s3: Any, bucket: str, tp: TransportProxy) -> None:
        s3.put_object(Bucket=bucket, Key="k", Body=b"hello")
        tp.hooks.interim, tp.hooks.close_delimited = [100, 103], True
        raw = raw_get(tp.port_of("main"), f"/{bucket}/k")
        assert raw.startswith(b"HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 103 Early Hints\r\n")
        final = raw.split(b"\r\n\r\n", 2)[2]
        assert b"Connection: close" in final and b"Content-Length" not in final
        assert final.endswith(b"\r\n\r\nhello")


class TestSignaturesAndClock:
    """The proxy checks SigV4 and its own clock like S3 does."""

    def test_good_and_bad_signatures(self, s3: Any, bucket: str, tp: TransportProxy) -> None:
        s3.put_object(Bucket=bucket, Key="a b/c", Body=b"1")
        assert client(tp.url).get_object(Bucket=bucket, Key="a b/c")["Body"].read() == b"1"
        with pytest.raises(ClientError) as exc:
            client(tp.url, secret="wrong").get_object(Bucket=bucket, Key="a b/c")
        assert exc.value.response["Error"]["Code"] == "SignatureDoesNotMatch"
        assert [s.signature_ok for s in tp.requests("GET")] == [True, False]

    def test_skew(self, s3: Any, bucket: str, tp: TransportProxy) -> None:
        s3.put_object(Bucket=bucket, Key="k", Body=b"1")
        tp.hooks.skew = 3600.0
        with pytest.raises(ClientError) as exc:
            client(tp.url).get_object(Bucket=bucket, Key="k")
        err = exc.value.response
        assert err["Error"]["Code"] == "RequestTimeTooSkewed"
        assert "ServerTime" in err["Error"]
        tp.hooks.skew = 60.0  # within S3's 15 minutes
        assert client(tp.url).get_object(Bucket=bucket, Key="k")["Body"].read() == b"1"


class TestRoutingHooks:
    """307 to the second listener, truncated listings, forward-proxy mode."""

    def test_redirect_names_the_second_listener(self, s3: Any, bucket: str, tp: TransportProxy) -> None:
        s3.put_object(Bucket=bucket, Key="k", Body=b"1")
        tp.hooks.redirect_keys.add("k")
        raw = raw_get(tp.port_of("main"), f"/{bucket}/k")
        assert raw.startswith(b"HTTP/1.1 307 ")
        assert f"Location: {tp.second_url}/{bucket}/k".encode() in raw
        assert raw_get(tp.port_of("second"), f"/{bucket}/k").endswith(b"\r\n\r\n1")

    def test_truncated_listing_without_token(self, s3: Any, bucket: str, tp: TransportProxy) -> None:
        s3.put_object(Bucket=bucket, Key="k", Body=b"1")
        tp.hooks.truncate_listing = True
        page = client(tp.url).list_objects_v2(Bucket=bucket)
        assert page["IsTruncated"] is True and "NextContinuationToken" not in page

    def test_forward_proxy(self, s3: Any, bucket: str, moto_endpoint: str) -> None:
        s3.put_object(Bucket=bucket, Key="k", Body=b"via proxy")
        with TransportProxy(None) as fwd:
            c = client(moto_endpoint, proxies={"http": fwd.url})
            assert c.get_object(Bucket=bucket, Key="k")["Body"].read() == b"via proxy"
            (seen,) = fwd.requests("GET")
        assert seen.forwarded and seen.signature_ok
        assert seen.target.startswith(moto_endpoint)


def test_ipv6_listener(s3: Any, bucket: str, moto_endpoint: str) -> None:
    s3.put_object(Bucket=bucket, Key="k", Body=b"six")
    with TransportProxy(moto_endpoint, host="::1") as tp:
        assert tp.url.startswith("http://[::1]:")
        assert client(tp.url).get_object(Bucket=bucket, Key="k")["Body"].read() == b"six"
        (seen,) = tp.requests("GET")
    assert seen.headers["host"] == tp.url.removeprefix("http://") and seen.signature_ok
