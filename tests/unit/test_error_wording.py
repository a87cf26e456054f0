"""Error text a person reads (issue 23): a full disk says what happened, with no dangling colon."""

from __future__ import annotations

import errno
import os

import pytest

from s3sync.errors import LocalIOError
from s3sync.s3.errors import classify


@pytest.mark.parametrize("code", [errno.ENOSPC, errno.EDQUOT, errno.EROFS, errno.EACCES])
def test_local_io_without_a_filename(code: int) -> None:
    err = classify(OSError(code, os.strerror(code)))
    assert isinstance(err, LocalIOError)
    assert str(err) == os.strerror(code)


def test_local_io_with_a_filename() -> None:
    err = classify(OSError(errno.ENOSPC, os.strerror(errno.ENOSPC), "/srv/mirror/a.bin"))
    assert str(err) == "No space left on device: /srv/mirror/a.bin"
