"""S3 Inventory as the listing of a bucket too big to list.

At 10⁸ to 10⁹ objects a ``ListObjectsV2`` pass is 10⁵ to 10⁶ sequential requests;
S3 Inventory is the report AWS itself writes, daily or weekly, under::

    s3://DEST-BUCKET/DEST-PREFIX/SOURCE-BUCKET/CONFIG-ID/YYYY-MM-DDTHH-MMZ/manifest.json
                                                        .../manifest.checksum
                                                        data/<uuid>.csv.gz | .parquet | .orc

:class:`InventoryReader` finds the newest ``manifest.json`` under such a
location, checks the manifest (and its ``manifest.checksum`` when present),
reads every data file while hashing it against the manifest's ``MD5checksum``,
and yields the same :class:`~s3sync.model.ObjectMeta` stream the listing yields,
in key order. AWS promises no order across data files, so rows go through an
:class:`~s3sync.s3.extsort.ExternalSorter`: memory is bounded by the run size,
never by the bucket. Nothing is yielded before every data file has been read
and verified, so a corrupt report fails the pass before a single delete can be
planned from it.

The reader depends on two small async callables rather than on the Bucket
facade, so it works with any client (and the report may live in another bucket
than the one mirrored): ``list_keys(bucket, prefix)`` yields keys in order;
``get_object(bucket, key)`` yields the object's bytes in chunks.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import hashlib
import json
import re
import tempfile
from collections.abc import AsyncIterator, Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

from s3sync.model import ObjectMeta
from s3sync.s3.extsort import ExternalSorter
from s3sync.s3.inventory_formats import (
    Accept,
    CsvRows,
    Fields,
    InventoryError,
    Row,
    column_index,
    columnar_rows,
    md5_file,
    split_row,
)

__all__ = ["DataFile", "InventoryError", "InventoryObject", "InventoryReader", "Manifest", "parse_location"]

T = TypeVar("T")
ListKeys = Callable[[str, str], AsyncIterator[str]]
GetObject = Callable[[str, str], AsyncIterator[bytes]]

_REPORT = re.compile(r"(\d{4}-\d{2}-\d{2}T\d{2}-\d{2}Z)/(manifest\.json|manifest\.checksum)")
_FORMATS = {"csv": "csv", "parquet": "parquet", "orc": "orc"}
_FEED_BYTES = 1 << 18  # hand the parser 256 KiB of gzip (~1 MiB of text) per thread hop
_BATCH = 1000


@dataclass(frozen=True, slots=True)
class DataFile:
    key: str
    size: int
    md5: str


@dataclass(frozen=True, slots=True)
class Manifest:
    """What ``manifest.json`` says, plus where it was found."""

    bucket: str  # where the report lives (the location's bucket)
    key: str  # .../YYYY-MM-DDTHH-MMZ/manifest.json
    report: str  # YYYY-MM-DDTHH-MMZ
    source_bucket: str
    destination_bucket: str
    version: str
    created: float  # creationTimestamp, unix seconds
    file_format: str  # csv | parquet | orc
    columns: tuple[str, ...]
    files: tuple[DataFile, ...]

    @property
    def created_iso(self) -> str:
        return dt.datetime.fromtimestamp(self.created, dt.UTC).isoformat().replace("+00:00", "Z")


@dataclass(frozen=True, slots=True)
class InventoryObject:
    """One live object of the report: the listing's ObjectMeta plus what only the report says."""

    meta: ObjectMeta
    storage_class: str | None
    version_id: str | None


def parse_location(uri: str) -> tuple[str, str]:
    """``s3://bucket/prefix/`` → (bucket, prefix ending in ``/`` or naming a manifest.json)."""
    if not uri.startswith("s3://"):
        raise InventoryError(f"inventory location must be s3://BUCKET/PREFIX/, got {uri!r}")
    bucket, _, prefix = uri[5:].partition("/")
    if not bucket:
        raise InventoryError(f"inventory location {uri!r} names no bucket")
    if prefix and not prefix.endswith(("/", "/manifest.json")) and prefix != "manifest.json":
        prefix += "/"
    return bucket, prefix


def _columns(schema: str, file_format: str) -> tuple[str, ...]:
    """Column names from ``fileSchema``: a comma list for CSV; Parquet/ORC schemas are read from the files."""
    if file_format == "csv":
        return tuple(c.strip() for c in schema.split(",") if c.strip())
    return ()


def parse_manifest(raw: bytes, bucket: str, key: str) -> Manifest:
    where = f"s3://{bucket}/{key}"
    try:
        doc = json.loads(raw)
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise InventoryError(f"{where}: not valid JSON ({exc})") from exc
    if not isinstance(doc, dict):
        raise InventoryError(f"{where}: not a JSON object")
    try:
        fmt = _FORMATS.get(str(doc["fileFormat"]).lower())
        if fmt is None:
            raise InventoryError(f"{where}: fileFormat {doc['fileFormat']!r} is not CSV, ORC or Parquet")
        files = tuple(
            DataFile(str(f["key"]), int(f.get("size", -1)), str(f["MD5checksum"])) for f in doc["files"]
        )
        created = int(str(doc["creationTimestamp"])) / 1000.0
        schema = str(doc["fileSchema"])
    except (KeyError, TypeError, ValueError) as exc:
        raise InventoryError(f"{where}: missing or malformed field ({exc!r})") from exc
    columns = _columns(schema, fmt)
    if fmt == "csv":
        column_index(columns, where)
    m = _REPORT.search(key)
    return Manifest(
        bucket=bucket,
        key=key,
        report=m.group(1) if m else "",
        source_bucket=str(doc.get("sourceBucket", "")),
        destination_bucket=str(doc.get("destinationBucket", "")),
        version=str(doc.get("version", "")),
        created=created,
        file_format=fmt,
        columns=columns,
        files=files,
    )


async def _read_all(get_object: GetObject, bucket: str, key: str) -> bytes:
    parts = [chunk async for chunk in get_object(bucket, key)]
    return b"".join(parts)


async def _aclose(it: AsyncIterator[Any]) -> None:
    aclose = getattr(it, "aclose", None)
    if aclose is not None:
        await aclose()


def _dedupe(rows: Iterator[Row]) -> Iterator[Fields]:
    """One row per key: a report should not repeat a key, but if it does the newest wins."""
    prev: Fields | None = None
    for row in rows:
        cur = split_row(row)
        if prev is not None and cur[0] == prev[0]:
            if cur[3] >= prev[3]:
                prev = cur
            continue
        if prev is not None:
            yield prev
        prev = cur
    if prev is not None:
        yield prev


def _take_entries(it: Iterator[Fields], n: int) -> list[InventoryObject]:
    out = []
    for key, size, etag, modified, version_id, algo, storage_class in it:
        out.append(
            InventoryObject(ObjectMeta(key, size, etag, modified, None, algo), storage_class, version_id)
        )
        if len(out) >= n:
            break
    return out


def _take_metas(it: Iterator[Fields], n: int) -> list[ObjectMeta]:
    out = []
    for key, size, etag, modified, _version_id, algo, _storage_class in it:
        out.append(ObjectMeta(key, size, etag, modified, None, algo))
        if len(out) >= n:
            break
    return out


class InventoryReader:
    """The newest inventory report under ``location``, as a key-ordered stream."""

    def __init__(
        self,
        location: str,
        list_keys: ListKeys,
        get_object: GetObject,
        *,
        source_bucket: str | None = None,
        prefix: str = "",
        accept: Accept | None = None,
        tmpdir: Path | None = None,
        run_size: int = 50_000,
    ) -> None:
        self.bucket, self.prefix = parse_location(location)
        self.location = location
        self._list = list_keys
        self._get = get_object
        self._source_bucket = source_bucket
        self._key_prefix = prefix
        self._accept = accept
        self._tmpdir = tmpdir
        self._run_size = run_size
        self.manifest: Manifest | None = None
        self._has_checksum = False
        self.stats = {"data_files": 0, "bytes": 0, "rows": 0, "kept": 0, "runs": 0}

    async def find_manifest(self) -> str:
        """Key of the newest ``YYYY-MM-DDTHH-MMZ/manifest.json`` under the location."""
        if self.prefix.endswith("manifest.json"):
            return self.prefix
        newest: str | None = None
        checksums: set[str] = set()
        it = self._list(self.bucket, self.prefix)
        try:
            async for key in it:
                rel = key[len(self.prefix) :]
                if rel[:1] > "9":
                    break  # data/ and hive/ sort after every dated folder: stop listing
                m = _REPORT.fullmatch(rel)
                if m is None:
                    continue
                if m.group(2) == "manifest.checksum":
                    checksums.add(m.group(1))
                elif newest is None or m.group(1) > newest:
                    newest = m.group(1)
        finally:
            await _aclose(it)
        if newest is None:
            raise InventoryError(
                f"no inventory report (YYYY-MM-DDTHH-MMZ/manifest.json) under s3://{self.bucket}/{self.prefix}"
            )
        self._has_checksum = newest in checksums
        return f"{self.prefix}{newest}/manifest.json"

    async def load_manifest(self) -> Manifest:
        """Find, fetch and check the manifest (and ``manifest.checksum`` when AWS wrote one)."""
        if self.manifest is not None:
            return self.manifest
        key = await self.find_manifest()
        raw = await _read_all(self._get, self.bucket, key)
        expected = ""
        if self._has_checksum:
            checksum_key = key[: -len("manifest.json")] + "manifest.checksum"
            raw_sum = await _read_all(self._get, self.bucket, checksum_key)
            expected = raw_sum.decode("ascii", "replace").strip()
        got = hashlib.md5(raw, usedforsecurity=False).hexdigest()
        if expected and expected.lower() != got:
            raise InventoryError(
                f"s3://{self.bucket}/{key}: MD5 {got} does not match manifest.checksum {expected}"
            )
        manifest = parse_manifest(raw, self.bucket, key)
        if self._source_bucket and manifest.source_bucket and manifest.source_bucket != self._source_bucket:
            raise InventoryError(
                f"s3://{self.bucket}/{key} is a report of bucket {manifest.source_bucket!r}, "
                f"not of {self._source_bucket!r}"
            )
        self.manifest = manifest
        return manifest

    def _wants(self) -> Accept | None:
        prefix, accept = self._key_prefix, self._accept
        if not prefix:
            return accept
        if accept is None:
            return lambda k: k.startswith(prefix)
        return lambda k: k.startswith(prefix) and accept(k)

    async def _load_csv(self, f: DataFile, manifest: Manifest, sorter: ExternalSorter) -> None:
        rows = CsvRows(f"s3://{self.bucket}/{f.key}", manifest.columns, sorter.add, self._wants())
        buf: list[bytes] = []
        pending = 0
        async for chunk in self._get(self.bucket, f.key):
            buf.append(chunk)
            pending += len(chunk)
            if pending >= _FEED_BYTES:
                await asyncio.to_thread(rows.feed, b"".join(buf))
                buf, pending = [], 0
        await asyncio.to_thread(rows.feed, b"".join(buf))
        await asyncio.to_thread(rows.finish, f.md5)
        self.stats["bytes"] += rows.size
        self.stats["rows"] += rows.rows
        self.stats["kept"] += rows.kept

    async def _load_columnar(
        self, f: DataFile, manifest: Manifest, sorter: ExternalSorter, spool: Path
    ) -> None:
        name = f"s3://{self.bucket}/{f.key}"
        path = spool / "data-file"
        with path.open("wb") as out:
            async for chunk in self._get(self.bucket, f.key):
                await asyncio.to_thread(out.write, chunk)
        got = await asyncio.to_thread(md5_file, path)
        if got != f.md5.strip().lower():
            raise InventoryError(f"{name}: MD5 {got} does not match the manifest's MD5checksum {f.md5}")
        seen, kept = await asyncio.to_thread(
            columnar_rows, path, manifest.file_format, name, sorter.add, self._wants()
        )
        self.stats["bytes"] += path.stat().st_size
        self.stats["rows"] += seen
        self.stats["kept"] += kept
        path.unlink()

    async def _load(self, sorter: ExternalSorter) -> None:
        manifest = await self.load_manifest()
        with tempfile.TemporaryDirectory(prefix="s3sync-inv-", dir=self._tmpdir) as spool:
            for f in manifest.files:
                if manifest.file_format == "csv":
                    await self._load_csv(f, manifest, sorter)
                else:
                    await self._load_columnar(f, manifest, sorter, Path(spool))
                self.stats["data_files"] += 1
        self.stats["runs"] = sorter.runs

    async def _batches(self, take: Callable[[Iterator[Fields], int], list[T]]) -> AsyncIterator[list[T]]:
        """Read and verify every data file, then yield the merged rows in batches built off the loop."""
        sorter = ExternalSorter(self._tmpdir, run_size=self._run_size)
        try:
            await self._load(sorter)
            it = _dedupe(sorter.sorted())
            while batch := await asyncio.to_thread(take, it, _BATCH):
                yield batch
        finally:
            await asyncio.to_thread(sorter.close)

    async def entries(self) -> AsyncIterator[InventoryObject]:
        """Every live object of the report in key order, with what only the report says."""
        async for batch in self._batches(_take_entries):
            for entry in batch:
                yield entry

    async def objects(self) -> AsyncIterator[ObjectMeta]:
        """The listing's stream: ``ObjectMeta`` in UTF-8 key order."""
        async for batch in self._batches(_take_metas):
            for meta in batch:
                yield meta
