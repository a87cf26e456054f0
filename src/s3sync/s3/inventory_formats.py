"""Rows out of S3 Inventory data files: gzip CSV streamed, Parquet and ORC via pyarrow.

Every format ends in the same row, handed to a sink (the external sorter), so
the reader above never cares which format a report uses: one ``str``, the
fields joined by NUL, key first (see :mod:`s3sync.s3.extsort` for why)::

    key \0 size \0 etag \0 last_modified \0 version_id \0 checksum_algorithm \0 storage_class

:func:`split_row` turns it back into typed fields.

Columns are matched by name, whatever the spelling: the CSV ``fileSchema`` says
``LastModifiedDate``, Parquet and ORC say ``last_modified_date``; both fold to
``lastmodifieddate``. In a versioned report only the latest version of a key
counts, and a key whose latest version is a delete marker does not exist.
CSV keys are URL-encoded as in an HTML form (``+`` is a space, ``%2B`` a plus);
Parquet and ORC keys are not.
"""

from __future__ import annotations

import csv
import datetime as dt
import hashlib
import importlib
import zlib
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any
from urllib.parse import unquote_plus

from s3sync.errors import S3SyncError
from s3sync.model import normalize_etag

Row = str
Fields = tuple[str, int, str | None, float, str | None, str | None, str | None]
Sink = Callable[[Row], None]
Accept = Callable[[str], bool]

REQUIRED = ("key", "size", "lastmodifieddate", "etag")
OPTIONAL = ("versionid", "islatest", "isdeletemarker", "checksumalgorithm", "storageclass")


class InventoryError(S3SyncError):
    """The inventory report is missing, malformed or corrupt: the pass fails, nothing is deleted."""

    code = "inventory"


def fold(name: str) -> str:
    """One spelling for a column name: ``LastModifiedDate`` and ``last_modified_date`` agree."""
    return name.strip().replace("_", "").replace(" ", "").lower()


def column_index(columns: Sequence[str], where: str) -> dict[str, int]:
    """Positions of the columns we use; an :class:`InventoryError` naming a missing required one."""
    idx: dict[str, int] = {}
    for i, name in enumerate(columns):
        idx.setdefault(fold(name), i)
    missing = [c for c in REQUIRED if c not in idx]
    if missing:
        raise InventoryError(f"{where}: fileSchema lacks required column(s) {', '.join(missing)}")
    return {c: idx[c] for c in (*REQUIRED, *OPTIONAL) if c in idx}


def make_row(
    key: str,
    size: int,
    etag: str | None,
    modified: float,
    version_id: str | None,
    algo: str | None,
    storage_class: str | None,
) -> Row:
    return (
        f"{key}\0{size}\0{etag or ''}\0{modified!r}\0{version_id or ''}\0{algo or ''}\0{storage_class or ''}"
    )


def split_row(row: Row) -> Fields:
    """The typed fields of a row (the key may itself hold a NUL: split from the right)."""
    key, size, etag, modified, version_id, algo, storage_class = row.rsplit("\0", 6)
    return (
        key,
        int(size),
        etag or None,
        float(modified),
        version_id or None,
        algo or None,
        storage_class or None,
    )


def row_key(row: Row) -> str:
    return row.rsplit("\0", 6)[0]


def _iso_ts(value: str) -> float:
    if not value:
        return 0.0
    parsed = dt.datetime.fromisoformat(value)
    if parsed.tzinfo is None:
        parsed = parsed.replace(tzinfo=dt.UTC)
    return parsed.timestamp()


def _plain(raw: str) -> str:
    if "%" in raw:
        return unquote_plus(raw, errors="strict")
    return raw.replace("+", " ") if "+" in raw else raw


class KeyDecoder:
    """``unquote_plus`` for report keys, with the directory part memoised.

    ``unquote_plus`` costs several microseconds a key in pure Python, the
    largest single cost of reading a report; keys of one directory share their
    encoded prefix (up to the last ``%2F``), so that part is decoded once.
    Splitting at an encoded ``/`` never cuts a multi-byte sequence, so the
    result is exactly ``unquote_plus(raw)``.
    """

    def __init__(self, limit: int = 4096) -> None:
        self._dirs: dict[str, str] = {}
        self._limit = limit

    def __call__(self, raw: str) -> str:
        if "%" not in raw:
            return raw.replace("+", " ") if "+" in raw else raw
        head, sep, tail = raw.rpartition("%2F")
        if not sep:
            return _plain(raw)
        d = self._dirs.get(head)
        if d is None:
            if len(self._dirs) >= self._limit:
                self._dirs.clear()
            d = self._dirs[head] = _plain(head)
        return f"{d}/{_plain(tail)}"


class CsvRows:
    """Feeds gzip CSV bytes as they arrive; checks the file's MD5 and gzip trailer at the end.

    Lines are cut at ``\\n`` so a chunk boundary never splits a row; keys are
    URL-encoded, so a raw newline inside a quoted field cannot occur. A gzip
    file may hold several members back to back; each is decoded in turn.
    """

    def __init__(self, name: str, columns: Sequence[str], sink: Sink, accept: Accept | None) -> None:
        self.name = name
        self._idx = column_index(columns, name)
        self._width = len(columns)
        self._sink = sink
        self._accept = accept
        self._md5 = hashlib.md5(usedforsecurity=False)
        self._z = zlib.decompressobj(wbits=47)
        self._decode_key = KeyDecoder()
        self._rest = b""
        self._broken: InventoryError | None = None
        self.line = 0
        self.rows = 0
        self.kept = 0
        self.size = 0

    def feed(self, data: bytes) -> None:
        """Hash and parse one block; a parse error is held until :meth:`finish` has checked the MD5.

        A corrupt file usually breaks the gzip stream or a row first; the MD5
        mismatch is the clearer diagnosis, so it is the one reported.
        """
        self._md5.update(data)
        self.size += len(data)
        if self._broken is not None:
            return
        try:
            self._decode(data)
        except InventoryError as exc:
            self._broken = exc

    def _decode(self, data: bytes) -> None:
        out = bytearray()
        while data:
            try:
                out += self._z.decompress(data)
            except zlib.error as exc:
                raise InventoryError(f"{self.name}: not a valid gzip file ({exc})") from exc
            if self._z.eof:
                data = self._z.unused_data
                if data:
                    self._z = zlib.decompressobj(wbits=47)
            else:
                data = b""
        self._lines(bytes(out))

    def finish(self, md5_hex: str) -> None:
        """The whole file has been fed: check the MD5 first, then that nothing was cut short."""
        got = self._md5.hexdigest()
        if got != md5_hex.strip().lower():
            raise InventoryError(
                f"{self.name}: MD5 {got} does not match the manifest's MD5checksum {md5_hex}"
            )
        if self._broken is not None:
            raise self._broken
        if not self._z.eof:
            raise InventoryError(f"{self.name}: gzip stream ends early")
        if self._rest.strip():
            self._lines(b"\n")

    def _lines(self, block: bytes) -> None:
        data = self._rest + block
        cut = data.rfind(b"\n") + 1
        self._rest = data[cut:]
        if not cut:
            return
        try:
            text = data[:cut].decode("utf-8")
        except UnicodeDecodeError as exc:
            raise InventoryError(f"{self.name}: not UTF-8 near line {self.line + 1}") from exc
        idx, width, sink, accept, decode = self._idx, self._width, self._sink, self._accept, self._decode_key
        ki, si, li, ei = idx["key"], idx["size"], idx["lastmodifieddate"], idx["etag"]
        vi, lat, dm = idx.get("versionid"), idx.get("islatest"), idx.get("isdeletemarker")
        ci, sci = idx.get("checksumalgorithm"), idx.get("storageclass")
        for row in csv.reader(text.splitlines()):
            self.line += 1
            if not row:
                continue
            if len(row) != width:
                raise InventoryError(
                    f"{self.name}: line {self.line} has {len(row)} fields, fileSchema names {width}"
                )
            self.rows += 1
            if lat is not None and row[lat].lower() == "false":
                continue
            if dm is not None and row[dm].lower() == "true":
                continue
            try:
                key = decode(row[ki])
                if accept is not None and not accept(key):
                    continue
                item = make_row(
                    key,
                    int(row[si]) if row[si] else 0,
                    normalize_etag(row[ei]),
                    _iso_ts(row[li]),
                    row[vi] if vi is not None else None,
                    row[ci] if ci is not None else None,
                    row[sci] if sci is not None else None,
                )
            except ValueError as exc:  # bad int, bad date, bad percent-encoding
                raise InventoryError(f"{self.name}: line {self.line}: {exc}") from exc
            self.kept += 1
            sink(item)


def md5_file(path: Path) -> str:
    h = hashlib.md5(usedforsecurity=False)
    with path.open("rb") as fh:
        while chunk := fh.read(1 << 20):
            h.update(chunk)
    return h.hexdigest()


def _pyarrow(module: str) -> Any:
    """Import a pyarrow module lazily: only Parquet and ORC reports need the optional extra."""
    try:
        return importlib.import_module(module)
    except ImportError as exc:
        raise InventoryError(
            "this inventory report is Parquet or ORC, which needs pyarrow: pip install 's3sync[inventory]'"
        ) from exc


def _ts_value(value: Any) -> float:
    if value is None:
        return 0.0
    if isinstance(value, dt.datetime):
        if value.tzinfo is None:
            value = value.replace(tzinfo=dt.UTC)
        return float(value.timestamp())
    if isinstance(value, (int, float)):
        return float(value) / 1000.0  # AWS writes timestamps as epoch milliseconds
    return _iso_ts(str(value))


def columnar_rows(
    path: Path, file_format: str, name: str, sink: Sink, accept: Accept | None
) -> tuple[int, int]:
    """Every row of a Parquet or ORC data file into ``sink``; returns (rows seen, rows kept)."""
    if file_format == "parquet":
        pf = _pyarrow("pyarrow.parquet").ParquetFile(path)
        names = pf.schema_arrow.names
        idx = column_index(names, name)
        cols = [names[i] for i in idx.values()]
        batches = pf.iter_batches(batch_size=8192, columns=cols)
    else:
        of = _pyarrow("pyarrow.orc").ORCFile(path)
        names = of.schema.names
        idx = column_index(names, name)
        cols = [names[i] for i in idx.values()]
        batches = (of.read_stripe(i, columns=cols) for i in range(of.nstripes))
    seen = kept = 0
    for batch in batches:
        data = {fold(n): batch.column(n).to_pylist() for n in batch.schema.names}
        keys, sizes, mods, etags = data["key"], data["size"], data["lastmodifieddate"], data["etag"]
        latest, marker = data.get("islatest"), data.get("isdeletemarker")
        vids, algos, classes = data.get("versionid"), data.get("checksumalgorithm"), data.get("storageclass")
        for i, key in enumerate(keys):
            seen += 1
            if (latest is not None and latest[i] is False) or (marker is not None and marker[i] is True):
                continue
            if key is None or (accept is not None and not accept(key)):
                continue
            kept += 1
            sink(
                make_row(
                    key,
                    int(sizes[i] or 0),
                    normalize_etag(etags[i]),
                    _ts_value(mods[i]),
                    vids[i] if vids is not None else None,
                    algos[i] if algos is not None else None,
                    classes[i] if classes is not None else None,
                )
            )
    return seen, kept
