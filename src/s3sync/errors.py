"""The error tree: what s3sync raises on purpose, and what each kind means for the rest.

Classification (an exception from a library, a status code, an ``OSError``
turned into one of these) is not here (httpx's ``_exceptions.py`` keeps its tree
apart from its transports the same way): :mod:`s3sync.s3.errors` maps S3's
answers (status and code tables, the region wording, botocore and transport
errors) and :mod:`s3sync.local.errors` maps ``OSError``. Both GET paths map
every call and every body read, and the SQS consumer every call of its client,
so the core catches these types; its catch-alls (the apply rules, the retried
download) are given :func:`s3sync.local.errors.classify_local` for the disk.

::

    S3SyncError
     ├── RetryableError      transient: 5xx, throttling, resets, timeouts, truncated bodies
     ├── PermanentError      this item fails, the rest go on: 403, 404 on GET, bad checksum
     │    ├── UnsafeKeyError       the key cannot be mapped to a path inside the mirror
     │    ├── IntegrityError       size or checksum did not match after download
     │    ├── TooLargeError        bigger than ``max_file_size_mb``
     │    ├── NotFoundError        S3 says the object is gone
     │    └── ArchivedError        archived, not restored (403 InvalidObjectState): a skip
     ├── FatalError          nothing can work: bad credentials, missing bucket, unwritable dir
     └── ConfigError         invalid settings; the CLI exits 2 with the message
"""

from __future__ import annotations


class S3SyncError(Exception):
    """Base of everything s3sync raises on purpose."""

    code = "error"


class RetryableError(S3SyncError):
    """Worth another attempt after a backoff."""

    code = "retryable"


class PermanentError(S3SyncError):
    """This item cannot succeed now; count it, report it, move on."""

    code = "failed"


class UnsafeKeyError(PermanentError):
    """A key that would escape or corrupt the mirror directory."""

    code = "unsafe_key"


class KeyConflictError(UnsafeKeyError):
    """A key that collides with a directory (``a`` next to ``a/b``)."""

    code = "key_conflict"


class IntegrityError(PermanentError):
    """Downloaded bytes do not match the size or checksum S3 announced."""

    code = "integrity"


class TooLargeError(PermanentError):
    """Object exceeds ``sync.max_file_size_mb``."""

    code = "too_large"


class NotFoundError(PermanentError):
    """S3 answered 404 for the key."""

    code = "not_found"


class ArchivedError(PermanentError):
    """S3 answered 403 ``InvalidObjectState``: the object is archived (Glacier, Deep Archive,
    an Intelligent-Tiering archive tier) and not restored. A skip, never a failure."""

    code = "archived"


class ChangedDuringTransferError(RetryableError):
    """The object was replaced while we read it (412 on an If-Match range)."""

    code = "changed"


class LocalIOError(PermanentError):
    """Writing the local file failed (disk full, permissions)."""

    code = "local_io"


class FatalError(S3SyncError):
    """Nothing will work until an operator acts (credentials, bucket, directory)."""

    code = "fatal"


class ConfigError(S3SyncError):
    """Invalid configuration; message names the key and the reason."""

    code = "config"


class RetriesExceededError(PermanentError):
    """Every attempt failed with a retryable error; ``last`` is the final one."""

    code = "retries_exceeded"

    def __init__(self, last: BaseException, attempts: int) -> None:
        super().__init__(f"gave up after {attempts} attempts: {last}")
        self.last = last
        self.attempts = attempts
