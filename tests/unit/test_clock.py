"""The signing clock: the offset learned from S3's Date (or ServerTime), and botocore pointed at it."""

from __future__ import annotations

import datetime as dt
import email.utils
from collections.abc import Iterator

import pytest

from s3sync.s3.clock import CLOCK, Clock


@pytest.fixture(autouse=True)
def _no_offset() -> Iterator[None]:
    CLOCK.offset = 0.0
    yield
    CLOCK.offset = 0.0


def test_learns_from_date_header() -> None:
    clock = Clock()
    ahead = dt.datetime.now(dt.UTC) + dt.timedelta(hours=1)
    assert clock.learn(email.utils.format_datetime(ahead, usegmt=True))
    assert abs(clock.offset - 3600) < 5
    assert abs((clock.now() - ahead).total_seconds()) < 5


def test_server_time_when_date_is_missing_or_bad() -> None:
    clock = Clock()
    behind = (dt.datetime.now(dt.UTC) - dt.timedelta(minutes=20)).strftime("%Y-%m-%dT%H:%M:%SZ")
    assert clock.learn("not a date", behind)
    assert abs(clock.offset + 1200) < 5


def test_nothing_to_learn() -> None:
    clock = Clock()
    assert not clock.learn(None, None)
    assert not clock.learn("garbage", "also garbage")
    assert clock.offset == 0.0


def test_botocore_signs_with_the_offset() -> None:
    """After an offset is learned, botocore's SigV4 (CRT or not) dates requests with it."""
    from botocore.auth import AUTH_TYPE_MAPS
    from botocore.awsrequest import AWSRequest
    from botocore.credentials import Credentials

    ahead = dt.datetime.now(dt.UTC) + dt.timedelta(hours=2)
    assert CLOCK.learn(email.utils.format_datetime(ahead, usegmt=True))
    req = AWSRequest("GET", "http://127.0.0.1:9/b/k")
    AUTH_TYPE_MAPS["s3v4"](Credentials("a", "b"), "s3", "us-east-1").add_auth(req)
    signed = dt.datetime.strptime(req.headers["X-Amz-Date"], "%Y%m%dT%H%M%SZ").replace(tzinfo=dt.UTC)
    assert abs((signed - ahead).total_seconds()) < 5
    CLOCK.offset = 0.0
    req = AWSRequest("GET", "http://127.0.0.1:9/b/k")
    AUTH_TYPE_MAPS["s3v4"](Credentials("a", "b"), "s3", "us-east-1").add_auth(req)
    signed = dt.datetime.strptime(req.headers["X-Amz-Date"], "%Y%m%dT%H%M%SZ").replace(tzinfo=dt.UTC)
    assert abs((signed - dt.datetime.now(dt.UTC)).total_seconds()) < 5
