"""ListObjectVersions pages whose keys hold control characters parse on the lean path.

Both paths send ``encoding-type=url`` and AWS percent-encodes the keys (the realism
suite checks that end to end). A server that ignores the parameter (moto) sends
``a\\x01b`` raw, which is not XML 1.0; the lean parser parks such bytes and gives
the keys back exactly, instead of failing the ``--version-at`` pass.
"""

from __future__ import annotations

import pytest

from s3sync.s3.versions import parse_versions_page

PAGE = (
    '<?xml version="1.0" encoding="UTF-8"?><ListVersionsResult xmlns="http://s3.amazonaws.com/doc/2006-03-01/">'
    "<IsTruncated>true</IsTruncated><NextKeyMarker>{marker}</NextKeyMarker>"
    "<NextVersionIdMarker>v2</NextVersionIdMarker>{encoding}"
    "<Version><Key>{key}</Key><VersionId>v1</VersionId><IsLatest>true</IsLatest>"
    "<LastModified>2026-01-01T00:00:00.000Z</LastModified><ETag>&quot;e&quot;</ETag><Size>3</Size></Version>"
    "<DeleteMarker><Key>{key2}</Key><VersionId>v2</VersionId><IsLatest>true</IsLatest>"
    "<LastModified>2026-01-01T00:00:00.000Z</LastModified></DeleteMarker></ListVersionsResult>"
)


@pytest.mark.parametrize("key", ["ctl\x01key", "tab\tand\x1f", "bell\x07/ü"])
def test_raw_control_characters(key: str) -> None:
    body = PAGE.format(marker=key, encoding="", key=key, key2=key + "\x02").encode()
    page = parse_versions_page(body)
    assert [(e.key, e.delete_marker) for e in page.entries] == [(key, False), (key + "\x02", True)]
    assert page.next_key_marker == key and page.truncated


def test_encoded_keys_decoded() -> None:
    body = PAGE.format(
        marker="ctl%01key", encoding="<EncodingType>url</EncodingType>", key="ctl%01key", key2="a+b%2Bc"
    ).encode()
    page = parse_versions_page(body)
    assert [e.key for e in page.entries] == ["a b+c", "ctl\x01key"]  # S3 order
    assert page.next_key_marker == "ctl\x01key"


def test_private_use_keys_untouched() -> None:
    """A key really holding U+F701 is not mistaken for a parked byte."""
    body = PAGE.format(marker="k", encoding="", key="pua\uf701\x01", key2="x").encode()
    with pytest.raises(Exception, match="malformed XML"):
        parse_versions_page(body)  # raw control character and a real U+F7xx: refused, not guessed
