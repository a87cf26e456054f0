"""check_key's byte limit: ASCII keys take a fast path, others are measured in UTF-8 bytes."""

from __future__ import annotations

import pytest

from s3sync.errors import UnsafeKeyError
from s3sync.local.keys import KeyMapper, check_key


@pytest.mark.parametrize(
    ("segment", "ok"),
    [
        ("a" * 255, True),
        ("a" * 256, False),
        ("漢" * 85, True),  # 255 bytes
        ("漢" * 85 + "a", False),  # 256 bytes in 86 characters
        ("é" * 127 + "a", True),  # 255 bytes
        ("é" * 128, False),  # 256 bytes in 128 characters
    ],
)
def test_segment_length_is_counted_in_bytes(segment: str, ok: bool) -> None:
    key = f"dir/{segment}"
    if ok:
        assert check_key(key) == ["dir", segment]
    else:
        with pytest.raises(UnsafeKeyError, match="255-byte"):
            check_key(key)


def test_the_limit_is_the_mappers_own(tmp_path: object) -> None:
    """The cache is keyed by the limit too: a mirror on a filesystem with a smaller one refuses."""
    assert check_key("d/" + "x" * 200) == ["d", "x" * 200]
    small = KeyMapper(tmp_path, name_max=143)  # type: ignore[arg-type]  # eCryptfs-like
    with pytest.raises(UnsafeKeyError):
        small.check("d/" + "x" * 200)


def test_temp_pattern_and_surrogates_are_refused() -> None:
    with pytest.raises(UnsafeKeyError, match="temporary-file"):
        check_key("a/.x.s3sync-tmp-0123abcd")
    with pytest.raises(UnsafeKeyError):
        check_key("a/\udcff")
