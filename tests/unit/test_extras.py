"""Requester-pays and SSE-C request headers (s3/extras.py): the key file, the headers, no leaks."""

from __future__ import annotations

import base64
import hashlib
from pathlib import Path

import pytest

from s3sync.errors import ConfigError
from s3sync.s3.extras import RequestExtras, load_sse_customer_key, sse_c_headers

KEY = bytes(range(7, 39))


class TestKeyFile:
    """The key file holds 32 bytes, raw or base64; anything else is a ConfigError that shows no content."""

    @pytest.mark.parametrize(
        "content", [KEY, base64.b64encode(KEY), base64.b64encode(KEY) + b"\n", b"  " + base64.b64encode(KEY)]
    )
    def test_raw_or_base64(self, tmp_path: Path, content: bytes) -> None:
        path = tmp_path / "k"
        path.write_bytes(content)
        assert load_sse_customer_key(path) == KEY

    @pytest.mark.parametrize("content", [KEY[:31], KEY + b"x", base64.b64encode(KEY[:16]), b"not base64 !!"])
    def test_wrong_size_refused_without_echo(self, tmp_path: Path, content: bytes) -> None:
        path = tmp_path / "k"
        path.write_bytes(content)
        with pytest.raises(ConfigError, match="must hold a 32-byte key") as exc:
            load_sse_customer_key(path)
        assert content.decode("latin-1").strip() not in str(exc.value)

    def test_missing_file(self, tmp_path: Path) -> None:
        with pytest.raises(ConfigError, match="cannot read"):
            load_sse_customer_key(tmp_path / "absent")


class TestHeaders:
    """Which headers go where."""

    def test_sse_c_headers(self) -> None:
        h = sse_c_headers(KEY)
        assert h["x-amz-server-side-encryption-customer-algorithm"] == "AES256"
        assert base64.b64decode(h["x-amz-server-side-encryption-customer-key"]) == KEY
        assert (
            h["x-amz-server-side-encryption-customer-key-md5"]
            == base64.b64encode(hashlib.md5(KEY).digest()).decode()
        )

    def test_payer_on_every_request_sse_c_on_objects(self) -> None:
        extras = RequestExtras(request_payer=True, sse_customer_key=KEY)
        assert dict(extras.every) == {"x-amz-request-payer": "requester"}
        assert extras.objects["x-amz-request-payer"] == "requester"
        assert len(extras.objects) == 4

    def test_nothing_by_default(self) -> None:
        extras = RequestExtras()
        assert not extras and dict(extras.objects) == {} and dict(extras.every) == {}

    def test_repr_hides_the_key(self) -> None:
        text = repr(RequestExtras(sse_customer_key=KEY))
        assert base64.b64encode(KEY).decode() not in text and KEY.hex() not in text
        assert "x-amz-server-side-encryption-customer-key" in text  # names only
