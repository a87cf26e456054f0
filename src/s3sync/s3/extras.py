"""Headers some buckets demand on requests: requester pays and SSE-C, the same on both paths.

* **Requester pays** (``s3.request_payer``): ``x-amz-request-payer: requester``
  on *every* request — listing, HEAD bucket, HEAD and GET of objects. Without
  it S3 answers 403 to anyone but the owner.
* **SSE-C** (``s3.sse_customer_key_file``): an object stored with a customer
  key is readable only with the three ``x-amz-server-side-encryption-customer-*``
  headers on each GET and HEAD (ranged GETs and ``?partNumber`` HEADs too).

The lean path adds :attr:`RequestExtras.every` in its signer and the facade
adds :attr:`RequestExtras.objects` to GETs; the aioboto3 path gets both from
``before-sign`` handlers (:meth:`RequestExtras.register`), so they are signed
like any header. The key is read once from its file; this object's ``repr``
never shows it, and nothing here logs.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from s3sync.config.sections import S3Settings
from s3sync.errors import ConfigError

SSE_C_ALGORITHM = "AES256"
KEY_BYTES = 32
_OBJECT_OPERATIONS = ("GetObject", "HeadObject")


def load_sse_customer_key(path: Path) -> bytes:
    """The 32-byte key from ``path``: raw bytes, or base64 text (surrounding whitespace allowed)."""
    try:
        data = path.read_bytes()
    except OSError as exc:
        raise ConfigError(f"s3.sse_customer_key_file: cannot read {str(path)!r}: {exc.strerror}") from None
    if len(data) == KEY_BYTES:
        return data
    try:
        key = base64.b64decode(data.strip(), validate=True)
    except (binascii.Error, ValueError):
        key = b""
    if len(key) != KEY_BYTES:
        # the message says what is wrong, never what the file holds
        raise ConfigError(
            f"s3.sse_customer_key_file: {str(path)!r} must hold a {KEY_BYTES}-byte key, raw or base64-encoded"
        )
    return key


def sse_c_headers(key: bytes) -> dict[str, str]:
    """The three SSE-C request headers for ``key``."""
    return {
        "x-amz-server-side-encryption-customer-algorithm": SSE_C_ALGORITHM,
        "x-amz-server-side-encryption-customer-key": base64.b64encode(key).decode(),
        "x-amz-server-side-encryption-customer-key-md5": base64.b64encode(hashlib.md5(key).digest()).decode(),
    }


class RequestExtras:
    """The extra headers of one bucket: ``every`` request, and GET/HEAD of ``objects``."""

    __slots__ = ("every", "objects")

    def __init__(self, *, request_payer: bool = False, sse_customer_key: bytes | None = None) -> None:
        self.every: Mapping[str, str] = {"x-amz-request-payer": "requester"} if request_payer else {}
        self.objects: Mapping[str, str] = (
            {**self.every, **sse_c_headers(sse_customer_key)} if sse_customer_key else dict(self.every)
        )

    @classmethod
    def from_settings(cls, settings: S3Settings) -> RequestExtras:
        path = settings.sse_customer_key_file
        return cls(
            request_payer=settings.request_payer,
            sse_customer_key=load_sse_customer_key(path) if path is not None else None,
        )

    def __repr__(self) -> str:  # the key must never reach a log line
        return f"RequestExtras(headers={sorted(self.objects)})"

    def __bool__(self) -> bool:
        return bool(self.objects)

    def register(self, events: Any) -> None:
        """Add the headers to an aiobotocore client's requests, before they are signed."""
        if not self:
            return
        every, objects = dict(self.every), dict(self.objects)

        def on_every(request: Any, **_: Any) -> None:
            for name, value in every.items():
                request.headers[name] = value

        def on_object(request: Any, **_: Any) -> None:
            for name, value in objects.items():
                request.headers[name] = value

        if every:
            events.register("before-sign.s3", on_every, unique_id="s3sync-extras-every")
        for operation in _OBJECT_OPERATIONS:
            events.register(f"before-sign.s3.{operation}", on_object, unique_id=f"s3sync-extras-{operation}")


__all__ = ["RequestExtras", "load_sse_customer_key", "sse_c_headers"]
