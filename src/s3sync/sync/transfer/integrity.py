"""How a downloaded object is verified, decided from what S3 said about it.

S3 gives up to three things to check a body against, and each has a trap:

* an **additional checksum** (``x-amz-checksum-crc64nvme|crc32|crc32c|sha1|sha256``,
  sent only when the request asks with ``x-amz-checksum-mode: ENABLED``). A
  ``FULL_OBJECT`` checksum covers the whole body. A ``COMPOSITE`` one (its value
  ends in ``-N``) is a checksum *of the part checksums*: comparing it with a
  checksum of the whole body would fail on every good download, so it is only
  ever recomputed part by part, with the part layout known;
* the **ETag**, which is the MD5 of the body only for single-part objects that are
  unencrypted or SSE-S3 (``AES256``). For SSE-KMS (``aws:kms``), DSSE-KMS
  (``aws:kms:dsse``), SSE-C, or an encryption we do not know, it is an opaque
  token and must never be compared with an MD5;
* a multipart ETag (``md5-of-part-md5s-N``), recomputable only when the part
  layout is known and, again, only when the object is not KMS/DSSE/SSE-C
  encrypted. Parts need not be equal (UploadPartCopy and many uploaders make
  10, 5, 10, 10, 6 MiB): a layout of equal parts (:func:`equal_parts`) is only
  ever a guess to be proven, and the real one is the size of *each* part, asked
  of S3 (see :mod:`s3sync.sync.transfer.verifier`).

When none of them applies the size is all there is; a false alarm is worse than
a weaker check, because a false alarm fails the key on every pass forever.

:func:`choose` is pure (facts in, a :class:`Verification` out) and
:func:`new_hasher` gives the streaming hasher for it. CRCs come from
``awscrt.checksums`` (C, several GB/s; CRC32 from zlib), digests from hashlib:
no pure-Python CRC is ever on the hot path.
"""

from __future__ import annotations

import base64
import enum
import hashlib
import re
import zlib
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Protocol

from s3sync.errors import IntegrityError
from s3sync.model import ObjectMeta

#: Additional checksum algorithms S3 supports, strongest first (the order a choice is made in).
ALGORITHMS: tuple[str, ...] = ("SHA256", "SHA1", "CRC64NVME", "CRC32C", "CRC32")

#: Encryptions whose single-part ETag is the MD5 of the body (``None``: not encrypted).
MD5_ETAG_ENCRYPTIONS: frozenset[str | None] = frozenset({None, "", "AES256"})

_MD5_RE = re.compile(r"^[0-9a-f]{32}$")
_MULTIPART_RE = re.compile(r"^[0-9a-f]{32}-(\d+)$")
_COMPOSITE_RE = re.compile(r"^(.+)-(\d+)$")


class Method(enum.StrEnum):
    """What the body is checked against."""

    CHECKSUM = "checksum"  # a full-object additional checksum
    MD5 = "md5"  # the single-part ETag
    MULTIPART_ETAG = "multipart-etag"  # the multipart ETag, recomputed over the part layout
    COMPOSITE = "composite"  # a composite checksum, recomputed over the part layout
    SIZE = "size"  # nothing but the size


@dataclass(frozen=True, slots=True)
class Facts:
    """What S3 said about one object (a HEAD, a GET's headers, or the listing)."""

    etag: str | None
    size: int
    encryption: str | None = None  # x-amz-server-side-encryption
    sse_customer: bool = False  # x-amz-server-side-encryption-customer-algorithm present
    checksum_algorithm: str | None = None  # upper case, e.g. "CRC64NVME"
    checksum_value: str | None = None  # base64, "-N" suffixed when composite
    checksum_type: str | None = None  # FULL_OBJECT | COMPOSITE | None (older objects: unknown)

    @classmethod
    def from_meta(cls, meta: ObjectMeta) -> Facts:
        """Facts from an ObjectMeta built from GET/HEAD headers (a listing has no checksum value)."""
        return cls(
            etag=meta.etag,
            size=meta.size,
            encryption=meta.encryption,
            sse_customer=meta.sse_customer,
            checksum_algorithm=meta.checksum_algorithm if meta.checksum_value else None,
            checksum_value=meta.checksum_value,
            checksum_type=meta.checksum_type,
        )

    @classmethod
    def from_headers(cls, headers: Mapping[str, str], *, etag: str | None, size: int) -> Facts:
        """Facts from response headers (names lower case, as both GET paths give them)."""
        algorithm, value, kind = checksum_from_headers(headers)
        return cls(
            etag=etag,
            size=size,
            encryption=headers.get("x-amz-server-side-encryption"),
            sse_customer=bool(headers.get("x-amz-server-side-encryption-customer-algorithm")),
            checksum_algorithm=algorithm,
            checksum_value=value,
            checksum_type=kind,
        )


@dataclass(frozen=True, slots=True)
class Verification:
    """The check :func:`choose` picked, and why (the reason goes into logs)."""

    method: Method
    why: str
    expected: str | None = None  # the value to compare with (hex MD5/ETag, base64 checksum)
    algorithm: str | None = None  # CHECKSUM / COMPOSITE: which one
    parts: int | None = None  # MULTIPART_ETAG / COMPOSITE: how many parts S3 says there are

    @property
    def needs_part_size(self) -> bool:
        return self.method in (Method.MULTIPART_ETAG, Method.COMPOSITE)


def checksum_from_headers(headers: Mapping[str, str]) -> tuple[str | None, str | None, str | None]:
    """(algorithm, value, type) of the additional checksum in ``headers``, or three Nones."""
    kind = headers.get("x-amz-checksum-type") or None
    for algorithm in ALGORITHMS:
        value = headers.get(f"x-amz-checksum-{algorithm.lower()}")
        if value:
            return algorithm, value.strip(), kind.upper() if kind else None
    return None, None, None


def etag_is_content_md5(facts: Facts) -> bool:
    """True when the ETag can be an MD5 of the body (plain or multipart form).

    Only unencrypted and SSE-S3 objects qualify: a KMS, DSSE or SSE-C ETag looks
    exactly like an MD5 (32 hex digits) and is not one.
    """
    return bool(facts.etag) and not facts.sse_customer and facts.encryption in MD5_ETAG_ENCRYPTIONS


def is_composite(facts: Facts) -> bool:
    """A composite checksum: typed so, or (older responses without a type) ``-N`` suffixed."""
    if facts.checksum_type == "COMPOSITE":
        return True
    return facts.checksum_value is not None and _COMPOSITE_RE.match(facts.checksum_value) is not None


def is_full_object(facts: Facts) -> bool:
    """A checksum that covers the whole body and can be compared with one computed over it.

    Typed ``FULL_OBJECT``; or untyped on a single-part object (an untyped checksum of a
    multipart upload is a per-part one: before S3 had full-object checksums every
    multipart checksum was composite, and some S3 clones send it without the ``-N``).
    """
    if facts.checksum_algorithm not in ALGORITHMS or not facts.checksum_value or is_composite(facts):
        return False
    if facts.checksum_type == "FULL_OBJECT":
        return True
    return facts.checksum_type is None and not _MULTIPART_RE.match(facts.etag or "")


def choose(facts: Facts, *, enabled: bool = True) -> Verification:
    """The strongest check that can never fail a correct download."""
    if not enabled:
        return Verification(Method.SIZE, "verification disabled")
    algorithm, value = facts.checksum_algorithm, facts.checksum_value
    if is_full_object(facts) and algorithm and value:
        return Verification(Method.CHECKSUM, "full-object checksum", value, algorithm)
    md5_etag = etag_is_content_md5(facts)
    etag = facts.etag or ""
    if md5_etag and _MD5_RE.match(etag):
        return Verification(Method.MD5, "single-part ETag", etag)
    if md5_etag and (m := _MULTIPART_RE.match(etag)):
        return Verification(Method.MULTIPART_ETAG, "multipart ETag", etag, parts=int(m.group(1)))
    if algorithm in ALGORITHMS and value and (m := _COMPOSITE_RE.match(value)):
        return Verification(Method.COMPOSITE, "composite checksum", value, algorithm, parts=int(m.group(2)))
    if facts.etag and not md5_etag:
        why = f"ETag is not an MD5 ({facts.encryption or 'SSE-C'}) and no usable checksum"
    else:
        why = "no checksum or MD5 ETag"
    return Verification(Method.SIZE, why)


def equal_parts(size: int, part1: int | None, parts: int) -> list[int] | None:
    """``parts`` parts of ``part1`` bytes, the last taking the rest; None if they cannot make ``size``.

    What most uploaders make, so what a parted check guesses first; :func:`part_layout_ok`
    judges a layout S3 gave.
    """
    if part1 is None or parts <= 0 or part1 <= 0:
        return None
    rest = size - part1 * (parts - 1)
    return [part1] * (parts - 1) + [rest] if rest > 0 else None


def part_layout_ok(size: int, sizes: Sequence[int] | None, parts: int | None) -> bool:
    """Whether ``sizes`` (each part's size, in order) is a layout of ``parts`` parts making ``size`` bytes.

    The sizes come from S3 (``HEAD ?partNumber=N`` per part, see
    :meth:`s3sync.s3.bucket.Bucket.part_sizes`); a layout that does not add up
    (an object replaced meanwhile, a server that answers part HEADs oddly) is
    not recomputed: a false alarm would fail the key on every pass.
    """
    if not sizes or parts is None or parts <= 0 or len(sizes) != parts:
        return False
    return sum(sizes) == size and all(s > 0 for s in sizes)


# ----------------------------------------------------------------------------- hashers


class Hasher(Protocol):
    """A streaming check: feed every byte in order, then compare."""

    def update(self, data: bytes | bytearray | memoryview) -> None: ...

    def result(self) -> str: ...


_Combine = Callable[[int, int, int], int]


class Crc:
    """A running CRC, serialised as S3 does: big-endian bytes, base64.

    ``combine`` (awscrt's ``combine_crc*``) joins the CRCs of two adjacent blocks
    without their bytes: what lets ranged parts be hashed apart, in whatever order
    they arrive (:class:`~s3sync.sync.transfer.verifier.CrcSpans`).
    """

    __slots__ = ("_combine", "_fn", "_value", "_width")

    def __init__(self, fn: Callable[[bytes, int], int], width: int, combine: _Combine | None = None) -> None:
        self._fn, self._width, self._value, self._combine = fn, width, 0, combine

    def update(self, data: bytes | bytearray | memoryview) -> None:
        self._value = self._fn(data, self._value)  # type: ignore[arg-type]  # buffer protocol

    def fresh(self) -> Crc:
        """A new CRC of the same algorithm, over nothing yet."""
        return Crc(self._fn, self._width, self._combine)

    def extend(self, other: Crc, length: int) -> None:
        """Continue with a block of ``length`` bytes that ``other`` hashed, as if it were fed here."""
        assert self._combine is not None, "only a combinable CRC is extended (combinable_crc)"
        if length:
            self._value = self._combine(self._value, other._value, length)

    def digest(self) -> bytes:
        return self._value.to_bytes(self._width, "big")

    def result(self) -> str:
        return base64.b64encode(self.digest()).decode()


def combinable_crc(hasher: Hasher | None) -> Crc | None:
    """``hasher`` when it is a CRC whose blocks can be hashed apart and combined (see ``CrcSpans``)."""
    if not isinstance(hasher, Crc) or hasher._combine is None:
        return None
    from awscrt import checksums as crt  # its combine functions arrived after its CRCs (CRC32's here)

    return hasher if hasher._combine is not _combine_crc32 or hasattr(crt, "combine_crc32") else None


class _Digest:
    """hashlib under the same interface; ``hex`` for MD5/ETags, base64 for S3 checksums."""

    __slots__ = ("_h", "_hex")

    def __init__(self, name: str, *, hex_result: bool = False) -> None:
        self._h = hashlib.new(name, usedforsecurity=False)
        self._hex = hex_result

    def update(self, data: bytes | bytearray | memoryview) -> None:
        self._h.update(data)

    def digest(self) -> bytes:
        return self._h.digest()

    def result(self) -> str:
        return self._h.hexdigest() if self._hex else base64.b64encode(self._h.digest()).decode()


def _zlib_crc32(data: bytes, value: int) -> int:
    return zlib.crc32(data, value)


def _combine_crc32(crc1: int, crc2: int, length2: int) -> int:
    """awscrt's CRC32 combine, loaded only when spans are joined (zlib has none in Python)."""
    from awscrt import checksums as crt

    return crt.combine_crc32(crc1, crc2, length2)


def checksum_hasher(algorithm: str) -> Crc | _Digest:
    """A streaming hasher for one S3 algorithm; ``result()`` is S3's base64 form."""
    algorithm = algorithm.upper()
    if algorithm in ("CRC64NVME", "CRC32C"):
        # on first use: loading awscrt's native library is ~65 ms, and a no-change pass (W2)
        # or an MD5-verified one never needs it
        from awscrt import checksums as crt

        if algorithm == "CRC64NVME":
            return Crc(crt.crc64nvme, 8, getattr(crt, "combine_crc64nvme", None))
        return Crc(crt.crc32c, 4, getattr(crt, "combine_crc32c", None))
    if algorithm == "CRC32":
        return Crc(_zlib_crc32, 4, _combine_crc32)
    if algorithm in ("SHA1", "SHA256"):
        return _Digest(algorithm.lower())
    raise ValueError(f"unknown checksum algorithm {algorithm!r}")


class PartedHasher:
    """A multipart ETag or a composite checksum: one hash per part, then a hash of them.

    ``layout`` is either every part's size, in order (the real layout, parts of
    any sizes), or one size for parts that are all equal but the last.
    ``inner`` makes each part's hasher (MD5 for ETags, the algorithm for a
    composite) and ``outer`` the hasher of the concatenated raw part digests.
    The result carries S3's ``-N`` suffix. Bytes beyond the layout go into one
    more part, so a body longer than the layout never matches.
    """

    def __init__(
        self,
        layout: int | Sequence[int],
        inner: Callable[[], Crc | _Digest],
        outer: Callable[[], Crc | _Digest],
    ) -> None:
        sizes = [layout] if isinstance(layout, int) else list(layout)
        if not sizes or any(s <= 0 for s in sizes):
            raise ValueError("part sizes must be positive")
        self._sizes = sizes
        self._uniform = isinstance(layout, int)
        self._inner, self._outer = inner, outer
        self._part = inner()
        self._in_part = 0
        self._digests: list[bytes] = []

    def _target(self) -> int | None:
        """The size of the part being hashed; None past the end of an explicit layout."""
        if self._uniform:
            return self._sizes[0]
        n = len(self._digests)
        return self._sizes[n] if n < len(self._sizes) else None

    def update(self, data: bytes | bytearray | memoryview) -> None:
        view = memoryview(data)
        while view:
            target = self._target()
            take = len(view) if target is None else min(len(view), target - self._in_part)
            self._part.update(view[:take])
            self._in_part += take
            view = view[take:]
            if self._in_part == target:
                self._digests.append(self._part.digest())
                self._part, self._in_part = self._inner(), 0

    def result(self) -> str:
        digests = self._digests + ([self._part.digest()] if self._in_part or not self._digests else [])
        outer = self._outer()
        outer.update(b"".join(digests))
        return f"{outer.result()}-{len(digests)}"


def multipart_etag_hasher(layout: int | Sequence[int]) -> PartedHasher:
    """The multipart ETag (hex MD5 of the part MD5s, ``-N``) for a layout (see :class:`PartedHasher`)."""
    return PartedHasher(layout, lambda: _Digest("md5"), lambda: _Digest("md5", hex_result=True))


def new_hasher(verification: Verification, part_size: int | Sequence[int] | None = None) -> Hasher | None:
    """The hasher for ``verification``; None for SIZE (or a parted check without a layout).

    ``part_size`` is the part layout: every part's size, or one size for equal parts.
    """
    method = verification.method
    if method is Method.CHECKSUM and verification.algorithm:
        return checksum_hasher(verification.algorithm)
    if method is Method.MD5:
        return _Digest("md5", hex_result=True)
    if method is Method.MULTIPART_ETAG and part_size:
        return multipart_etag_hasher(part_size)
    if method is Method.COMPOSITE and part_size and verification.algorithm:
        algorithm = verification.algorithm
        return PartedHasher(part_size, lambda: checksum_hasher(algorithm), lambda: checksum_hasher(algorithm))
    return None


def check(key: str, verification: Verification, hasher: Hasher | None) -> None:
    """Raise :class:`IntegrityError` when the hashed body differs from what S3 announced."""
    if hasher is None or verification.expected is None:
        return
    got = hasher.result()
    if got != verification.expected:
        raise IntegrityError(
            f"{key}: {verification.algorithm or verification.method} mismatch "
            f"(expected {verification.expected}, got {got})"
        )


__all__ = [
    "ALGORITHMS",
    "Crc",
    "Facts",
    "Hasher",
    "Method",
    "PartedHasher",
    "Verification",
    "check",
    "checksum_from_headers",
    "checksum_hasher",
    "choose",
    "combinable_crc",
    "equal_parts",
    "etag_is_content_md5",
    "is_composite",
    "is_full_object",
    "multipart_etag_hasher",
    "new_hasher",
    "part_layout_ok",
]
