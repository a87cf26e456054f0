"""``sync --checksum``: are the local bytes the object's, when the ETag cannot say?

The cheap answer is the local file's MD5 against a single-part ETag
(:func:`~s3sync.sync.reconcile.deletes.content_matches`). It cannot tell a damaged file
from an object whose ETag is not an MD5 at all: a KMS, DSSE or SSE-C ETag looks
like one and differs from the content's MD5 on every PUT. A listing does not say
which it is, so treating every mismatch as damage re-downloaded every KMS
object on every ``--checksum`` pass.

:func:`confirm_content` settles such a mismatch with one HEAD (checksum mode)
instead of a GET: an ETag that is an MD5 and does not match means damage; an
opaque ETag is set aside and the local file compared with the object's
full-object checksum (CRC64NVME, which S3 gives every object stored since 2025,
or the one the uploader chose); with no such checksum, size and mtime are all
there is, as for a multipart ETag.
"""

from __future__ import annotations

import asyncio
import os

from s3sync.errors import UnsafeKeyError
from s3sync.local.mirror import Mirror
from s3sync.model import ObjectMeta
from s3sync.s3.bucket import Bucket
from s3sync.sync.transfer.integrity import Facts, Hasher, Method, choose, etag_is_content_md5, new_hasher

CHUNK = 1024 * 1024


async def confirm_content(bucket: Bucket, mirror: Mirror, meta: ObjectMeta) -> bool:
    """True when the local file of ``meta.key`` holds the object's bytes, as far as S3 can tell."""
    head = await bucket.head(meta.key, version_id=meta.version_id)
    if head is None or (meta.etag and head.etag != meta.etag):
        return False  # gone or replaced since the listing: the fetch decides
    facts = Facts.from_meta(head)
    if etag_is_content_md5(facts):
        return False  # the ETag is the content's MD5, and the local bytes do not have it
    verification = choose(facts)
    hasher = new_hasher(verification) if verification.method is Method.CHECKSUM else None
    if hasher is None or verification.expected is None:
        return True
    return await asyncio.to_thread(_local_digest, mirror, meta.key, hasher) == verification.expected


def _local_digest(mirror: Mirror, key: str, hasher: Hasher) -> str | None:
    try:
        with os.fdopen(mirror.open_read(key), "rb") as fh:  # never through a link
            for chunk in iter(lambda: fh.read(CHUNK), b""):
                hasher.update(chunk)
    except (OSError, UnsafeKeyError):
        return None
    return hasher.result()


__all__ = ["confirm_content"]
