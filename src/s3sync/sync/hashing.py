"""Checking bytes against what S3 says they are: additional checksums, MD5, multipart ETags.

:class:`StreamChecker` verifies a body as it streams (single GETs);
:class:`RegionHasher` hashes a preallocated temp file region by region as the
ranged GETs fill it in order, so the multipart ETag (an MD5 of per-part MD5s)
needs no second read of the file.
"""

from __future__ import annotations

import base64
import hashlib
import os
import re
import zlib
from pathlib import Path
from typing import Any

from s3sync.errors import IntegrityError, RetryableError

CHUNK = 1024 * 1024
MD5_RE = re.compile(r"^[0-9a-f]{32}$")
MULTI_RE = re.compile(r"^[0-9a-f]{32}-(\d+)$")


class StreamChecker:
    """Incremental verification against whatever S3 gave us to verify with."""

    def __init__(
        self, headers: dict[str, str] | Any, etag: str | None, sse: str | None, enabled: bool
    ) -> None:
        self.kind: str | None = None
        self.expected: str | None = None
        self._h: Any = None
        if not enabled:
            return
        for name, algo in (("x-amz-checksum-sha256", "sha256"), ("x-amz-checksum-sha1", "sha1")):
            if headers.get(name):
                self.kind, self.expected, self._h = algo, headers[name], hashlib.new(algo)
                return
        if (
            headers.get("x-amz-checksum-crc32")
            and headers.get("x-amz-checksum-type", "FULL_OBJECT") != "COMPOSITE"
        ):
            self.kind, self.expected, self._h = "crc32", headers["x-amz-checksum-crc32"], 0
            return
        if (
            etag
            and MD5_RE.match(etag)
            and sse != "aws:kms"
            and not headers.get("x-amz-server-side-encryption-customer-algorithm")
        ):
            self.kind, self.expected, self._h = "md5", etag, hashlib.md5(usedforsecurity=False)

    def update(self, data: bytes | memoryview) -> None:
        if self.kind is None:
            return
        if self.kind == "crc32":
            self._h = zlib.crc32(data, self._h)
        else:
            self._h.update(data)

    def verify(self, key: str) -> None:
        if self.kind is None:
            return
        if self.kind == "crc32":
            got = base64.b64encode(int(self._h).to_bytes(4, "big")).decode()
        elif self.kind == "md5":
            got = self._h.hexdigest()
        else:
            got = base64.b64encode(self._h.digest()).decode()
        if got != self.expected:
            raise IntegrityError(f"{key}: {self.kind} mismatch (expected {self.expected}, got {got})")


class RegionHasher:
    """MD5 (or multipart ETag) over a file, fed region by region in order."""

    def __init__(self, part_size: int | None) -> None:
        self.part_size = part_size
        self.done = 0
        self._whole = hashlib.md5(usedforsecurity=False)
        self._part = hashlib.md5(usedforsecurity=False)
        self._in_part = 0
        self._digests: list[bytes] = []

    def feed(self, fd: int, upto: int) -> None:
        while self.done < upto:
            n = min(CHUNK * 8, upto - self.done)
            if self.part_size is not None:
                n = min(n, self.part_size - self._in_part)
            data = os.pread(fd, n, self.done)
            if not data:
                raise RetryableError("temp file shorter than written frontier")
            if self.part_size is None:
                self._whole.update(data)
            else:
                self._part.update(data)
                self._in_part += len(data)
                if self._in_part == self.part_size:
                    self._digests.append(self._part.digest())
                    self._part, self._in_part = hashlib.md5(usedforsecurity=False), 0
            self.done += len(data)

    def etag(self) -> str:
        if self.part_size is None:
            return self._whole.hexdigest()
        digests = self._digests + ([self._part.digest()] if self._in_part else [])
        return hashlib.md5(b"".join(digests), usedforsecurity=False).hexdigest() + f"-{len(digests)}"


def multipart_etag_file(path: Path, part_size: int) -> str:
    """The multipart ETag of a whole file, via the same hasher the ranged path uses."""
    hasher = RegionHasher(part_size)
    fd = os.open(path, os.O_RDONLY)
    try:
        hasher.feed(fd, os.fstat(fd).st_size)
    finally:
        os.close(fd)
    return hasher.etag()


def multipart_etag_bytes(data: bytes, part_size: int) -> str:
    digests = [
        hashlib.md5(data[i : i + part_size], usedforsecurity=False).digest()
        for i in range(0, len(data), part_size)
    ]
    return hashlib.md5(b"".join(digests), usedforsecurity=False).hexdigest() + f"-{len(digests)}"
