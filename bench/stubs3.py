#!/usr/bin/env python3
"""A tiny S3 stand-in for the scale workloads: a synthetic bucket of N objects and a few real files.

At 10⁶ objects neither moto nor ``rclone serve s3`` over a data directory is the
point: what W6/W8 measure is the client's reconcile (its memory and CPU per
tracked object), so the server must cost little and hold nothing per object.

* The *source* bucket is synthetic: key ``i`` is ``d{i // 1000:04d}/f{i:07d}.bin``
  (generated in sorted order), its body the first ``size`` bytes of
  ``sha256(key) * k``, ETag the MD5 of that body, ``LastModified`` one fixed
  whole second. GET, HEAD and ListObjectsV2 (prefix, start-after,
  continuation-token, max-keys) are answered from that rule alone.
* Every other bucket is a directory under ``--root`` (the inventory report lives
  there): GET/HEAD of files and ListObjectsV2 over the files.
* ``GET /__stats`` returns the request counts by operation and bucket, which is
  how the harness proves an inventory-driven pass made **no** LIST call on the
  source bucket, and a no-change pass no GET.

Authentication is not checked. HTTP/1.1 keep-alive, ``Content-Length`` bodies,
loopback only. Standard library only, like the rest of ``bench/``.
"""

from __future__ import annotations

import argparse
import asyncio
import bisect
import datetime as dt
import hashlib
import json
import os
import re
import signal
from collections import Counter
from collections.abc import Sequence
from email.utils import formatdate
from pathlib import Path
from urllib.parse import parse_qs, unquote, urlsplit
from xml.sax.saxutils import escape

KEY_RE = re.compile(r"d(\d{4})/f(\d{7})\.bin")
MTIME = 1_764_547_200  # 2025-12-01T00:00:00Z, whole seconds as S3 reports them


def key_of(i: int) -> str:
    return f"d{i // 1000:04d}/f{i:07d}.bin"


def body_of(key: str, size: int) -> bytes:
    seed = hashlib.sha256(key.encode()).digest()
    return (seed * (size // 32 + 1))[:size]


def etag_of(key: str, size: int) -> str:
    return hashlib.md5(body_of(key, size)).hexdigest()


class Keys(Sequence[str]):
    """The synthetic bucket's sorted key list, computed on demand (bisect works on it)."""

    def __init__(self, n: int) -> None:
        self.n = n

    def __len__(self) -> int:
        return self.n

    def __getitem__(self, i: int) -> str:  # type: ignore[override]
        if not 0 <= i < self.n:
            raise IndexError(i)
        return key_of(i)


def iso(ts: float) -> str:
    return dt.datetime.fromtimestamp(ts, dt.UTC).strftime("%Y-%m-%dT%H:%M:%S.000Z")


class Stub:
    def __init__(self, source: str, count: int, size: int, root: Path) -> None:
        self.source = source
        self.keys = Keys(count)
        self.size = size
        self.root = root
        self.counts: Counter[str] = Counter()

    # -- objects
    def lookup(self, bucket: str, key: str) -> tuple[bytes, str, float] | None:
        if bucket == self.source:
            m = KEY_RE.fullmatch(key)
            if m is None or int(m.group(2)) >= self.keys.n or key != key_of(int(m.group(2))):
                return None
            body = body_of(key, self.size)
            return body, hashlib.md5(body).hexdigest(), float(MTIME)
        path = self.root / bucket / key
        try:
            body = path.read_bytes()
        except (FileNotFoundError, IsADirectoryError, NotADirectoryError):
            return None
        return body, hashlib.md5(body).hexdigest(), float(int(path.stat().st_mtime))

    def listing(self, bucket: str, q: dict[str, str]) -> bytes:
        prefix = q.get("prefix", "")
        after = q.get("continuation-token") or q.get("start-after") or ""
        max_keys = min(int(q.get("max-keys", "1000")), 1000)
        if bucket == self.source:
            keys: Sequence[str] = self.keys
        else:
            base = self.root / bucket
            keys = sorted(
                (str(p.relative_to(base)) for p in base.rglob("*") if p.is_file()), key=lambda k: k.encode()
            )
        start = max(bisect.bisect_left(keys, prefix), bisect.bisect_right(keys, after) if after else 0)
        page: list[str] = []
        i = start
        while i < len(keys) and len(page) < max_keys:
            k = keys[i]
            if not k.startswith(prefix):
                break
            page.append(k)
            i += 1
        truncated = i < len(keys) and keys[i].startswith(prefix) and len(page) == max_keys
        parts = [
            '<?xml version="1.0" encoding="UTF-8"?>',
            '<ListBucketResult xmlns="http://s3.amazonaws.com/doc/2006-03-01/">',
            f"<Name>{escape(bucket)}</Name><Prefix>{escape(prefix)}</Prefix>",
            f"<KeyCount>{len(page)}</KeyCount><MaxKeys>{max_keys}</MaxKeys>",
            f"<IsTruncated>{'true' if truncated else 'false'}</IsTruncated>",
        ]
        if truncated:
            parts.append(f"<NextContinuationToken>{escape(page[-1])}</NextContinuationToken>")
        for k in page:
            found = self.lookup(bucket, k)
            if found is None:
                continue
            body, etag, mtime = found
            parts.append(
                f"<Contents><Key>{escape(k)}</Key><LastModified>{iso(mtime)}</LastModified>"
                f"<ETag>&quot;{etag}&quot;</ETag><Size>{len(body)}</Size>"
                "<StorageClass>STANDARD</StorageClass></Contents>"
            )
        parts.append("</ListBucketResult>")
        return "".join(parts).encode()

    # -- HTTP
    def handle(self, method: str, target: str) -> tuple[int, dict[str, str], bytes]:
        url = urlsplit(target)
        if url.path == "/__stats":
            return 200, {"Content-Type": "application/json"}, json.dumps(self.counts).encode()
        bucket, _, key = unquote(url.path).lstrip("/").partition("/")
        q = {k: v[0] for k, v in parse_qs(url.query, keep_blank_values=True).items()}
        if not key:
            if method == "GET" and "list-type" in q:
                self.counts[f"LIST {bucket}"] += 1
                return 200, {"Content-Type": "application/xml"}, self.listing(bucket, q)
            self.counts[f"{method} bucket {bucket}"] += 1
            if "location" in q:
                return 200, {}, b'<LocationConstraint xmlns="http://s3.amazonaws.com/doc/2006-03-01/"/>'
            return 200, {"x-amz-bucket-region": "us-east-1"}, b""
        self.counts[f"{method} {'source' if bucket == self.source else bucket}"] += 1
        found = self.lookup(bucket, key)
        if found is None:
            err = b"<Error><Code>NoSuchKey</Code><Message>The specified key does not exist.</Message></Error>"
            return 404, {"Content-Type": "application/xml"}, err
        body, etag, mtime = found
        headers = {
            "ETag": f'"{etag}"',
            "Last-Modified": formatdate(mtime, usegmt=True),
            "Content-Type": "application/octet-stream",
            "Accept-Ranges": "bytes",
        }
        return 200, headers, body

    async def serve_conn(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            while True:
                head = await reader.readuntil(b"\r\n\r\n")
                lines = head.decode("latin-1").split("\r\n")
                method, target, _ = lines[0].split(" ", 2)
                length = 0
                for line in lines[1:]:
                    name, _, value = line.partition(":")
                    if name.strip().lower() == "content-length":
                        length = int(value.strip())
                if length:
                    await reader.readexactly(length)
                status, headers, body = self.handle(method, target)
                reason = {200: "OK", 404: "Not Found"}.get(status, "OK")
                out = [f"HTTP/1.1 {status} {reason}", f"Content-Length: {len(body)}", "Server: stubs3"]
                out += [f"{k}: {v}" for k, v in headers.items()]
                writer.write(("\r\n".join(out) + "\r\n\r\n").encode("latin-1"))
                if method != "HEAD":
                    writer.write(body)
                await writer.drain()
        except (asyncio.IncompleteReadError, ConnectionError, asyncio.LimitOverrunError):
            pass
        finally:
            writer.close()


async def main_async(args: argparse.Namespace) -> None:
    stub = Stub(args.source, args.count, args.size, args.root)
    server = await asyncio.start_server(stub.serve_conn, "127.0.0.1", args.port, backlog=1024)
    port = server.sockets[0].getsockname()[1]
    if args.port_file:
        tmp = args.port_file.with_suffix(".tmp")
        tmp.write_text(str(port))
        os.replace(tmp, args.port_file)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    async with server:
        await stop.wait()


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--source", required=True, help="name of the synthetic bucket")
    ap.add_argument("--count", type=int, required=True, help="objects in the synthetic bucket")
    ap.add_argument("--size", type=int, default=64, help="bytes per synthetic object")
    ap.add_argument("--root", type=Path, required=True, help="directory whose subdirectories are buckets")
    ap.add_argument("--port", type=int, default=0)
    ap.add_argument("--port-file", type=Path, default=None, help="write the bound port here")
    args = ap.parse_args()
    try:
        import uvloop

        uvloop.install()
    except ImportError:
        pass
    asyncio.run(main_async(args))


if __name__ == "__main__":
    main()
