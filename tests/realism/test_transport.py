"""Transport as AWS and enterprise networks behave, on BOTH GET paths, through a raw proxy.

s3sync → :class:`TransportProxy` (chunked re-encoding, 1xx, close-delimited
bodies, 307 to a second listener, truncated pages, a skewed clock, IPv6, TLS)
→ moto. Each test asserts on the mirror *and* on what the proxy saw.
"""

from __future__ import annotations

import hashlib
import os
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from support.s3kit import AWS_ENV, body_for, seed, temp_files, tree
from support.transportproxy import MAX_SKEW, TransportProxy, self_signed

MiB = 1024 * 1024
paths = pytest.mark.parametrize("fast_get", [True, False], ids=["lean", "boto"])


@pytest.fixture
def tp(moto_endpoint: str) -> Iterator[TransportProxy]:
    with TransportProxy(moto_endpoint) as proxy:
        yield proxy


@pytest.fixture(autouse=True)
def _true_clock() -> Iterator[None]:
    """The signing clock's offset is process-wide: every test starts and ends with none."""
    from s3sync.s3.clock import CLOCK

    CLOCK.offset = 0.0
    yield
    CLOCK.offset = 0.0


def settings(bucket: str, mirror: Path, endpoint: str, fast_get: bool, **sync: Any) -> Any:
    from s3sync.config import load_settings

    return load_settings(
        overrides={
            "s3": {
                "bucket": bucket,
                "endpoint_url": endpoint,
                "fast_get": fast_get,
                "connect_timeout_seconds": 3.0,
            },
            "sync": {
                "local_dir": str(mirror),
                "periodic": False,
                "fsync": False,
                "retry_attempts": 1,
                **sync,
            },
        },
        environ=dict(AWS_ENV),
    )


async def reconcile(cfg: Any, **kw: Any) -> Any:
    from s3sync.sync.engine import open_engine

    async with open_engine(cfg) as engine:
        return await engine.reconcile(**kw)


async def notify(cfg: Any, *keys: str) -> list[Any]:
    """Event-driven downloads: no listing, so only the GET's own headers describe the object."""
    import asyncio

    from s3sync.model import Change, ChangeKind, ChangeSource
    from s3sync.sync.engine import open_engine

    async with open_engine(cfg) as engine:
        futures = [engine.submit(Change(k, ChangeKind.UPSERT, ChangeSource.NOTIFICATION)) for k in keys]
        return list(await asyncio.gather(*futures))


def objects(*sizes: int) -> dict[str, bytes]:
    return {f"d{i % 2}/obj-{i}-{n}.bin": body_for(f"obj-{i}-{n}", n) for i, n in enumerate(sizes)}


def assert_mirror(mirror: Path, expected: dict[str, bytes]) -> None:
    got = tree(mirror)
    assert sorted(got) == sorted(expected)
    for key, data in expected.items():
        assert hashlib.sha256(got[key]).digest() == hashlib.sha256(data).digest(), key
    assert temp_files(mirror) == []


class TestFraming:
    """Chunked (with trailers), 1xx-preceded and close-delimited answers land whole, first time."""

    @paths
    async def test_chunked_bodies(
        self, fast_get: bool, s3: Any, bucket: str, mirror: Path, tp: TransportProxy
    ) -> None:
        data = seed(s3, bucket, objects(0, 10, 100_000, 9 * MiB))  # 9 MiB: the streamed path
        tp.hooks.chunked, tp.hooks.trailers = True, [("x-amz-meta-trailer", "1")]
        report = await reconcile(settings(bucket, mirror, tp.url, fast_get))
        assert report.ok, report.errors
        assert report.downloaded == len(data)
        gets = tp.requests("GET")
        assert len(gets) == len(data) and {g.status for g in gets} == {200}  # no retry, no size failure
        assert_mirror(mirror, data)

    @paths
    async def test_chunked_without_a_listing(
        self, fast_get: bool, s3: Any, bucket: str, mirror: Path, tp: TransportProxy
    ) -> None:
        """Only the GET describes the object: its size is what arrived, never 0."""
        data = seed(s3, bucket, objects(5000, 9 * MiB))
        tp.hooks.chunked = True
        results = await notify(settings(bucket, mirror, tp.url, fast_get), *data)
        assert [r.status for r in results] == ["success"] * len(data), [r.error for r in results]
        assert sorted(r.bytes for r in results) == sorted(len(v) for v in data.values())
        assert_mirror(mirror, data)

    @paths
    @pytest.mark.parametrize("interim", [[100], [103], [100, 103]], ids=["100", "103", "100+103"])
    async def test_interim_answers_skipped(
        self, fast_get: bool, interim: list[int], s3: Any, bucket: str, mirror: Path, tp: TransportProxy
    ) -> None:
        data = seed(s3, bucket, objects(10, 70_000))
        tp.hooks.interim = interim
        report = await reconcile(settings(bucket, mirror, tp.url, fast_get))
        assert report.ok, report.errors
        assert {s.status for s in tp.requests()} == {200}
        assert_mirror(mirror, data)

    @paths
    async def test_close_delimited_bodies(
        self, fast_get: bool, s3: Any, bucket: str, mirror: Path, tp: TransportProxy
    ) -> None:
        data = seed(s3, bucket, objects(1, 4096, 300_000))
        tp.hooks.close_delimited = True
        report = await reconcile(settings(bucket, mirror, tp.url, fast_get))
        assert report.ok, report.errors
        assert len(tp.requests("GET")) == len(data)
        assert_mirror(mirror, data)


class TestRedirect:
    """A 307 is followed to the host it names, and the request is signed for that host."""

    @paths
    async def test_temporary_redirect(
        self, fast_get: bool, s3: Any, bucket: str, mirror: Path, tp: TransportProxy
    ) -> None:
        data = seed(s3, bucket, objects(10, 20_000, 3))
        tp.hooks.redirect_keys.update(data)
        report = await reconcile(settings(bucket, mirror, tp.url, fast_get))
        assert report.ok, report.errors
        first = tp.requests("GET", listener="main")
        second = tp.requests("GET", listener="second")
        assert {s.status for s in first} == {307} and len(first) >= len(data)
        assert sorted(s.key for s in second) == sorted(data)
        assert all(s.status == 200 and s.signature_ok for s in second)
        assert {s.headers["host"] for s in second} == {tp.second_url.split("://", 1)[1]}
        assert_mirror(mirror, data)


class TestClockSkew:
    """RequestTimeTooSkewed: the offset comes from S3's Date, is kept, and the request is retried once."""

    @paths
    async def test_skew_corrected_once_and_kept(
        self, fast_get: bool, s3: Any, bucket: str, mirror: Path, tp: TransportProxy
    ) -> None:
        from s3sync.s3.clock import CLOCK

        data = seed(s3, bucket, objects(10, 20, 30, 40))
        tp.hooks.skew = 3600.0
        report = await reconcile(settings(bucket, mirror, tp.url, fast_get))
        assert report.ok, report.errors
        seen = tp.requests()
        refused = [s for s in seen if s.status == 403]
        assert len(refused) == 1  # one refusal in the whole pass: the offset was kept
        assert seen[1].target == refused[0].target  # ...and that request was retried at once
        assert abs(CLOCK.offset - 3600.0) < 120
        assert len(tp.requests("GET")) == len(data)
        assert_mirror(mirror, data)


class TestListing:
    """A page that says it is truncated but gives no token is an error of the pass."""

    @paths
    async def test_truncated_page_without_token_deletes_nothing(
        self, fast_get: bool, s3: Any, bucket: str, mirror: Path, tp: TransportProxy
    ) -> None:
        data = seed(s3, bucket, objects(10, 20, 30))
        cfg = settings(bucket, mirror, tp.url, fast_get, delete=True)
        assert (await reconcile(cfg)).ok
        gone = sorted(data)[0]
        s3.delete_object(Bucket=bucket, Key=gone)
        tp.hooks.truncate_listing = True
        report = await reconcile(cfg, delete=True)
        assert not report.ok and report.aborted and "ContinuationToken" in report.aborted
        assert report.deleted == 0
        assert len(tp.requests("LIST")) >= 2
        assert_mirror(mirror, data)  # the key deleted in S3 is still here: nothing was deleted


class TestLastModified:
    """An unparsable Last-Modified is unknown: the file never gets a 1970 date."""

    @paths
    async def test_unparsable_last_modified(
        self, fast_get: bool, s3: Any, bucket: str, mirror: Path, tp: TransportProxy
    ) -> None:
        data = seed(s3, bucket, objects(10, 20))
        tp.hooks.bad_last_modified = True
        results = await notify(settings(bucket, mirror, tp.url, fast_get), *data)
        assert [r.status for r in results] == ["success"] * len(data), [r.error for r in results]
        assert all(g.status == 200 for g in tp.requests("GET"))
        for key in data:
            mtime = os.stat(mirror / key).st_mtime
            assert abs(mtime - time.time()) < 3600, (key, mtime)  # not 1970: unknown, so "now"
        assert_mirror(mirror, data)

    @paths
    async def test_unparsable_dates_in_the_listing_too(
        self, fast_get: bool, s3: Any, bucket: str, mirror: Path, tp: TransportProxy
    ) -> None:
        """A pass over objects whose dates cannot be read: synced once, then unchanged (no loop)."""
        data = seed(s3, bucket, objects(10, 20))
        tp.hooks.bad_last_modified = True
        cfg = settings(bucket, mirror, tp.url, fast_get)
        first = await reconcile(cfg)
        assert first.ok and first.downloaded == len(data), first.errors
        for key in data:
            assert abs(os.stat(mirror / key).st_mtime - time.time()) < 3600, key
        again = await reconcile(cfg)
        assert again.ok and again.downloaded == 0, again.details
        assert len(tp.requests("GET")) == len(data)
        assert_mirror(mirror, data)


class TestProxiesTlsIpv6:
    """HTTP(S)_PROXY / NO_PROXY, AWS_CA_BUNDLE and IPv6 endpoints, honoured by every request."""

    @paths
    async def test_http_proxy_carries_every_request(
        self,
        fast_get: bool,
        s3: Any,
        bucket: str,
        mirror: Path,
        moto_endpoint: str,
        monkeypatch: pytest.MonkeyPatch,
    ) -> None:
        data = seed(s3, bucket, objects(10, 5000))
        with TransportProxy(None) as fwd:
            monkeypatch.setenv("HTTP_PROXY", fwd.url)
            report = await reconcile(settings(bucket, mirror, moto_endpoint, fast_get))
            seen = fwd.requests()
        assert report.ok, report.errors
        assert seen and all(s.forwarded for s in seen)
        assert sorted(s.key for s in seen if s.op == "GET") == sorted(data)
        assert any(s.op == "LIST" for s in seen)
        assert all(s.target.startswith(moto_endpoint) for s in seen)
        assert_mirror(mirror, data)

    @paths
    async def test_https_proxy_tunnels_every_request(
        self,
        fast_get: bool,
        s3: Any,
        bucket: str,
        mirror: Path,
        moto_endpoint: str,
        tmp_path: Path,
        monkeypatch: pytest.MonkeyPatch,
    ) -> None:
        """An https:// endpoint behind HTTPS_PROXY: every connection is a CONNECT tunnel through it."""
        data = seed(s3, bucket, objects(10, 4000))
        ca, server_ctx = self_signed(tmp_path)
        with TransportProxy(moto_endpoint, tls=server_ctx) as tls, TransportProxy(None) as fwd:
            monkeypatch.setenv("AWS_CA_BUNDLE", str(ca))
            monkeypatch.setenv("HTTPS_PROXY", fwd.url)
            report = await reconcile(settings(bucket, mirror, tls.url, fast_get))
            tunnels = fwd.requests()
            served = tls.requests()
        assert report.ok, report.errors
        origin = tls.url.split("://", 1)[1]
        assert tunnels and {(t.op, t.target, t.status) for t in tunnels} == {("CONNECT", origin, 200)}
        assert sorted(s.key for s in served if s.op == "GET") == sorted(data)
        assert all(s.signature_ok for s in served)
        assert_mirror(mirror, data)

    @paths
    async def test_no_proxy_bypasses_it(
        self,
        fast_get: bool,
        s3: Any,
        bucket: str,
        mirror: Path,
        moto_endpoint: str,
        monkeypatch: pytest.MonkeyPatch,
    ) -> None:
        data = seed(s3, bucket, objects(10))
        with TransportProxy(None) as fwd:
            monkeypatch.setenv("HTTP_PROXY", fwd.url)
            monkeypatch.setenv("NO_PROXY", "127.0.0.1")
            report = await reconcile(settings(bucket, mirror, moto_endpoint, fast_get))
            assert fwd.requests() == []
        assert report.ok, report.errors
        assert_mirror(mirror, data)

    @paths
    async def test_ca_bundle(
        self,
        fast_get: bool,
        s3: Any,
        bucket: str,
        mirror: Path,
        moto_endpoint: str,
        tmp_path: Path,
        monkeypatch: pytest.MonkeyPatch,
    ) -> None:
        data = seed(s3, bucket, objects(10, 2000))
        ca, server_ctx = self_signed(tmp_path)
        with TransportProxy(moto_endpoint, tls=server_ctx) as tls:
            assert tls.url.startswith("https://127.0.0.1:")
            cfg = settings(bucket, mirror, tls.url, fast_get)
            untrusted = await _outcome(cfg)
            assert untrusted is not True  # the system store does not trust it: nothing synced
            assert tree(mirror) == {}
            monkeypatch.setenv("AWS_CA_BUNDLE", str(ca))
            assert await _outcome(cfg) is True
            assert sorted(s.key for s in tls.requests("GET")) == sorted(data)
        assert_mirror(mirror, data)

    @paths
    async def test_ipv6_endpoint(
        self, fast_get: bool, s3: Any, bucket: str, mirror: Path, moto_endpoint: str
    ) -> None:
        data = seed(s3, bucket, objects(10, 3000))
        with TransportProxy(moto_endpoint, host="::1") as six:
            report = await reconcile(settings(bucket, mirror, six.url, fast_get))
            seen = six.requests()
        assert report.ok, report.errors
        host = six.url.split("://", 1)[1]
        assert host.startswith("[::1]:")
        assert {s.headers["host"] for s in seen} == {host}
        assert all(s.signature_ok for s in seen)
        assert sorted(s.key for s in seen if s.op == "GET") == sorted(data)
        assert_mirror(mirror, data)


async def _outcome(cfg: Any) -> bool | str:
    """True when a reconcile succeeded, else why not (an aborted report or the error raised)."""
    from s3sync.errors import S3SyncError

    try:
        report = await reconcile(cfg)
    except S3SyncError as exc:
        return str(exc)
    return True if report.ok else str(report.aborted or report.errors)


assert MAX_SKEW == 900  # the proxy refuses exactly what S3 refuses
