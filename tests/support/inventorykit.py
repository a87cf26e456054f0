"""Build S3 Inventory reports laid out exactly as AWS writes them, for tests and the bench.

One report is::

    DEST-PREFIX/SOURCE-BUCKET/CONFIG-ID/YYYY-MM-DDTHH-MMZ/manifest.json
    DEST-PREFIX/SOURCE-BUCKET/CONFIG-ID/YYYY-MM-DDTHH-MMZ/manifest.checksum
    DEST-PREFIX/SOURCE-BUCKET/CONFIG-ID/hive/dt=YYYY-MM-DD-HH-MM/symlink.txt
    DEST-PREFIX/SOURCE-BUCKET/CONFIG-ID/data/<uuid>.csv.gz     (or .parquet / .orc)

CSV data files are gzip, every field double-quoted, no header, keys URL-encoded
as in an HTML form (space ``+``, plus ``%2B``); the manifest's ``fileSchema``
names the columns; ``files[].MD5checksum`` is the MD5 of each data file's bytes.
Nothing here imports s3sync.
"""

from __future__ import annotations

import csv
import datetime as dt
import gzip
import hashlib
import io
import json
import uuid
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import quote_plus

BASIC_SCHEMA = ("Bucket", "Key", "Size", "LastModifiedDate", "ETag", "StorageClass")
VERSIONED_SCHEMA = (
    "Bucket",
    "Key",
    "VersionId",
    "IsLatest",
    "IsDeleteMarker",
    "Size",
    "LastModifiedDate",
    "ETag",
    "StorageClass",
    "IsMultipartUploaded",
    "ChecksumAlgorithm",
)


@dataclass
class Obj:
    """One row of a report (a version, when the report lists versions)."""

    key: str
    size: int
    etag: str
    last_modified: float
    storage_class: str = "STANDARD"
    version_id: str = ""
    is_latest: bool = True
    is_delete_marker: bool = False
    checksum_algorithm: str = ""


def iso_ms(ts: float) -> str:
    """LastModifiedDate as AWS writes it in CSV: milliseconds and ``Z``."""
    return (
        dt.datetime.fromtimestamp(ts, dt.UTC).strftime("%Y-%m-%dT%H:%M:%S.") + f"{int(ts * 1000) % 1000:03d}Z"
    )


def encode_key(key: str, *, slash_safe: bool = False) -> str:
    return quote_plus(key, safe="/" if slash_safe else "")


def csv_gz(
    source_bucket: str, rows: Iterable[Obj], schema: Sequence[str], *, slash_safe: bool = False
) -> bytes:
    text = io.StringIO()
    w = csv.writer(text, quoting=csv.QUOTE_ALL, lineterminator="\n")
    for o in rows:
        values = {
            "Bucket": source_bucket,
            "Key": encode_key(o.key, slash_safe=slash_safe),
            "VersionId": o.version_id,
            "IsLatest": "true" if o.is_latest else "false",
            "IsDeleteMarker": "true" if o.is_delete_marker else "false",
            "Size": "" if o.is_delete_marker else str(o.size),
            "LastModifiedDate": iso_ms(o.last_modified),
            "ETag": "" if o.is_delete_marker else o.etag,
            "StorageClass": "" if o.is_delete_marker else o.storage_class,
            "IsMultipartUploaded": "true" if "-" in o.etag else "false",
            "ChecksumAlgorithm": o.checksum_algorithm,
        }
        w.writerow([values[c] for c in schema])
    return gzip.compress(text.getvalue().encode("utf-8"), mtime=0)


def parquet_bytes(source_bucket: str, rows: Sequence[Obj]) -> bytes:
    """The Parquet flavour (keys not URL-encoded, snake_case columns, timestamps in ms)."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    table = _arrow_table(pa, source_bucket, rows)
    out = io.BytesIO()
    pq.write_table(table, out)
    return out.getvalue()


def orc_bytes(source_bucket: str, rows: Sequence[Obj]) -> bytes:
    import pyarrow as pa
    import pyarrow.orc as orc

    table = _arrow_table(pa, source_bucket, rows)
    out = io.BytesIO()
    orc.write_table(table, out)
    return out.getvalue()


def _arrow_table(pa: Any, source_bucket: str, rows: Sequence[Obj]) -> Any:
    return pa.table(
        {
            "bucket": [source_bucket] * len(rows),
            "key": [o.key for o in rows],
            "size": [o.size for o in rows],
            "last_modified_date": pa.array(
                [dt.datetime.fromtimestamp(o.last_modified, dt.UTC) for o in rows],
                pa.timestamp("ms", tz="UTC"),
            ),
            "e_tag": [o.etag for o in rows],
            "storage_class": [o.storage_class for o in rows],
        }
    )


@dataclass
class Report:
    """Where a report was written, and the bytes of every object it consists of."""

    location: str  # s3://DEST-BUCKET/DEST-PREFIX/SOURCE-BUCKET/CONFIG-ID/
    manifest_key: str
    objects: dict[str, bytes] = field(default_factory=dict)
    data_keys: list[str] = field(default_factory=list)


def build_report(
    dest_bucket: str,
    dest_prefix: str,
    source_bucket: str,
    config_id: str,
    when: dt.datetime,
    files: Sequence[Sequence[Obj]],
    *,
    schema: Sequence[str] = BASIC_SCHEMA,
    file_format: str = "CSV",
    slash_safe: bool = False,
) -> Report:
    """One dated report: one data file per entry of ``files``, manifest, checksum, hive symlink."""
    base = f"{dest_prefix.strip('/')}/{source_bucket}/{config_id}".lstrip("/")
    stamp = when.strftime("%Y-%m-%dT%H-%MZ")
    report = Report(f"s3://{dest_bucket}/{base}/", f"{base}/{stamp}/manifest.json")
    entries = []
    ext = {"CSV": "csv.gz", "Parquet": "parquet", "ORC": "orc"}[file_format]
    for rows in files:
        if file_format == "CSV":
            body = csv_gz(source_bucket, rows, schema, slash_safe=slash_safe)
        elif file_format == "Parquet":
            body = parquet_bytes(source_bucket, list(rows))
        else:
            body = orc_bytes(source_bucket, list(rows))
        key = f"{base}/data/{uuid.uuid4()}.{ext}"
        report.objects[key] = body
        report.data_keys.append(key)
        entries.append({"key": key, "size": len(body), "MD5checksum": hashlib.md5(body).hexdigest()})
    manifest = {
        "sourceBucket": source_bucket,
        "destinationBucket": f"arn:aws:s3:::{dest_bucket}",
        "version": "2016-11-30",
        "creationTimestamp": str(int(when.timestamp() * 1000)),
        "fileFormat": file_format,
        "fileSchema": ", ".join(schema) if file_format == "CSV" else _columnar_schema(file_format),
        "files": entries,
    }
    raw = json.dumps(manifest, indent=4).encode()
    report.objects[report.manifest_key] = raw
    report.objects[f"{base}/{stamp}/manifest.checksum"] = hashlib.md5(raw).hexdigest().encode()
    symlink = "\n".join(f"s3://{dest_bucket}/{k}" for k in report.data_keys) + "\n"
    report.objects[f"{base}/hive/dt={when.strftime('%Y-%m-%d-%H-%M')}/symlink.txt"] = symlink.encode()
    return report


def _columnar_schema(file_format: str) -> str:
    if file_format == "Parquet":
        return (
            "message s3.inventory { required binary bucket (UTF8); required binary key (UTF8); "
            "optional int64 size; optional int64 last_modified_date (TIMESTAMP_MILLIS); "
            "optional binary e_tag (UTF8); optional binary storage_class (UTF8);}"
        )
    return (
        "struct<bucket:string,key:string,size:bigint,last_modified_date:timestamp,"
        "e_tag:string,storage_class:string>"
    )


def upload(s3: Any, bucket: str, objects: Mapping[str, bytes]) -> None:
    for key, body in objects.items():
        s3.put_object(Bucket=bucket, Key=key, Body=body)
