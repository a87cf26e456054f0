"""Event semantics end to end: every shape through HTTP, coalescing, events as hints, versioning.

The daemon runs in-process on a loopback port; S3 is moto, sometimes behind a
counting proxy (``support.proxy.Proxy``) so a test can see exactly which
requests the daemon made for a key and whether two ever overlapped.
"""

from __future__ import annotations

import asyncio
import json
from pathlib import Path
from typing import Any

import pytest
from support.daemon import run_daemon
from support.eventkit import eventbridge, request_recorder, s3_event, s3_record, s3_test_event, sns_envelope
from support.proxy import Proxy
from support.s3kit import body_for, tree
from support.wait import wait_for

KEYS = ["plain.txt", "dir/with space.txt", "dir/plus+sign.txt", "dir/pct%2Bliteral.txt", "ünï/cødé ✓.txt"]


def _etag(s3: Any, bucket: str, key: str) -> str:
    return str(s3.head_object(Bucket=bucket, Key=key)["ETag"]).strip('"')


class TestShapesThroughHttp:
    """Every notification shape reaches the mirror through POST /api/v1/s3-notification."""

    async def test_create_and_delete(self, s3: Any, bucket: str, mirror: Path, make_settings: Any) -> None:
        """Raw S3, SNS, EventBridge and batched events create and delete files; +, %2B, unicode decode."""
        shapes = ["raw", "sns", "eventbridge", "batch"]
        names = [f"{shape}/{k}" for shape in shapes for k in KEYS]
        objects = {k: body_for(k, 100 + i) for i, k in enumerate(names)}
        for k, v in objects.items():
            s3.put_object(Bucket=bucket, Key=k, Body=v)

        def wrap(shape: str, name: str, key: str) -> Any:
            if shape == "eventbridge":
                detail = "Object Created" if name.startswith("ObjectCreated") else "Object Deleted"
                return eventbridge(bucket, detail, key)
            event = s3_event(s3_record(bucket, name, key))
            if shape == "sns":
                return sns_envelope(event)
            if shape == "batch":
                return [sns_envelope(event), s3_test_event(bucket)]
            return event

        gone = {f"{shape}/{k}" for shape in shapes for k in KEYS[1:4]}
        async with run_daemon(make_settings(bucket, mirror)) as d:
            for key in objects:
                ack = await d.notify(wrap(key.split("/")[0], "ObjectCreated:Put", key))
                assert ack["accepted"] == 1, key
            await d.idle()
            assert tree(mirror) == objects
            for key in sorted(gone):
                s3.delete_object(Bucket=bucket, Key=key)
                await d.notify(wrap(key.split("/")[0], "ObjectRemoved:Delete", key))
            await d.idle()
        assert tree(mirror) == {k: v for k, v in objects.items() if k not in gone}

    async def test_literal_plus_is_not_a_space(
        self, s3: Any, bucket: str, mirror: Path, make_settings: Any
    ) -> None:
        """``a+b`` in an event means ``a b``; ``a%2Bb`` means ``a+b``; both files land where they belong."""
        s3.put_object(Bucket=bucket, Key="a b", Body=b"space")
        s3.put_object(Bucket=bucket, Key="a+b", Body=b"plus")
        raw = {"Records": [s3_record(bucket, "ObjectCreated:Put", "x")] * 2}
        raw["Records"] = [json.loads(json.dumps(r)) for r in raw["Records"]]
        raw["Records"][0]["s3"]["object"]["key"] = "a+b"
        raw["Records"][1]["s3"]["object"]["key"] = "a%2Bb"
        async with run_daemon(make_settings(bucket, mirror)) as d:
            assert (await d.notify(raw))["accepted"] == 2
            await d.idle()
        assert tree(mirror) == {"a b": b"space", "a+b": b"plus"}

    async def test_test_event_is_counted(self, bucket: str, mirror: Path, make_settings: Any) -> None:
        """s3:TestEvent (direct or via SNS) is acknowledged, ignored and counted in stats."""
        async with run_daemon(make_settings(bucket, mirror)) as d:
            assert await d.notify(s3_test_event(bucket)) == {"accepted": 0, "ignored": 1}
            assert await d.notify(sns_envelope(s3_test_event(bucket))) == {"accepted": 0, "ignored": 1}
            stats = await d.stats()
            assert stats["test_events"] == 2
            assert stats["events_ignored"] == 2

    async def test_other_bucket_and_unknown_events_are_ignored(
        self, s3: Any, bucket: str, mirror: Path, make_settings: Any
    ) -> None:
        """Records for another bucket, and event names that do not change bytes, are counted as ignored."""
        s3.put_object(Bucket=bucket, Key="k", Body=b"v")
        event = s3_event(
            s3_record("some-other-bucket", "ObjectCreated:Put", "k"),
            s3_record(bucket, "ObjectTagging:Put", "k"),
            s3_record(bucket, "Something:New", "k"),
        )
        async with run_daemon(make_settings(bucket, mirror)) as d:
            assert await d.notify(event) == {"accepted": 0, "ignored": 3}
        assert tree(mirror) == {}


class TestSubscriptionConfirmation:
    """A SubscriptionConfirmation is confirmed only on a real SNS host; any other URL is never fetched."""

    async def test_untrusted_subscribe_url_is_never_fetched(
        self, s3: Any, bucket: str, mirror: Path, make_settings: Any
    ) -> None:
        """A local URL as SubscribeURL gets no request, while the daemon goes on working."""
        async with request_recorder() as (url, seen), run_daemon(make_settings(bucket, mirror)) as d:
            for subscribe in (
                f"{url}/?Action=ConfirmSubscription&Token=t",
                url.replace("http://", "https://") + "/?Action=ConfirmSubscription",
                f"https://sns.us-east-1.amazonaws.com@{url[len('http://'):]}/?Action=ConfirmSubscription",
            ):
                confirmation = {
                    "Type": "SubscriptionConfirmation",
                    "MessageId": "m",
                    "Token": "t",
                    "TopicArn": "arn:aws:sns:us-east-1:123456789012:s3-events",
                    "Message": "You have chosen to subscribe...",
                    "SubscribeURL": subscribe,
                    "Timestamp": "2024-01-15T10:30:00.000Z",
                }
                assert await d.notify(confirmation) == {"accepted": 0, "ignored": 1}
            # A later event is applied: anything the daemon was going to do with the
            # confirmations (spawned at intake) has had its chance by then.
            s3.put_object(Bucket=bucket, Key="after.txt", Body=b"x")
            await d.notify(s3_event(s3_record(bucket, "ObjectCreated:Put", "after.txt")))
            await d.idle()
            assert (mirror / "after.txt").read_bytes() == b"x"
            assert seen == []


class TestCoalescing:
    """A burst of events on one key costs at most two transfers, never two at once."""

    async def test_burst_on_one_key(
        self, s3: Any, bucket: str, mirror: Path, make_settings: Any, moto_endpoint: str
    ) -> None:
        """50 events for one key while its download is in flight: ≤ 2 GETs, never overlapping."""
        key = "hot/key.bin"
        s3.put_object(Bucket=bucket, Key=key, Body=b"v0")
        async with Proxy(moto_endpoint) as proxy:
            gate = proxy.faults.hold("OBJECT")  # the first GET waits here
            settings = make_settings(bucket, mirror, s3={"endpoint_url": proxy.url}, sync={"concurrency": 8})
            async with run_daemon(settings) as d:
                await d.notify(s3_event(s3_record(bucket, "ObjectCreated:Put", key)))
                await wait_for(lambda: proxy.active[key] == 1, what="first GET in flight")
                s3.put_object(Bucket=bucket, Key=key, Body=b"final")
                # the first GET is held until the whole burst is accepted (each 202 waits for
                # its journal fsync, so on a busy box the burst spreads out): the burst can fold
                # into one follow-up GET however slowly it arrives
                event = s3_event(s3_record(bucket, "ObjectCreated:Put", key))
                await asyncio.gather(*(d.notify(event) for _ in range(50)))
                gate.set()
                stats = await d.idle()
        assert (mirror / key).read_bytes() == b"final"
        assert len(proxy.requests("GET", key)) <= 2, proxy.requests(key=key)
        assert proxy.max_active[key] == 1
        assert stats["coalesced"] >= 49

    async def test_mixed_burst_settles_on_the_truth(
        self, s3: Any, bucket: str, mirror: Path, make_settings: Any, moto_endpoint: str
    ) -> None:
        """Creates and removes interleaved on one key: one operation at a time, the final S3 state wins."""
        key = "flip.txt"
        s3.put_object(Bucket=bucket, Key=key, Body=b"a")
        async with Proxy(moto_endpoint) as proxy:
            proxy.faults.add("latency", op="OBJECT", seconds=0.1)
            settings = make_settings(bucket, mirror, s3={"endpoint_url": proxy.url})
            async with run_daemon(settings) as d:
                names = ["ObjectCreated:Put" if i % 2 == 0 else "ObjectRemoved:Delete" for i in range(30)]
                # concurrent, like a real burst (one by one, each waits for its durable journal commit)
                await asyncio.gather(*(d.notify(s3_event(s3_record(bucket, n, key))) for n in names))
                s3.delete_object(Bucket=bucket, Key=key)
                await d.notify(s3_event(s3_record(bucket, "ObjectRemoved:Delete", key)))
                await d.idle()
        assert not (mirror / key).exists()
        assert proxy.max_active[key] == 1
        assert len(proxy.requests("GET", key)) + proxy.count("HEAD", key) <= 4, proxy.requests(key=key)


class TestEventsAreHints:
    """Removes delete locally only on a 404 from S3 or a sequencer proving the remove is newer."""

    SEQ = "0055AED6DCD90281E5"

    async def _seeded(self, s3: Any, bucket: str, d: Any, key: str) -> str:
        """Apply a put event carrying a sequencer and the object's real ETag; returns the ETag."""
        s3.put_object(Bucket=bucket, Key=key, Body=b"live")
        etag = _etag(s3, bucket, key)
        await d.notify(s3_event(s3_record(bucket, "ObjectCreated:Put", key, etag=etag, sequencer=self.SEQ)))
        await d.idle()
        return etag

    async def test_newer_sequencer_deletes_without_asking(
        self, s3: Any, bucket: str, mirror: Path, make_settings: Any, moto_endpoint: str
    ) -> None:
        """A remove whose sequencer is newer (lower-case hex, longer) deletes with no HEAD."""
        async with Proxy(moto_endpoint) as proxy, run_daemon(
            make_settings(bucket, mirror, s3={"endpoint_url": proxy.url})
        ) as d:
            await self._seeded(s3, bucket, d, "k.txt")
            assert (mirror / "k.txt").exists()
            # the object still exists in S3 (a re-put whose event is late): the proof is the sequencer
            await d.notify(s3_event(s3_record(bucket, "ObjectRemoved:Delete", "k.txt",
                                              sequencer=self.SEQ.lower()[:-1] + "e6")))
            await d.idle()
        assert not (mirror / "k.txt").exists()
        assert proxy.count("HEAD", "k.txt") == 0

    async def test_unproven_remove_asks_s3_and_keeps_live_file(
        self, s3: Any, bucket: str, mirror: Path, make_settings: Any, moto_endpoint: str
    ) -> None:
        """A remove that is not provably newer is checked with a HEAD; the live object stays."""
        cases = {
            "same.txt": "0055AED6DCD90281E5",  # the same event again
            "padded.txt": "0055AED6DCD90281E500",  # equal once right-padded (a naive compare says newer)
            "older.txt": "0055aed6dcd90281e4",  # older, lower-case
            "none.txt": None,  # no sequencer at all
        }
        async with Proxy(moto_endpoint) as proxy, run_daemon(
            make_settings(bucket, mirror, s3={"endpoint_url": proxy.url})
        ) as d:
            for key in cases:
                await self._seeded(s3, bucket, d, key)
            for key, seq in cases.items():
                await d.notify(s3_event(s3_record(bucket, "ObjectRemoved:Delete", key, sequencer=seq)))
            await d.idle()
        for key in cases:
            assert (mirror / key).read_bytes() == b"live", key
            assert proxy.count("HEAD", key) == 1, key

    async def test_remove_between_two_puts_of_same_bytes(
        self, s3: Any, bucket: str, mirror: Path, make_settings: Any
    ) -> None:
        """put(s1) · delete(s2) · put(s3, same bytes): the late delete must not win over s3."""
        async with run_daemon(make_settings(bucket, mirror)) as d:
            etag = await self._seeded(s3, bucket, d, "k.txt")  # s1 applied
            newer = "0055AED6DCD90281F0"
            between = "0055AED6DCD90281E9"
            put = s3_record(bucket, "ObjectCreated:Put", "k.txt", etag=etag, sequencer=newer)
            await d.notify(s3_event(put))
            await d.idle()  # 304: same bytes, but the newer sequencer is remembered
            await d.notify(s3_event(s3_record(bucket, "ObjectRemoved:Delete", "k.txt", sequencer=between)))
            await d.idle()
        assert (mirror / "k.txt").read_bytes() == b"live"

    async def test_late_put_event_for_newer_bytes_does_not_lend_its_sequencer(
        self, s3: Any, bucket: str, mirror: Path, make_settings: Any
    ) -> None:
        """An old put event fetches today's bytes; a delete between the event and the bytes keeps them."""
        s3.put_object(Bucket=bucket, Key="k.txt", Body=b"old")
        old_etag = _etag(s3, bucket, "k.txt")
        s3.put_object(Bucket=bucket, Key="k.txt", Body=b"new")  # (its event is still on the way)
        async with run_daemon(make_settings(bucket, mirror)) as d:
            await d.notify(s3_event(s3_record(bucket, "ObjectCreated:Put", "k.txt", etag=old_etag,
                                              sequencer="0055AED6DCD90281A0")))
            await d.idle()
            await d.notify(s3_event(s3_record(bucket, "ObjectRemoved:Delete", "k.txt",
                                              sequencer="0055AED6DCD90281B0")))
            await d.idle()
        assert (mirror / "k.txt").read_bytes() == b"new"

    async def test_create_event_for_vanished_object_removes_local_copy(
        self, s3: Any, bucket: str, mirror: Path, make_settings: Any
    ) -> None:
        """A create hint for a key S3 no longer has (404) leaves no file behind."""
        async with run_daemon(make_settings(bucket, mirror)) as d:
            await self._seeded(s3, bucket, d, "gone.txt")
            s3.delete_object(Bucket=bucket, Key="gone.txt")
            await d.notify(s3_event(s3_record(bucket, "ObjectCreated:Put", "gone.txt")))
            await d.idle()
        assert not (mirror / "gone.txt").exists()


class TestVersionedBucket:
    """On a versioned bucket the mirror follows the current version, whatever the events say."""

    @pytest.fixture
    def versioned(self, s3: Any, bucket: str) -> dict[str, str]:
        """``k.txt`` with two versions; returns their ids as {"v1", "v2"}."""
        s3.put_bucket_versioning(Bucket=bucket, VersioningConfiguration={"Status": "Enabled"})
        v1 = s3.put_object(Bucket=bucket, Key="k.txt", Body=b"version one")["VersionId"]
        v2 = s3.put_object(Bucket=bucket, Key="k.txt", Body=b"version two")["VersionId"]
        return {"v1": v1, "v2": v2}

    async def _synced(self, d: Any, bucket: str, mirror: Path) -> None:
        await d.notify(s3_event(s3_record(bucket, "ObjectCreated:Put", "k.txt")))
        await d.idle()
        assert (mirror / "k.txt").read_bytes() == b"version two"

    async def test_delete_marker_deletes(
        self, s3: Any, bucket: str, mirror: Path, make_settings: Any, versioned: dict[str, str]
    ) -> None:
        """ObjectRemoved:DeleteMarkerCreated removes the local file."""
        async with run_daemon(make_settings(bucket, mirror)) as d:
            await self._synced(d, bucket, mirror)
            marker = s3.delete_object(Bucket=bucket, Key="k.txt")["VersionId"]
            await d.notify(s3_event(s3_record(bucket, "ObjectRemoved:DeleteMarkerCreated", "k.txt",
                                              version_id=marker)))
            await d.idle()
        assert not (mirror / "k.txt").exists()

    async def test_permanent_delete_of_old_version_keeps_file(
        self, s3: Any, bucket: str, mirror: Path, make_settings: Any, versioned: dict[str, str]
    ) -> None:
        """Deleting a non-current version (ObjectRemoved:Delete with its versionId) keeps the file."""
        async with run_daemon(make_settings(bucket, mirror)) as d:
            await self._synced(d, bucket, mirror)
            s3.delete_object(Bucket=bucket, Key="k.txt", VersionId=versioned["v1"])
            await d.notify(s3_event(s3_record(bucket, "ObjectRemoved:Delete", "k.txt",
                                              version_id=versioned["v1"], sequencer="FFFFFFFFFFFFFFFFFF")))
            await d.idle()
        assert (mirror / "k.txt").read_bytes() == b"version two"

    async def test_permanent_delete_of_current_version_restores_previous(
        self, s3: Any, bucket: str, mirror: Path, make_settings: Any, versioned: dict[str, str]
    ) -> None:
        """Deleting the current version makes the previous one current; the mirror follows it."""
        async with run_daemon(make_settings(bucket, mirror)) as d:
            etag = _etag(s3, bucket, "k.txt")
            await d.notify(s3_event(s3_record(bucket, "ObjectCreated:Put", "k.txt", etag=etag,
                                              version_id=versioned["v2"], sequencer="0055AED6DCD90281E5")))
            await d.idle()
            s3.delete_object(Bucket=bucket, Key="k.txt", VersionId=versioned["v2"])
            await d.notify(s3_event(s3_record(bucket, "ObjectRemoved:Delete", "k.txt",
                                              version_id=versioned["v2"], sequencer="0055AED6DCD90281F0")))
            await d.idle()
        assert (mirror / "k.txt").read_bytes() == b"version one"
