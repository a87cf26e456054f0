"""Helpers for the model-based test of the sync core (tests/faults/test_model.py).

The model is what S3 holds and what the events said, kept by the test as it
mutates the bucket; :func:`check_mirror` is the oracle of docs/reliability.md's
invariants after quiescence and one reconcile; :class:`FdAudit` compares the
process's open descriptors before and after an example.
"""

from __future__ import annotations

import hashlib
import os
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

MiB = 1024 * 1024


@dataclass
class KeyModel:
    """What the test knows about one key: S3's bytes now, every version it ever had, its last delete."""

    live: bytes | None = None
    versions: list[bytes] = field(default_factory=list)
    last_delete: int | None = None  # id of the event of the delete that made it absent
    delivered: set[int] = field(default_factory=set)  # ids of its events handed to the engine

    @property
    def remove_journaled(self) -> bool:
        """Absent in S3, and the event of that delete was accepted (journaled) by the engine."""
        return self.live is None and self.last_delete is not None and self.last_delete in self.delivered


def upload_parts(s3: Any, bucket: str, key: str, sizes: list[int], salt: str = "") -> tuple[bytes, str]:
    """A multipart upload with exactly these part sizes (unequal allowed); returns (body, ETag)."""
    up = s3.create_multipart_upload(Bucket=bucket, Key=key)
    chunks, done = [], []
    for n, size in enumerate(sizes, start=1):
        seed = hashlib.sha256(f"{key}|{salt}|{n}".encode()).digest()
        chunk = (seed * (size // 32 + 1))[:size]
        r = s3.upload_part(Bucket=bucket, Key=key, UploadId=up["UploadId"], PartNumber=n, Body=chunk)
        done.append({"PartNumber": n, "ETag": r["ETag"]})
        chunks.append(chunk)
    r = s3.complete_multipart_upload(
        Bucket=bucket, Key=key, UploadId=up["UploadId"], MultipartUpload={"Parts": done}
    )
    return b"".join(chunks), r["ETag"]


def check_mirror(
    got: dict[str, bytes], keys: dict[str, KeyModel], skipped: set[str], temps: list[str]
) -> list[str]:
    """The oracle (delete = false, after quiescence and one complete reconcile); the breaches found.

    - a key S3 holds is in the mirror with S3's bytes, unless the reconcile counted it
      as a skip (a key conflict: ``a`` and ``a/b`` cannot both be files);
    - a key whose delete event was journaled is not in the mirror (events always delete);
    - a key deleted without a delivered event may linger, but only with bytes it once had;
    - nothing else is in the mirror, and no temporary file is left.
    """
    problems = [f"temporary file left: {t}" for t in temps]
    for key, m in keys.items():
        held = got.get(key)
        if m.live is not None:
            if held != m.live and key not in skipped:
                what = "missing" if held is None else f"{len(held)} bytes, not S3's {len(m.live)}"
                problems.append(f"{key!r}: S3 holds {len(m.live)} bytes, mirror {what}")
        elif m.remove_journaled:
            if held is not None:
                problems.append(f"{key!r}: its delete event was journaled, yet the file is still there")
        elif held is not None and held not in m.versions:
            problems.append(f"{key!r}: lingering file with bytes the key never had")
    problems += [f"{k!r}: in the mirror, never in S3" for k in got if k not in keys]
    return problems


class FdAudit:
    """Open descriptors of this process, before and after an example.

    A descriptor opened during the example and still open after it is a leak when
    it points into the example's directory: a temp, the state database, a mirror
    file. Sockets, pipes and epoll descriptors are left out: the in-process moto
    server, the fault proxy and the test's own boto3 client open and keep them
    on threads of their own, at any moment (an epoll descriptor was once seen
    appear during an example and stay; it did not come back on replay).
    """

    def __init__(self, root: Path) -> None:
        self.root = str(root)
        self.before = self.snapshot()

    @staticmethod
    def snapshot() -> dict[int, str]:
        out: dict[int, str] = {}
        for name in os.listdir("/proc/self/fd"):
            try:
                out[int(name)] = os.readlink(f"/proc/self/fd/{name}")
            except OSError:
                continue  # closed while we listed (the listing's own fd, say)
        return out

    def _new(self) -> dict[int, str]:
        after = self.snapshot()
        return {fd: t for fd, t in after.items() if self.before.get(fd) != t and t.startswith(self.root)}

    def leaks(self, settle: float = 2.0) -> list[str]:
        """Descriptors still open after the example; one must stay open for ``settle`` seconds to count.

        Other threads of the process (the in-process moto server's request threads)
        open and close selectors of their own at any moment: a descriptor seen once
        is a leak only when it is still there, pointing at the same thing, later.
        """
        new = self._new()
        end = time.monotonic() + settle
        while new and time.monotonic() < end:
            time.sleep(0.05)
            now = self._new()
            new = {fd: t for fd, t in new.items() if now.get(fd) == t}
        return [f"fd {fd} -> {t}" for fd, t in sorted(new.items())]
