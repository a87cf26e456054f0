"""What an ``OSError`` means for a transfer: the disk's answer, or a transient one.

The one mapping of ``OSError`` onto the error tree (:mod:`s3sync.errors`): a full
disk, a quota, a read-only filesystem or a permission denied is a
:class:`~s3sync.errors.LocalIOError` (this file fails, health says why); any other
``OSError`` (a reset socket, an interrupted call) is worth another attempt.
"""

from __future__ import annotations

import errno

from s3sync.errors import LocalIOError, RetryableError, S3SyncError

_DISK_ERRNOS = (errno.ENOSPC, errno.EDQUOT, errno.EROFS, errno.EACCES, errno.EPERM)


def classify_os_error(exc: OSError) -> S3SyncError:
    """``exc`` as the tree names it: :class:`LocalIOError` for the disk's refusals, else retryable."""
    if exc.errno in _DISK_ERRNOS:
        where = f": {exc.filename}" if exc.filename else ""  # not "No space left on device:"
        return LocalIOError(f"{exc.strerror or exc}{where}")
    return RetryableError(str(exc) or type(exc).__name__)


__all__ = ["classify_os_error"]
