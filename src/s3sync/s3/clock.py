"""The clock requests are signed with: local time plus the offset S3 told us about.

S3 refuses a SigV4 request whose ``X-Amz-Date`` is more than 15 minutes from its
own clock (403 ``RequestTimeTooSkewed``). A host whose clock drifted would then
fail every request until someone fixes NTP. The Java and Go SDKs correct for
it from the server's ``Date`` header; botocore does not. So both paths sign
with :data:`CLOCK`: the lean signer asks it for the time, and botocore's signer
is pointed at it the first time an offset is learned (never before, so a host
with a good clock runs botocore untouched).

The offset is process-wide on purpose: it is a fact about this machine's
clock, not about one bucket.
"""

from __future__ import annotations

import datetime as dt
import email.utils
import threading
from typing import Any

MAX_SKEW_SECONDS = 15 * 60


class Clock:
    """Local UTC time corrected by ``offset`` seconds (server minus local)."""

    def __init__(self) -> None:
        self.offset = 0.0
        self._lock = threading.Lock()

    def now(self) -> dt.datetime:
        t = dt.datetime.now(dt.UTC)
        return t + dt.timedelta(seconds=self.offset) if self.offset else t

    def learn(self, date_header: str | None, server_time: str | None = None) -> bool:
        """Take the offset from an answer's ``Date`` (or the error's ``ServerTime``).

        Returns True when an offset could be read, so the caller retries once.
        """
        server = _parse_date(date_header) or _parse_iso(server_time)
        if server is None:
            return False
        with self._lock:
            self.offset = (server - dt.datetime.now(dt.UTC)).total_seconds()
        if self is CLOCK:  # botocore follows the process clock only, never a private Clock
            _point_botocore_at(self)
        return True


CLOCK = Clock()


def _parse_date(value: str | None) -> dt.datetime | None:
    if not value:
        return None
    try:
        parsed = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    return parsed if parsed.tzinfo is not None else parsed.replace(tzinfo=dt.UTC)


def _parse_iso(value: str | None) -> dt.datetime | None:
    if not value:
        return None
    try:
        parsed = dt.datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        return None
    return parsed if parsed.tzinfo is not None else parsed.replace(tzinfo=dt.UTC)


_patched = False


def _point_botocore_at(clock: Clock) -> None:
    """botocore's signers read ``get_current_datetime`` from their modules: add the offset there.

    Both ``botocore.auth`` and, when awscrt is installed (botocore then prefers
    its CRT signers), ``botocore.crt.auth``. Done only once an offset exists, and
    botocore is not imported for it (the lean path may never load botocore).
    """
    global _patched
    import sys

    if _patched or "botocore.auth" not in sys.modules:
        return
    for name in ("botocore.auth", "botocore.crt.auth"):
        module = sys.modules.get(name)
        if module is None:
            continue
        original = module.get_current_datetime
        setattr(module, "get_current_datetime", _corrected(original, clock))  # noqa: B010
    _patched = True


def _corrected(original: Any, clock: Clock) -> Any:
    def corrected(*args: Any, **kwargs: Any) -> Any:
        return original(*args, **kwargs) + dt.timedelta(seconds=clock.offset)

    return corrected


def ensure_botocore_clock() -> None:
    """Call after botocore is imported: applies an offset learned before botocore was loaded."""
    if CLOCK.offset:
        _point_botocore_at(CLOCK)
