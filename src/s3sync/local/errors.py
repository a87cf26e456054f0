"""What an ``OSError`` means for a transfer: the disk's answer, or a transient one.

The one mapping of ``OSError`` onto the error tree (:mod:`s3sync.errors`): a full
disk, a quota, a read-only filesystem or a permission denied is a
:class:`~s3sync.errors.LocalIOError` (this file fails, health says why); any other
``OSError`` (a reset socket, an interrupted call) is worth another attempt.
"""

from __future__ import annotations

import errno

from s3sync.errors import LocalIOError, PermanentError, RetryableError, S3SyncError

_DISK_ERRNOS = (errno.ENOSPC, errno.EDQUOT, errno.EROFS, errno.EACCES, errno.EPERM)


def classify_os_error(exc: OSError) -> S3SyncError:
    """``exc`` as the tree names it: :class:`LocalIOError` for the disk's refusals, else retryable."""
    if exc.errno in _DISK_ERRNOS:
        where = f": {exc.filename}" if exc.filename else ""  # not "No space left on device:"
        return LocalIOError(f"{exc.strerror or exc}{where}")
    return RetryableError(str(exc) or type(exc).__name__)


def classify_local(exc: BaseException) -> S3SyncError:
    """What the core makes of an exception it caught: the tree's as it is, the disk's named here.

    S3's errors arrive classified (``s3/`` maps every call and every body read), so
    what is left untyped in a transfer or an apply is the mirror's ``OSError``;
    anything else (a bug, a library's own error) is a permanent failure of that one
    change, named by its type.
    """
    if isinstance(exc, S3SyncError):
        return exc
    if isinstance(exc, OSError):
        return classify_os_error(exc)
    return PermanentError(f"{type(exc).__name__}: {exc}")


__all__ = ["classify_local", "classify_os_error"]
