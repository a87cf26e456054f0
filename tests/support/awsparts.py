"""More of what AWS S3 answers, as pure functions: parts, default checksums, delete markers, versions.

moto 5.2 already answers ``HEAD``/``GET ?partNumber=N`` with 206, ``Content-Range``
and ``x-amz-mp-parts-count`` as AWS does; what it gets wrong, and these rules
put right (each cites the recorded corpus entry, see :mod:`support.awsrules`):

* which checksum a *part* answer carries: the whole object's for a single-part
  object, the part's own for a COMPOSITE upload, none for a part of a multi-part
  FULL_OBJECT upload;
* a part number past the last part is a 416 ``InvalidPartNumber`` XML error
  (moto: an HTML page for single-part objects); ``partNumber`` with ``Range`` is 400;
* every object stored without a checksum carries a CRC64NVME FULL_OBJECT one;
* a whole-object COMPOSITE value ends in ``-N`` (moto drops the suffix);
* a GET of a delete marker's version is 405 ``MethodNotAllowed`` (moto: 404
  ``NoSuchVersion``), and a GET whose latest version is a marker carries
  ``x-amz-delete-marker`` and ``x-amz-version-id`` (moto: none);
* ListObjectVersions with ``encoding-type=url`` percent-encodes its keys (moto
  ignores the parameter, so a control character in a key is raw, unparsable XML).
"""

from __future__ import annotations

import base64
import html
import re
from collections.abc import Mapping
from urllib.parse import quote

from support.awsrules import ObjectRule, checksum_of, reproduces, s3_checksum

INVALID_PART = "The requested partnumber is not satisfiable"
PART_AND_RANGE = "Cannot specify both Range header and partNumber query parameter"
METHOD_NOT_ALLOWED = "The specified method is not allowed against this resource."
#: What S3 gives an object stored with no checksum at all.
DEFAULT_ALGORITHM = "CRC64NVME"


@reproduces(
    "s3 TestS3::test_get_object_part [part-with-range]",
    "s3 TestS3::test_get_object_part [part-doesnt-exist]",
    "s3 TestS3::test_get_object_part [part-no-multipart]",
    not_recorded="the headers of a 416, and a HEAD's 416 (no body, as every HEAD error)",
)
def part_error(
    part_number: int, has_range: bool, parts_count: int | None
) -> tuple[int, str, str, dict[str, str]] | None:
    """(status, code, message, extra XML fields) when AWS refuses a ``?partNumber=N`` request.

    ``parts_count`` is the object's part count, ``None`` for a single-part object (one part).
    """
    if has_range:
        return 400, "InvalidRequest", PART_AND_RANGE, {}
    actual = parts_count or 1
    if part_number > actual:
        return (
            416,
            "InvalidPartNumber",
            INVALID_PART,
            {"PartNumberRequested": str(part_number), "ActualPartCount": str(actual)},
        )
    return None


@reproduces(
    "s3 TestS3::test_get_object_part [head-object-part]",
    "s3 TestS3::test_get_object_part [get-object-part-with-checksum]",
    "s3 TestS3::test_get_object_part [get-obj-no-multipart]",
    "s3 TestS3::test_get_object_part_checksum[COMPOSITE] [head-object-part]",
    "s3 TestS3::test_get_object_part_checksum[COMPOSITE] [get-object-part]",
    "s3 TestS3::test_get_object_part_checksum[FULL_OBJECT] [head-object-part]",
    "s3 TestS3MultipartUploadChecksum::test_complete_multipart_parts_checksum_composite[CRC32] "
    "[get-object-part-checksum]",
    "s3 TestS3MultipartUploadChecksum::test_complete_multipart_parts_checksum_full_object[CRC32] "
    "[get-object-part-checksum]",
)
def part_checksum(rule: ObjectRule, data: bytes, parts_count: int | None, lo: int, hi: int) -> dict[str, str]:
    """The checksum headers of a part answer (bytes ``lo..hi`` of ``data``), checksum mode on.

    A single-part object's part 1 is the whole object: its full-object checksum.
    A COMPOSITE upload's part carries that part's own checksum (no ``-N``). A
    FULL_OBJECT upload's part carries none, unless the upload had one part.
    """
    if rule.checksum is None:
        return {}
    name = f"x-amz-checksum-{rule.checksum.lower()}"
    if parts_count is None:
        return {name: s3_checksum(rule.checksum, data), "x-amz-checksum-type": "FULL_OBJECT"}
    if rule.checksum_type == "COMPOSITE":
        value = base64.b64encode(checksum_of(rule.checksum, data[lo : hi + 1])).decode()
        return {name: value, "x-amz-checksum-type": "COMPOSITE"}
    if parts_count == 1:
        return {name: s3_checksum(rule.checksum, data), "x-amz-checksum-type": "FULL_OBJECT"}
    return {}


@reproduces(
    "s3 TestS3::test_get_object_part [head-object-part]",
    "s3 TestS3::test_get_object_part [get-obj-no-multipart]",
    "s3 TestS3::test_get_object_part_checksum[COMPOSITE] [head-object-part]",
    not_recorded="an empty object's part 1 (no range can name zero bytes): left as it comes",
)
def part_status(status: int, headers: Mapping[str, str], part: int) -> tuple[int, dict[str, str]]:
    """(status, headers to add) for a ``?partNumber=N`` answer: 206 with ``Content-Range``, always.

    moto 5.2.6 already answers so; an answer of 200 (older moto, other clones) for
    part 1 of a single-part object is the whole object, so its range is the whole length.
    """
    if status != 200 or part != 1 or "x-amz-mp-parts-count" in headers:
        return status, {}
    length = headers.get("content-length", "")
    if not length.isdigit() or int(length) == 0:
        return status, {}
    n = int(length)
    return 206, {"Content-Range": f"bytes 0-{n - 1}/{n}"}


@reproduces(
    "api TestS3ObjectCRUD::test_get_object_range [get-0-8-checksum]",
    "api TestS3ObjectCRUD::test_get_object_range [get--15]",
    "api TestS3ObjectCRUD::test_get_object_range [get-0-100]",
)
def range_checksum(rule: ObjectRule, data: bytes, crange: str | None) -> dict[str, str]:
    """The checksum headers of a 206 ``Range`` answer: none, unless the range covers the whole object."""
    span = content_range(crange)
    if rule.checksum is None or span is None or (span[0], span[1] + 1) != (0, span[2]):
        return {}
    value = s3_checksum(rule.checksum, data, part_size=rule.part_size)
    return {f"x-amz-checksum-{rule.checksum.lower()}": value, "x-amz-checksum-type": rule.checksum_type}


@reproduces(
    "s3 TestS3::test_get_object_part [head-object-part]",
    "s3 TestS3::test_get_object_part [get-obj-no-multipart]",
)
def content_range(value: str | None) -> tuple[int, int, int] | None:
    """``bytes lo-hi/total`` → (lo, hi, total)."""
    m = re.fullmatch(r"bytes (\d+)-(\d+)/(\d+)", (value or "").strip())
    return (int(m[1]), int(m[2]), int(m[3])) if m else None


@reproduces(
    "s3 TestS3PutObjectChecksum::test_s3_checksum_no_automatic_sdk_calculation [head-obj-no-checksum]",
    "s3 TestS3PutObjectChecksum::test_s3_checksum_no_automatic_sdk_calculation [head-obj-only-checksum-algo]",
    "s3 TestS3MultipartUploadChecksum::test_complete_multipart_parts_checksum_default "
    "[complete-multipart-checksum]",
    "s3 TestS3PresignedPost::test_post_object_default_checksum [head-object]",
    not_recorded=(
        "an SSE-C multipart object created without an algorithm showed no checksum at all "
        "(s3 TestS3SSECEncryption::test_multipart_upload_sse_c [get-obj-sse-c]): SSE-C keys are configured "
        "ones, which get no assigned checksum"
    ),
)
def assigned_rule(has_checksum: bool) -> ObjectRule | None:
    """The rule S3's default checksum gives a key moto stored without one (``None``: it has one).

    Only for keys no test configured: a configured key's checksum is what the
    test configured, and none means an object stored before S3 assigned default
    checksums (December 2024), which still exist.
    """
    return None if has_checksum else ObjectRule(checksum=DEFAULT_ALGORITHM)


@reproduces(
    "s3 TestS3MultipartUploadChecksum::test_complete_multipart_parts_checksum_full_object[CRC32] "
    "[head-object-with-checksum]",
    "s3 TestS3MultipartUploadChecksum::test_complete_multipart_parts_checksum_full_object[CRC32C] "
    "[head-object-with-checksum]",
    "s3 TestS3MultipartUploadChecksum::test_complete_multipart_parts_checksum_full_object[CRC64NVME] "
    "[head-object-with-checksum]",
)
def stored_rule(algorithm: str | None, checksum_type: str | None, etag: str) -> ObjectRule | None:
    """The rule for an unconfigured key from what moto stored (``None``: moto's answer is right).

    No checksum: S3's CRC64NVME (:func:`assigned_rule`). A FULL_OBJECT checksum of
    a multipart upload: the checksum of the whole body, which AWS returns and
    moto 5.2.6 does not (it answers a value of neither form).
    """
    if algorithm is None:
        return assigned_rule(False)
    if (checksum_type or "").upper() == "FULL_OBJECT" and re.search(r"-\d+$", etag.strip('"')):
        return ObjectRule(checksum=algorithm.upper(), checksum_type="FULL_OBJECT")
    return None


@reproduces(
    "s3 TestS3MultipartUploadChecksum::test_complete_multipart_parts_checksum_composite[CRC32] "
    "[head-object-with-checksum]",
    "s3 TestS3MultipartUploadChecksum::test_complete_multipart_parts_checksum_composite[CRC32C] "
    "[complete-multipart-checksum]",
)
def composite_suffix(headers: Mapping[str, str], etag: str) -> dict[str, str]:
    """A whole-object COMPOSITE checksum header with its ``-N`` (N from the ``-N`` ETag); {} if fine."""
    if headers.get("x-amz-checksum-type", "").upper() != "COMPOSITE":
        return {}
    m = re.search(r"-(\d+)$", etag.strip('"'))
    if m is None:
        return {}
    out = {}
    for name, value in headers.items():
        if name in ("x-amz-checksum-type", "x-amz-checksum-algorithm"):
            continue
        if name.startswith("x-amz-checksum-") and "-" not in value:
            out[name] = f"{value}-{m[1]}"
    return out


@reproduces(
    "api TestS3ObjectCRUD::test_delete_object_versioned [get-delete-marker]",
    "api TestS3ObjectCRUD::test_delete_object_versioned [get-deleted-object]",
    "s3 TestS3ObjectLockRetention::test_object_lock_delete_markers [head-object-locked-delete-marker]",
    not_recorded="a HEAD without versionId whose latest version is a delete marker (moto's 404 is kept)",
)
def delete_marker_answer(
    method: str, version_requested: bool, marker_probe: Mapping[str, str] | None
) -> tuple[int, str, str, dict[str, str], dict[str, str]] | None:
    """AWS's answer when moto said 404 to a GET and the probe shows a delete marker.

    ``marker_probe`` is the headers of moto's answer to a HEAD of the same key and
    version (``x-amz-delete-marker: true``, ``x-amz-version-id``), or None when it
    is not a marker. Returns (status, code, message, extra XML fields, headers).
    """
    if method != "GET" or marker_probe is None:
        return None
    if marker_probe.get("x-amz-delete-marker", "").lower() != "true":
        return None
    headers = {"x-amz-delete-marker": "true", "x-amz-version-id": marker_probe.get("x-amz-version-id", "")}
    if version_requested:
        return (
            405,
            "MethodNotAllowed",
            METHOD_NOT_ALLOWED,
            {"Method": "GET", "ResourceType": "DeleteMarker"},
            {**headers, "Allow": "DELETE"},
        )
    return 404, "NoSuchKey", "The specified key does not exist.", {}, headers


_KEYISH = re.compile(rb"<(Key|KeyMarker|NextKeyMarker|Prefix|Delimiter)>(.*?)</\1>", re.S)


@reproduces(
    "list TestS3ListObjectsV2::test_list_objects_v2_continuation_token_safe_chars "
    "[list-objects-start-after-url-type]",
    "list TestS3ListObjectsV2::test_list_objects_v2_with_prefix [list-objects-v2-1]",
    "api TestS3ObjectCRUD::test_delete_object_versioned [list-object-versions]",
    not_recorded=(
        "raw encoded ListObjectVersions output and keys with spaces, '+' or non-ASCII: the listing rule "
        "('/' kept, everything else outside A-Z a-z 0-9 -_.~ percent-encoded) is applied to versions too"
    ),
)
def encode_versions_listing(xml: bytes) -> bytes:
    """A ListVersionsResult as AWS sends it for ``encoding-type=url``: keys percent-encoded.

    Works on the bytes, not a parse: moto's answer may hold raw control
    characters, which no XML parser accepts (that is the point of the encoding).
    """
    if b"<EncodingType>" in xml:
        return xml

    def encode(m: re.Match[bytes]) -> bytes:
        text = html.unescape(m[2].decode("utf-8", "surrogateescape"))
        raw = text.encode("utf-8", "surrogateescape")
        return b"<%s>%s</%s>" % (m[1], quote(raw, safe="/").encode(), m[1])

    out = _KEYISH.sub(encode, xml)
    return re.sub(rb"(<ListVersionsResult[^>]*>)", rb"\1<EncodingType>url</EncodingType>", out, count=1)
