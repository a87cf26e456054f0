"""How s3sync verifies a download: check values, the composite rule, the KMS rule.

The CRCs are checked three ways: against the published check values for
``b"123456789"``, against botocore's own serialisation (big-endian, base64,
what S3 sends), and against a slow bit-by-bit reference written here from the
polynomial, over arbitrary chunkings (a streaming hasher must not depend on
how the body was cut).
"""

from __future__ import annotations

import base64
import hashlib
import itertools
import zlib
from typing import Any

import pytest
from botocore import httpchecksum
from hypothesis import given
from hypothesis import strategies as st

from s3sync.errors import IntegrityError
from s3sync.sync.transfer.integrity import (
    Facts,
    Hasher,
    Method,
    check,
    checksum_from_headers,
    checksum_hasher,
    choose,
    equal_parts,
    etag_is_content_md5,
    multipart_etag_hasher,
    new_hasher,
    part_layout_ok,
)
from s3sync.sync.transfer.verifier import BodyCheck, crc_spans

CHECK_INPUT = b"123456789"
CHECK_VALUES = {"CRC64NVME": 0xAE8B14860A799888, "CRC32C": 0xE3069283, "CRC32": 0xCBF43926}


def _b64(raw: bytes) -> str:
    return base64.b64encode(raw).decode()


def _reference_crc64nvme(data: bytes) -> int:
    """CRC-64/NVME bit by bit: reflected polynomial 0x9A6C9329AC4BC9B5, init and xorout all ones."""
    crc = 0xFFFFFFFFFFFFFFFF
    for byte in data:
        crc ^= byte
        for _ in range(8):
            crc = (crc >> 1) ^ (0x9A6C9329AC4BC9B5 if crc & 1 else 0)
    return crc ^ 0xFFFFFFFFFFFFFFFF


def _reference_crc32c(data: bytes) -> int:
    crc = 0xFFFFFFFF
    for byte in data:
        crc ^= byte
        for _ in range(8):
            crc = (crc >> 1) ^ (0x82F63B78 if crc & 1 else 0)
    return crc ^ 0xFFFFFFFF


def _feed(algorithm: str, data: bytes, cuts: list[int]) -> str:
    h = checksum_hasher(algorithm)
    start = 0
    for cut in sorted({c % (len(data) + 1) for c in cuts}):
        h.update(memoryview(data)[start:cut])
        start = cut
    h.update(data[start:])
    return h.result()


class TestCheckValues:
    """Each algorithm gives S3's value: published check values, botocore's encoding, the polynomial."""

    @pytest.mark.parametrize("algorithm", sorted(CHECK_VALUES))
    def test_published_check_value(self, algorithm: str) -> None:
        """CRC of b"123456789" is the catalogue check value, sent big-endian in base64."""
        width = 8 if algorithm == "CRC64NVME" else 4
        h = checksum_hasher(algorithm)
        h.update(CHECK_INPUT)
        assert h.result() == _b64(CHECK_VALUES[algorithm].to_bytes(width, "big"))

    def test_crc64nvme_check_value_literally(self) -> None:
        """The value the issue names: 0xae8b14860a799888."""
        h = checksum_hasher("crc64nvme")
        h.update(CHECK_INPUT)
        assert base64.b64decode(h.result()).hex() == "ae8b14860a799888"

    @pytest.mark.parametrize(
        ("algorithm", "botocore_cls"),
        [
            ("CRC64NVME", httpchecksum.CrtCrc64NvmeChecksum),
            ("CRC32C", httpchecksum.CrtCrc32cChecksum),
            ("CRC32", httpchecksum.Crc32Checksum),
            ("SHA1", httpchecksum.Sha1Checksum),
            ("SHA256", httpchecksum.Sha256Checksum),
        ],
    )
    def test_same_as_botocore(self, algorithm: str, botocore_cls: type) -> None:
        """Our serialisation equals the one botocore validates S3 responses with."""
        data = bytes(range(256)) * 1000
        theirs = botocore_cls()
        theirs.update(data)
        ours = checksum_hasher(algorithm)
        ours.update(data)
        assert ours.result() == theirs.b64digest()

    @given(st.binary(max_size=300), st.lists(st.integers(min_value=0, max_value=300), max_size=6))
    def test_streaming_matches_reference(self, data: bytes, cuts: list[int]) -> None:
        """However the body is chunked, the result equals a one-shot reference computation."""
        assert _feed("CRC64NVME", data, cuts) == _b64(_reference_crc64nvme(data).to_bytes(8, "big"))
        assert _feed("CRC32C", data, cuts) == _b64(_reference_crc32c(data).to_bytes(4, "big"))
        assert _feed("CRC32", data, cuts) == _b64(zlib.crc32(data).to_bytes(4, "big"))
        assert _feed("SHA256", data, cuts) == _b64(hashlib.sha256(data).digest())

    def test_unknown_algorithm_is_refused(self) -> None:
        with pytest.raises(ValueError, match="unknown checksum"):
            checksum_hasher("MD4")


class TestCrcSpans:
    """A full-object CRC from parts hashed apart, in any order, combined in offset order (no second read)."""

    @given(
        st.binary(max_size=300),
        st.lists(st.integers(min_value=0, max_value=300), max_size=6),
        st.randoms(use_true_random=False),
    )
    def test_spans_in_any_order_give_the_whole(self, data: bytes, cuts: list[int], rnd: Any) -> None:
        """However the body is cut into spans and in whatever order they are fed, the result is the body's."""
        bounds = sorted({0, len(data), *(c % (len(data) + 1) for c in cuts)})
        pieces = list(itertools.pairwise(bounds))
        rnd.shuffle(pieces)
        for algorithm in ("CRC64NVME", "CRC32C", "CRC32"):
            whole = checksum_hasher(algorithm)
            spans = crc_spans(whole, len(data))
            assert spans is not None, algorithm
            for lo, hi in pieces:
                span = spans.span(lo)
                span.update(memoryview(data)[lo:hi])
            spans.join()
            assert whole.result() == _feed(algorithm, data, []), algorithm

    @pytest.mark.parametrize("algorithm", ["SHA1", "SHA256"])
    def test_digests_are_not_combinable(self, algorithm: str) -> None:
        """A digest has no combine function: it is hashed in order, never by spans."""
        assert crc_spans(checksum_hasher(algorithm), 10) is None
        assert crc_spans(multipart_etag_hasher(5), 10) is None
        assert crc_spans(None, 10) is None

    def test_spans_that_do_not_tile_the_body_are_refused(self) -> None:
        """A gap or a short cover is a bug of the caller, never passed off as the body's CRC."""
        spans = crc_spans(checksum_hasher("CRC64NVME"), 10)
        assert spans is not None
        spans.span(0).update(b"abcd")
        spans.span(5).update(b"fghij")
        with pytest.raises(ValueError, match="starts at 5, not 4"):
            spans.join()
        short = crc_spans(checksum_hasher("CRC32"), 10)
        assert short is not None
        short.span(0).update(b"abcd")
        with pytest.raises(ValueError, match="cover 4 bytes of 10"):
            short.join()


class TestParted:
    """Multipart ETags and composite checksums are hashes of per-part hashes, ``-N`` suffixed."""

    @given(st.binary(max_size=200), st.integers(min_value=1, max_value=64), st.integers(0, 200))
    def test_multipart_etag(self, data: bytes, part_size: int, cut: int) -> None:
        """The S3 multipart ETag formula, whatever the chunking of the stream."""
        parts = [data[i : i + part_size] for i in range(0, len(data), part_size)] or [b""]
        expected = hashlib.md5(b"".join(hashlib.md5(p).digest() for p in parts)).hexdigest()
        h = multipart_etag_hasher(part_size)
        h.update(data[:cut])
        h.update(data[cut:])
        assert h.result() == f"{expected}-{len(parts)}"

    def test_composite_crc32c(self) -> None:
        """A composite CRC32C is the CRC32C of the big-endian part CRCs, then ``-N``."""
        data = bytes(range(256)) * 40  # 10240 bytes, 3 parts of 4096 (last 2048)
        part_crcs = b"".join(
            _reference_crc32c(data[i : i + 4096]).to_bytes(4, "big") for i in range(0, len(data), 4096)
        )
        expected = f"{_b64(_reference_crc32c(part_crcs).to_bytes(4, 'big'))}-3"
        facts = Facts(
            "e" * 32 + "-3",
            len(data),
            "aws:kms",
            checksum_algorithm="CRC32C",
            checksum_value=expected,
            checksum_type="COMPOSITE",
        )
        v = choose(facts)
        assert (v.method, v.parts) == (Method.COMPOSITE, 3)
        h = new_hasher(v, part_size=4096)
        assert h is not None
        h.update(data)
        check("k", v, h)  # no exception

    def test_part_layout(self) -> None:
        """A layout is recomputed only when its parts add up to the size, one size per part."""
        assert part_layout_ok(10, [4, 4, 2], 3)
        assert part_layout_ok(25, [6, 5, 6, 6, 2], 5)  # unequal parts are legal (UploadPartCopy)
        assert not part_layout_ok(13, [4, 4, 4], 3)
        assert not part_layout_ok(8, [4, 4], 3)  # fewer sizes than the ETag's part count
        assert not part_layout_ok(8, [4, 0, 4], 3)
        assert not part_layout_ok(10, None, 3)
        assert not part_layout_ok(10, [10], None)

    @given(st.lists(st.integers(1, 40), min_size=1, max_size=6), st.integers(0, 300))
    def test_unequal_parts(self, sizes: list[int], cut: int) -> None:
        """Parts of any sizes (10, 5, 10, 10, 6 …): the ETag of exactly those parts, however chunked."""
        data = bytes(i % 251 for i in range(sum(sizes)))
        offsets = [sum(sizes[:i]) for i in range(len(sizes))]
        parts = [data[o : o + n] for o, n in zip(offsets, sizes, strict=True)]
        expected = hashlib.md5(b"".join(hashlib.md5(p).digest() for p in parts)).hexdigest()
        h = multipart_etag_hasher(sizes)
        h.update(data[:cut])
        h.update(data[cut:])
        assert h.result() == f"{expected}-{len(sizes)}"

    def test_first_part_size_is_not_the_layout(self) -> None:
        """Defect 4: hashing 10,5,10,10,6 as parts of 10 gives another ETag; the real layout matches."""
        sizes = [10, 5, 10, 10, 6]
        data = bytes(range(41))
        real = multipart_etag_hasher(sizes)
        guessed = multipart_etag_hasher(10)
        real.update(data)
        guessed.update(data)
        assert real.result() != guessed.result()
        v = choose(Facts(real.result(), 41))
        assert (v.method, v.parts) == (Method.MULTIPART_ETAG, 5)
        h = new_hasher(v, sizes)
        assert h is not None
        h.update(data)
        check("k", v, h)


def _etag(data: bytes, sizes: list[int]) -> str:
    h = multipart_etag_hasher(sizes)
    h.update(data)
    return h.result()


class TestGuessedLayout:
    """A parted check guesses equal parts; the real layout is asked for only when the guess misses.

    ``relayout`` stands for S3's answer (a HEAD per part): it counts how often it is
    asked; ``reread`` stands for the second pass over the body where it lies.
    """

    SIZE = 41
    DATA = bytes(range(41))

    def _check(self, etag: str, guess: list[int], real: list[int] | None) -> tuple[BodyCheck, list[int]]:
        asked: list[int] = []

        async def relayout() -> list[int] | None:
            asked.append(1)
            return real

        checker = BodyCheck("k", self.SIZE, choose(Facts(etag, self.SIZE)), guess, relayout=relayout)
        assert checker.hasher is not None
        checker.hasher.update(self.DATA)
        return checker, asked

    async def _reread(self, hasher: Hasher) -> None:
        hasher.update(self.DATA)

    def test_equal_parts_guess(self) -> None:
        """What most uploaders make: part 1's size for every part, the last the rest."""
        assert equal_parts(41, 10, 5) == [10, 10, 10, 10, 1]
        assert equal_parts(40, 10, 4) == [10, 10, 10, 10]
        assert equal_parts(20, 10, 2) == [10, 10]
        assert equal_parts(25, 10, 4) is None  # four parts of 10 cannot make 25: never a guess
        assert equal_parts(10, None, 2) is None  # part 1 unknown

    async def test_right_guess_asks_nothing(self) -> None:
        sizes = [10, 10, 10, 10, 1]
        checker, asked = self._check(_etag(self.DATA, sizes), sizes, sizes)
        await checker.verify("k", self.SIZE, self._reread)
        assert asked == []

    async def test_wrong_guess_is_proven_with_the_real_layout(self) -> None:
        """Parts of 10, 5, 10, 10, 6 hashed as parts of 10 miss; the real layout, hashed again, matches."""
        real = [10, 5, 10, 10, 6]
        checker, asked = self._check(_etag(self.DATA, real), [10, 10, 10, 10, 1], real)
        await checker.verify("k", self.SIZE, self._reread)
        assert asked == [1]

    async def test_damaged_body_still_fails(self) -> None:
        """The real layout does not excuse damaged bytes: the second pass must match too."""
        real = [10, 5, 10, 10, 6]
        damaged = bytes([255]) + self.DATA[1:]
        checker, asked = self._check(_etag(damaged, real), [10, 10, 10, 10, 1], real)
        with pytest.raises(IntegrityError):
            await checker.verify("k", self.SIZE, self._reread)
        assert asked == [1]

    async def test_right_layout_wrong_bytes_fails_without_a_second_pass(self) -> None:
        sizes = [10, 10, 10, 10, 1]
        damaged = bytes([255]) + self.DATA[1:]
        checker, _ = self._check(_etag(damaged, sizes), sizes, sizes)
        reread: list[int] = []

        async def count(hasher: Hasher) -> None:
            reread.append(1)

        with pytest.raises(IntegrityError):
            await checker.verify("k", self.SIZE, count)
        assert reread == []

    async def test_unknown_real_layout_leaves_the_size(self) -> None:
        """S3 cannot say (a part HEAD 404s: the object was replaced): no false alarm on every pass."""
        real = [10, 5, 10, 10, 6]
        checker, asked = self._check(_etag(self.DATA, real), [10, 10, 10, 10, 1], None)
        await checker.verify("k", self.SIZE, self._reread)
        assert asked == [1]

    def test_layout_that_does_not_add_up_is_size_only(self) -> None:
        v = choose(Facts(_etag(self.DATA, [10, 10, 10, 10, 1]), self.SIZE))
        assert BodyCheck("k", self.SIZE, v, [10, 10, 10]).hasher is None
        assert BodyCheck("k", self.SIZE, v, None).hasher is None


class TestChoice:
    """``choose`` never picks a check that a correct download could fail."""

    def test_full_object_checksum_first(self) -> None:
        v = choose(
            Facts(
                "a" * 32,
                9,
                checksum_algorithm="CRC64NVME",
                checksum_value="rosUhgp5mIg=",
                checksum_type="FULL_OBJECT",
            )
        )
        assert (v.method, v.algorithm, v.expected) == (Method.CHECKSUM, "CRC64NVME", "rosUhgp5mIg=")

    @pytest.mark.parametrize("encryption", ["aws:kms", "aws:kms:dsse"])
    def test_kms_with_checksum_uses_checksum(self, encryption: str) -> None:
        v = choose(Facts("a" * 32, 9, encryption, checksum_algorithm="CRC32", checksum_value="yfQ5Jg=="))
        assert v.method is Method.CHECKSUM

    @pytest.mark.parametrize("encryption", ["aws:kms", "aws:kms:dsse", "aws:some-future-kind"])
    @pytest.mark.parametrize(
        "etag", ["0123456789abcdef0123456789abcdef", "0123456789abcdef0123456789abcdef-4"]
    )
    def test_kms_etag_never_compared(self, encryption: str, etag: str) -> None:
        """A KMS/DSSE (or unknown) ETag looks like an MD5 and is not one: size only."""
        facts = Facts(etag, 100, encryption)
        assert not etag_is_content_md5(facts)
        v = choose(facts)
        assert v.method is Method.SIZE and v.expected is None
        assert new_hasher(v) is None

    def test_sse_c_etag_never_compared(self) -> None:
        assert choose(Facts("0" * 32, 5, "AES256", sse_customer=True)).method is Method.SIZE

    @pytest.mark.parametrize("encryption", [None, "AES256"])
    def test_plain_and_sse_s3_use_md5(self, encryption: str | None) -> None:
        v = choose(Facts("0123456789abcdef0123456789abcdef", 5, encryption))
        assert (v.method, v.expected) == (Method.MD5, "0123456789abcdef0123456789abcdef")
        v = choose(Facts("0123456789abcdef0123456789abcdef-7", 5, encryption))
        assert (v.method, v.parts) == (Method.MULTIPART_ETAG, 7)
        assert v.needs_part_size

    @pytest.mark.parametrize("typed", ["COMPOSITE", None])
    def test_composite_never_compared_as_full(self, typed: str | None) -> None:
        """A ``-N`` value (typed COMPOSITE, or untyped as older objects are) is not a full checksum."""
        facts = Facts(
            "0123456789abcdef0123456789abcdef-2",
            10,
            checksum_algorithm="CRC32",
            checksum_value="AAAAAA==-2",
            checksum_type=typed,
        )
        v = choose(facts)
        assert v.method is Method.MULTIPART_ETAG  # the ETag still works for a plain object
        kms = choose(
            Facts(
                "f" * 32 + "-2",
                10,
                "aws:kms",
                checksum_algorithm="CRC32",
                checksum_value="AAAAAA==-2",
                checksum_type=typed,
            )
        )
        assert (kms.method, kms.parts) == (Method.COMPOSITE, 2)
        assert new_hasher(kms) is None  # without a part size there is nothing to compare

    def test_untyped_checksum_of_multipart_object_is_not_full(self) -> None:
        """No type, no ``-N``, but a multipart ETag: a per-part value (as moto sends), never compared."""
        facts = Facts(
            "0123456789abcdef0123456789abcdef-3", 10, checksum_algorithm="CRC32", checksum_value="VQhQCQ=="
        )
        assert choose(facts).method is Method.MULTIPART_ETAG
        typed = Facts(
            "0123456789abcdef0123456789abcdef-3",
            10,
            checksum_algorithm="CRC32",
            checksum_value="VQhQCQ==",
            checksum_type="FULL_OBJECT",
        )
        assert choose(typed).method is Method.CHECKSUM
        single = Facts(
            "0123456789abcdef0123456789abcdef", 10, checksum_algorithm="CRC32", checksum_value="VQhQCQ=="
        )
        assert choose(single).method is Method.CHECKSUM

    def test_disabled(self) -> None:
        assert choose(Facts("0" * 32, 1), enabled=False).method is Method.SIZE

    def test_no_etag_no_checksum(self) -> None:
        assert choose(Facts(None, 1)).method is Method.SIZE


class TestHeaders:
    """Headers as both GET paths give them (lower-case names) become facts."""

    def test_from_headers(self) -> None:
        facts = Facts.from_headers(
            {
                "x-amz-server-side-encryption": "aws:kms:dsse",
                "x-amz-checksum-crc64nvme": "rosUhgp5mIg=",
                "x-amz-checksum-type": "FULL_OBJECT",
            },
            etag="a" * 32,
            size=9,
        )
        assert facts.encryption == "aws:kms:dsse"
        assert (facts.checksum_algorithm, facts.checksum_value, facts.checksum_type) == (
            "CRC64NVME",
            "rosUhgp5mIg=",
            "FULL_OBJECT",
        )
        assert not facts.sse_customer

    def test_sse_customer(self) -> None:
        facts = Facts.from_headers(
            {"x-amz-server-side-encryption-customer-algorithm": "AES256"}, etag="a" * 32, size=1
        )
        assert facts.sse_customer and choose(facts).method is Method.SIZE

    def test_no_checksum(self) -> None:
        assert checksum_from_headers({"etag": '"x"'}) == (None, None, None)


class TestCheck:
    """A mismatch is an IntegrityError naming the key and both values."""

    def test_mismatch(self) -> None:
        v = choose(Facts(hashlib.md5(b"right").hexdigest(), 5))
        h = new_hasher(v)
        assert h is not None
        h.update(b"wrong")
        with pytest.raises(IntegrityError, match="k: md5 mismatch"):
            check("k", v, h)

    def test_checksum_match(self) -> None:
        value = _b64(CHECK_VALUES["CRC64NVME"].to_bytes(8, "big"))
        v = choose(Facts("a" * 32, 9, "aws:kms", checksum_algorithm="CRC64NVME", checksum_value=value))
        h = new_hasher(v)
        assert h is not None
        h.update(CHECK_INPUT)
        check("k", v, h)
        h.update(b"x")
        with pytest.raises(IntegrityError, match="CRC64NVME mismatch"):
            check("k", v, h)
