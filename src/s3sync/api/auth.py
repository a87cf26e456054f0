"""Bearer tokens, HMAC-signed notifications and a brake on brute force.

Every secret comparison is ``hmac.compare_digest`` over bytes. Header values are
re-encoded with ``surrogateescape`` because aiohttp decodes raw header bytes that
way: an attacker sending invalid UTF-8 must get a 401, not a 500 from an encode
error. Parsing is deliberately strict (one scheme, one token, ASCII-digit
timestamps, a ``sha256=`` prefix) so there is exactly one spelling of a valid
credential and nothing for a fuzzer to find between "valid" and "invalid".

Failed attempts are counted per client address in a sliding window; past
``auth_failures_per_minute`` the client gets 429 with ``Retry-After`` until its
oldest failure leaves the window — even if it then presents a valid credential,
so that a brute-forcer cannot learn anything from answers while it is blocked.
"""

from __future__ import annotations

import hashlib
import hmac
import time
from collections import deque
from collections.abc import Callable

from pydantic import SecretStr

REPLAY_WINDOW = 300
SIGNATURE_PREFIX = "sha256="
_MAX_TIMESTAMP_DIGITS = 12  # unix seconds fit in 11 digits until the year 5138


def _raw(value: str) -> bytes:
    """The bytes the client actually sent (aiohttp decodes them with surrogateescape)."""
    return value.encode("utf-8", "surrogateescape")


def bearer_ok(header: str | None, token: SecretStr) -> bool:
    """True only for ``Bearer <token>``: scheme case-insensitive, token exact, nothing else."""
    if not header:
        return False
    scheme, sep, value = header.partition(" ")
    if not sep or scheme.lower() != "bearer":
        return False
    value = value.lstrip(" ")  # RFC 7235: 1*SP between scheme and credentials
    if not value or any(c.isspace() for c in value):
        return False
    return hmac.compare_digest(_raw(value), _raw(token.get_secret_value()))


def signature_for(secret: str, timestamp: str, body: bytes) -> str:
    mac = hmac.new(_raw(secret), _raw(timestamp) + b"." + body, hashlib.sha256)
    return SIGNATURE_PREFIX + mac.hexdigest()


def hmac_problem(
    secret: SecretStr, timestamp: str | None, signature: str | None, body: bytes, now: float | None = None
) -> str | None:
    """None when the signature is valid and fresh, else the reason it is not.

    The reasons are safe to return to the client: they say which rule failed,
    never anything derived from the secret.
    """
    if not timestamp or not signature:
        return "missing X-S3Sync-Timestamp or X-S3Sync-Signature"
    if not (timestamp.isascii() and timestamp.isdigit() and len(timestamp) <= _MAX_TIMESTAMP_DIGITS):
        return "X-S3Sync-Timestamp is not an integer number of unix seconds"
    current = time.time() if now is None else now
    if abs(current - int(timestamp)) > REPLAY_WINDOW:
        return f"X-S3Sync-Timestamp is outside the {REPLAY_WINDOW} s window (replay or clock skew)"
    if not signature.startswith(SIGNATURE_PREFIX):
        return f"X-S3Sync-Signature must be {SIGNATURE_PREFIX}<hex HMAC-SHA256>"
    expected = signature_for(secret.get_secret_value(), timestamp, body)
    if not hmac.compare_digest(_raw(signature), _raw(expected)):
        return "signature does not match"
    return None


class FailureLimiter:
    """Sliding window of failed authentications per client address.

    ``clock`` and ``window`` exist so that tests can move time instead of
    sleeping a minute. Memory is bounded: past ``max_clients`` tracked
    addresses the oldest half is forgotten (an address-spraying attacker gains
    a fresh budget for some addresses, but cannot exhaust memory).
    """

    def __init__(
        self,
        per_minute: int,
        *,
        window: float = 60.0,
        clock: Callable[[], float] = time.monotonic,
        max_clients: int = 10_000,
    ) -> None:
        self.per_minute = per_minute
        self.window = window
        self._clock = clock
        self._max_clients = max_clients
        self._hits: dict[str, deque[float]] = {}

    def _recent(self, client: str, now: float) -> deque[float] | None:
        q = self._hits.get(client)
        if q is None:
            return None
        while q and now - q[0] >= self.window:
            q.popleft()
        if not q:
            del self._hits[client]
            return None
        return q

    def blocked_for(self, client: str) -> int:
        """Whole seconds the client must wait (for ``Retry-After``), 0 when it may try."""
        now = self._clock()
        q = self._recent(client, now)
        if q is None or len(q) < self.per_minute:
            return 0
        return max(1, int(self.window - (now - q[0]) + 0.999))

    def failure(self, client: str) -> None:
        now = self._clock()
        q = self._recent(client, now)
        if q is None:
            if len(self._hits) >= self._max_clients:
                for k in list(self._hits)[: self._max_clients // 2]:
                    del self._hits[k]
            q = self._hits[client] = deque()
        q.append(now)

    def success(self, client: str) -> None:
        """A verified credential forgives earlier mistakes (a typo must not lock out a real user)."""
        self._hits.pop(client, None)

    def tracked(self) -> int:
        return len(self._hits)
