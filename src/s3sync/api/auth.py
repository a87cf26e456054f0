"""Bearer tokens, HMAC-signed notifications and a brake on brute force.

Every comparison is ``hmac.compare_digest``. Failed attempts are counted per
client address; past ``auth_failures_per_minute`` the client gets 429 with
``Retry-After`` until its window clears.
"""

from __future__ import annotations

import hashlib
import hmac
import time
from collections import deque

from pydantic import SecretStr

REPLAY_WINDOW = 300


def bearer_ok(header: str | None, token: SecretStr) -> bool:
    if not header:
        return False
    scheme, _, value = header.partition(" ")
    if scheme.lower() != "bearer":
        return False
    return hmac.compare_digest(value.strip().encode(), token.get_secret_value().encode())


def signature_for(secret: str, timestamp: str, body: bytes) -> str:
    mac = hmac.new(secret.encode(), timestamp.encode() + b"." + body, hashlib.sha256)
    return "sha256=" + mac.hexdigest()


def hmac_problem(
    secret: SecretStr, timestamp: str | None, signature: str | None, body: bytes, now: float | None = None
) -> str | None:
    """None when the signature is valid and fresh, else the reason it is not."""
    if not timestamp or not signature:
        return "missing X-S3Sync-Timestamp or X-S3Sync-Signature"
    try:
        ts = int(timestamp)
    except ValueError:
        return "X-S3Sync-Timestamp is not an integer"
    if abs((now or time.time()) - ts) > REPLAY_WINDOW:
        return "X-S3Sync-Timestamp is outside the 300 s window (replay or clock skew)"
    expected = signature_for(secret.get_secret_value(), timestamp, body)
    if not hmac.compare_digest(signature.strip().encode(), expected.encode()):
        return "signature does not match"
    return None


class FailureLimiter:
    """Sliding one-minute window of failed authentications per client."""

    def __init__(self, per_minute: int) -> None:
        self.per_minute = per_minute
        self._hits: dict[str, deque[float]] = {}

    def _window(self, client: str, now: float) -> deque[float]:
        q = self._hits.setdefault(client, deque())
        while q and now - q[0] > 60:
            q.popleft()
        return q

    def blocked_for(self, client: str) -> int:
        """Seconds the client must wait, 0 when it may try."""
        now = time.monotonic()
        q = self._window(client, now)
        if len(q) >= self.per_minute:
            return max(1, int(60 - (now - q[0])) + 1)
        return 0

    def failure(self, client: str) -> None:
        now = time.monotonic()
        self._window(client, now).append(now)
        if len(self._hits) > 10_000:  # bound memory under address spraying
            for k in list(self._hits)[:5_000]:
                del self._hits[k]

    def success(self, client: str) -> None:
        self._hits.pop(client, None)
