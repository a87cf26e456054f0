"""What one download is checked against, and the check that holds it while the bytes land.

:func:`checker_for` decides (:func:`~s3sync.sync.transfer.integrity.choose`, from
what S3 said) and builds a :class:`BodyCheck`; :mod:`s3sync.sync.transfer.receive`
feeds its hasher every byte and then asks it to :meth:`~BodyCheck.verify`. Nothing
here touches a socket or a file: the only requests are for S3's word on the part
layout, and a second pass over the body is the receiver's (``reread``).

A full-object CRC can also be fed in pieces (:class:`CrcSpans`): the ranged parts
hash their own bytes as they arrive, in any order, and the pieces are joined in
offset order with the algorithm's combine function, so nothing is read back.

A multipart ETag or a composite checksum is recomputed part by part, so the
part layout must be known. Parts need not be equal (UploadPartCopy and many
uploaders make 10, 5, 10, 10, 6 MiB), but most uploaders make them equal, and
asking S3 for every part's size (``HEAD ?partNumber=N``) cost a 5 GiB
``aws s3 cp`` upload 640 requests before its first byte. So the layout is
guessed, then proven: ``HEAD ?partNumber=1`` gives part 1's size (for two parts
that fixes the other), the body is hashed as if every part had that size (the
last the remainder) while it arrives, and only when that does not match is the
real layout read (:meth:`~s3sync.s3.bucket.Bucket.part_sizes`) and the body
hashed again with it, from where it already lies (the temp file, or memory):
never downloaded twice. If it then matches, the body is good; if not, it is an
:class:`~s3sync.errors.IntegrityError` as any other mismatch.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Sequence

import structlog

from s3sync.errors import IntegrityError
from s3sync.model import ObjectMeta
from s3sync.s3.bucket import Bucket
from s3sync.sync.transfer.integrity import (
    Crc,
    Facts,
    Hasher,
    Verification,
    check,
    choose,
    combinable_crc,
    equal_parts,
    new_hasher,
    part_layout_ok,
)

log = structlog.get_logger(__name__)

#: Reads the body again into a fresh hasher (from the temp file or from memory): the relayout's second pass.
Reread = Callable[[Hasher], Awaitable[None]]
#: Asks S3 for every part's size; None when it cannot be known.
Relayout = Callable[[], Awaitable[list[int] | None]]


async def checker_for(bucket: Bucket, key: str, meta: ObjectMeta, *, enabled: bool) -> BodyCheck:
    """How the body described by ``meta`` is verified, ready to be fed.

    A parted check (multipart ETag, composite checksum) costs one
    ``HEAD ?partNumber=1``: two parts are then known, more are guessed equal
    and proven by :meth:`BodyCheck.verify`.
    When equal parts cannot even add up to the size the real layout is read at
    once (the guess would miss for sure).
    """
    verification = choose(Facts.from_meta(meta), enabled=enabled)
    parts = verification.parts or 0
    part1: int | None = None
    if verification.needs_part_size:
        head = await bucket.head(key, part_number=1, version_id=meta.version_id)
        part1 = head.size if head is not None else None

    async def relayout() -> list[int] | None:
        return await bucket.part_sizes(key, parts, meta.version_id, known={1: part1} if part1 else None)

    guess = equal_parts(meta.size, part1, parts) if verification.needs_part_size else None
    if guess is None and part1 is not None and parts > 2:
        return BodyCheck(key, meta.size, verification, await relayout())
    return BodyCheck(key, meta.size, verification, guess, relayout=relayout if parts > 2 else None)


class BodyCheck:
    """One body's verification in progress: every byte to ``hasher`` (None: size only), then :meth:`verify`.

    ``layout`` is the part layout of a parted check; with ``relayout`` it is a guess
    (equal parts), and ``relayout`` reads the real one, asked only on a mismatch. A
    layout that is unknown or does not add up leaves the size alone to check, rather
    than a false alarm on every pass.
    """

    __slots__ = ("_guess", "_relayout", "hasher", "verification")

    def __init__(
        self,
        key: str,
        size: int,
        verification: Verification,
        layout: Sequence[int] | None = None,
        *,
        relayout: Relayout | None = None,
    ) -> None:
        self.verification = verification
        self._guess = list(layout) if relayout is not None and layout is not None else None
        self._relayout = relayout
        self.hasher: Hasher | None = None
        if verification.needs_part_size and not part_layout_ok(size, layout, verification.parts):
            log.info("part layout unknown or inconsistent: size check only", key=key)
        else:
            self.hasher = new_hasher(verification, layout)

    async def verify(self, key: str, size: int, reread: Reread) -> None:
        """Raise :class:`IntegrityError` unless the body matches; a guessed layout is proven first.

        ``reread`` hashes the body again from where it lies (no second download);
        it is called only when the equal-parts guess missed and S3's real layout
        differs from it.
        """
        try:
            check(key, self.verification, self.hasher)
        except IntegrityError:
            if self._relayout is None or self._guess is None:
                raise
            sizes = await self._relayout()
            if sizes == self._guess:
                raise  # the layout was right: the bytes are not
            if not part_layout_ok(size, sizes, self.verification.parts):
                # an object replaced meanwhile, or a server that answers part HEADs oddly: a false
                # alarm would fail the key on every pass, so the size is all that is checked
                log.info("part layout unknown or inconsistent: size check only", key=key)
                return
            hasher = new_hasher(self.verification, sizes)
            assert hasher is not None
            log.info("parts are not equal: hashing again with the real layout", key=key, sizes=sizes)
            await reread(hasher)
            check(key, self.verification, hasher)


class CrcSpan:
    """The CRC of one span of the body (a ranged part, or a region re-read from the temp), from ``lo`` on.

    Fed in the span's own order; ``length`` counts what was fed.
    """

    __slots__ = ("crc", "length", "lo")

    def __init__(self, crc: Crc, lo: int) -> None:
        self.crc, self.lo, self.length = crc, lo, 0

    def update(self, data: bytes | bytearray | memoryview) -> None:
        self.crc.update(data)
        self.length += memoryview(data).nbytes

    def result(self) -> str:
        return self.crc.result()


class CrcSpans:
    """A full-object CRC from spans hashed apart, joined in offset order into ``whole`` (no second read).

    Each ranged part hashes its own bytes as they arrive (:meth:`span`); :meth:`join`
    then folds the spans' CRCs into ``whole`` with the algorithm's combine function,
    which costs nothing next to a pass over the bytes. The spans must tile
    ``[0, size)`` exactly: anything else is a bug in the caller, never a mismatch
    to report as a corrupt body.
    """

    __slots__ = ("_size", "_spans", "_whole")

    def __init__(self, whole: Crc, size: int) -> None:
        self._whole, self._size = whole, size
        self._spans: list[CrcSpan] = []

    def span(self, lo: int) -> CrcSpan:
        """A new span starting at byte ``lo``."""
        span = CrcSpan(self._whole.fresh(), lo)
        self._spans.append(span)
        return span

    def join(self) -> None:
        """Fold every span into ``whole``, in offset order; ``ValueError`` unless they tile the body."""
        pos = 0
        for span in sorted(self._spans, key=lambda s: s.lo):
            if span.lo != pos:
                raise ValueError(f"CRC spans do not tile the body: one starts at {span.lo}, not {pos}")
            self._whole.extend(span.crc, span.length)
            pos += span.length
        if pos != self._size:
            raise ValueError(f"CRC spans cover {pos} bytes of {self._size}")
        self._spans.clear()


def crc_spans(hasher: Hasher | None, size: int) -> CrcSpans | None:
    """Spans to hash ``hasher``'s body in pieces, when it is a CRC that can be combined; else None.

    A digest (MD5, SHA) or a parted check has to see the body in order: None.
    """
    whole = combinable_crc(hasher)
    return CrcSpans(whole, size) if whole is not None else None


__all__ = ["BodyCheck", "CrcSpan", "CrcSpans", "Reread", "checker_for", "crc_spans"]
