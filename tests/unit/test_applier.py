"""Applier (sync/apply.py) and the coalescing it relies on, against real moto and a real mirror.

Each test runs on both GET paths (lean ``fast_get = true`` and aioboto3). The
engine's workers start only after the test has queued its changes, so changes
meet in the coalescing queue in the order the test chose; the outcome is read
from the mirror directory, the state store and the journal.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from support.core import core, idle
from support.wait import wait_for

from s3sync.model import Change, ChangeKind, ChangeSource, ObjectMeta
from s3sync.sync.queue import Work

PATHS = pytest.mark.parametrize("fast_get", [True, False], ids=["lean", "boto"])


def listed_upsert(s3: Any, bucket: str, key: str) -> Change:
    """What a reconcile queues for ``key`` as the bucket lists it now."""
    item = s3.list_objects_v2(Bucket=bucket, Prefix=key)["Contents"][0]
    meta = ObjectMeta(key, item["Size"], item["ETag"].strip('"'), item["LastModified"].timestamp())
    return Change(
        key, ChangeKind.UPSERT, ChangeSource.RECONCILE, etag=meta.etag, size=meta.size, meta=meta, listed=True
    )


def event(key: str, kind: ChangeKind, seq: str | None = None) -> Change:
    return Change(key, kind, ChangeSource.NOTIFICATION, sequencer=seq)


@PATHS
class TestRemoveFoldedIntoAListedUpsert:
    """Defect 3: an event's remove queued behind a reconcile's listed upsert must still delete."""

    async def test_journaled_remove_still_deletes_with_delete_off(
        self, fast_get: bool, s3: Any, bucket: str, mirror: Path, make_settings: Any
    ) -> None:
        """remove (journaled) + listed upsert of the now-deleted key: the file goes, the row settles."""
        s3.put_object(Bucket=bucket, Key="doc.txt", Body=b"v1")
        settings = make_settings(
            bucket, mirror, s3={"fast_get": fast_get}, sync={"delete": False, "fsync": False}
        )
        async with core(settings) as engine:
            await engine.start()
            assert (await engine.reconcile()).ok
            assert (mirror / "doc.txt").read_bytes() == b"v1"
        stale = listed_upsert(s3, bucket, "doc.txt")  # the listing saw it just before the delete
        s3.delete_object(Bucket=bucket, Key="doc.txt")
        async with core(settings) as engine:
            assert await engine.intake([event("doc.txt", ChangeKind.REMOVE, "0A")]) == 1
            fut = engine.submit(stale)  # meets the pending remove in the queue
            await engine.start()
            result = await fut
            await wait_for(lambda: idle(engine), what="the journal settles", within=20)
            assert result.status == "success" and result.operation == "delete", result
            assert not (mirror / "doc.txt").exists()
            assert await engine.state.get("doc.txt") is None

    async def test_recreated_key_is_downloaded_not_deleted(
        self, fast_get: bool, s3: Any, bucket: str, mirror: Path, make_settings: Any
    ) -> None:
        """remove + a listed upsert of a key re-created since: S3 holds it, so the new bytes win."""
        s3.put_object(Bucket=bucket, Key="k", Body=b"old")
        settings = make_settings(bucket, mirror, s3={"fast_get": fast_get}, sync={"fsync": False})
        async with core(settings) as engine:
            await engine.start()
            assert (await engine.reconcile()).ok
        s3.delete_object(Bucket=bucket, Key="k")
        s3.put_object(Bucket=bucket, Key="k", Body=b"new bytes")
        async with core(settings) as engine:
            await engine.intake([event("k", ChangeKind.REMOVE, "05")])
            fut = engine.submit(listed_upsert(s3, bucket, "k"))
            await engine.start()
            assert (await fut).status == "success"
            await wait_for(lambda: idle(engine), what="the journal settles", within=20)
            assert (mirror / "k").read_bytes() == b"new bytes"


@PATHS
class TestApplyRules:
    """One change at a time through Applier.apply: what each kind means against S3."""

    async def test_upsert_downloads_then_answers_304(
        self, fast_get: bool, s3: Any, bucket: str, mirror: Path, make_settings: Any
    ) -> None:
        s3.put_object(Bucket=bucket, Key="a/b.bin", Body=b"x" * 1000)
        settings = make_settings(bucket, mirror, s3={"fast_get": fast_get}, sync={"fsync": False})
        async with core(settings) as engine:
            first = await engine.applier.apply(Work(event("a/b.bin", ChangeKind.UPSERT)))
            assert (first.status, first.bytes) == ("success", 1000)
            again = await engine.applier.apply(Work(event("a/b.bin", ChangeKind.UPSERT)))
            assert again.status == "unchanged"
            assert (mirror / "a" / "b.bin").read_bytes() == b"x" * 1000
            row = await engine.state.get("a/b.bin")
            assert row is not None and row.size == 1000

    async def test_hint_404_deletes_and_listed_404_skips(
        self, fast_get: bool, s3: Any, bucket: str, mirror: Path, make_settings: Any
    ) -> None:
        """An event's upsert that meets a 404 deletes our copy; a listing's upsert only skips."""
        s3.put_object(Bucket=bucket, Key="h", Body=b"1")
        s3.put_object(Bucket=bucket, Key="l", Body=b"2")
        settings = make_settings(bucket, mirror, s3={"fast_get": fast_get}, sync={"fsync": False})
        async with core(settings) as engine:
            await engine.start()
            assert (await engine.reconcile()).ok
            listed = listed_upsert(s3, bucket, "l")
            s3.delete_object(Bucket=bucket, Key="h")
            s3.delete_object(Bucket=bucket, Key="l")
            hint = await engine.applier.apply(Work(event("h", ChangeKind.UPSERT)))
            skip = await engine.applier.apply(Work(listed))
            assert (hint.operation, hint.status) == ("delete", "success")
            assert (skip.status, skip.message) == ("skipped", "gone from S3 since it was listed")
            assert not (mirror / "h").exists() and (mirror / "l").read_bytes() == b"2"

    async def test_remove_is_confirmed_with_s3(
        self, fast_get: bool, s3: Any, bucket: str, mirror: Path, make_settings: Any
    ) -> None:
        """A remove without a sequencer proof keeps a key S3 still holds, deletes one it does not."""
        s3.put_object(Bucket=bucket, Key="kept", Body=b"k")
        s3.put_object(Bucket=bucket, Key="gone", Body=b"g")
        settings = make_settings(bucket, mirror, s3={"fast_get": fast_get}, sync={"fsync": False})
        async with core(settings) as engine:
            await engine.start()
            assert (await engine.reconcile()).ok
            s3.delete_object(Bucket=bucket, Key="gone")
            kept = await engine.applier.apply(Work(event("kept", ChangeKind.REMOVE)))
            gone = await engine.applier.apply(Work(event("gone", ChangeKind.REMOVE)))
            assert (kept.status, kept.message) == ("unchanged", "object still exists in S3")
            assert (gone.operation, gone.status) == ("delete", "success")
            assert (mirror / "kept").exists() and not (mirror / "gone").exists()

    async def test_unsafe_key_is_a_counted_skip(
        self, fast_get: bool, s3: Any, bucket: str, mirror: Path, make_settings: Any
    ) -> None:
        """A key that would escape the mirror is skipped and counted, nothing written outside."""
        settings = make_settings(bucket, mirror, s3={"fast_get": fast_get}, sync={"fsync": False})
        async with core(settings) as engine:
            result = await engine.applier.apply(Work(event("../escape", ChangeKind.UPSERT)))
            assert result.status == "skipped" and result.error == "unsafe_key"
            assert engine.stats.skipped["unsafe_key"] == 1
            assert not (mirror.parent / "escape").exists()


@PATHS
class TestKeyConflictCleanup:
    """A tracked key whose name a directory of other keys holds: the pass goes on (found by test_model)."""

    async def test_pass_is_not_aborted_by_a_directory_at_a_tracked_key(
        self, fast_get: bool, s3: Any, bucket: str, mirror: Path, make_settings: Any
    ) -> None:
        """S3 holds ``a`` and ``a/b``; locally ``a/`` is a directory and a row for ``a`` remains.

        The pass drops our old ``a`` so the children can be written; ``a`` is a
        directory of other keys, so there is no file of ``a`` to delete: the row
        goes, ``a`` stays a counted key_conflict skip, and the pass completes.
        Before: "listing failed: 'a' is a directory locally", the whole pass aborted.
        """
        from s3sync.state.store import StateRow

        s3.put_object(Bucket=bucket, Key="a/b", Body=b"child")
        s3.put_object(Bucket=bucket, Key="other", Body=b"o")
        settings = make_settings(bucket, mirror, s3={"fast_get": fast_get}, sync={"fsync": False})
        async with core(settings) as engine:
            await engine.start()
            assert (await engine.reconcile()).ok
            s3.put_object(Bucket=bucket, Key="a", Body=b"file")
            engine.state.record(StateRow("a", "e", 4, 1.0))  # a row left for the file key
            s3.put_object(Bucket=bucket, Key="other", Body=b"o2")
            report = await engine.reconcile()
            assert report.aborted is None, report.aborted
            assert report.downloaded == 1  # the rest of the pass went on
            assert await engine.state.get("a") is None
        assert (mirror / "a" / "b").read_bytes() == b"child" and (mirror / "other").read_bytes() == b"o2"

    async def test_remove_of_a_key_held_by_a_directory_deletes_nothing(
        self, fast_get: bool, s3: Any, bucket: str, mirror: Path, make_settings: Any
    ) -> None:
        s3.put_object(Bucket=bucket, Key="a/b", Body=b"child")
        settings = make_settings(bucket, mirror, s3={"fast_get": fast_get}, sync={"fsync": False})
        async with core(settings) as engine:
            await engine.start()
            assert (await engine.reconcile()).ok
            result = await engine.applier.delete_local(event("a", ChangeKind.REMOVE), "deleted in S3")
            assert result.status == "unchanged"
        assert (mirror / "a" / "b").read_bytes() == b"child"
