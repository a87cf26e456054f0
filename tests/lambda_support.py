"""A stand-in for the daemon's notification endpoint, for the Lambda forwarder tests.

It checks authentication exactly as the public contract describes (HMAC over
``timestamp + "." + raw body`` compared in constant time, 300 s replay window,
or a bearer token), records every request it sees, and can be told to answer the
next requests with a scripted status so retry behaviour can be observed.
Tests that can run against the real daemon app should prefer it; this exists so
the forwarder can be tested before and independently of the daemon.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import time
from collections import deque
from dataclasses import dataclass, field
from typing import Any

from aiohttp import web

NOTIFICATION_PATH = "/api/v1/s3-notification"
REPLAY_WINDOW_SECONDS = 300


@dataclass(frozen=True)
class ReceivedRequest:
    """One request as it arrived, before any verdict."""

    body: bytes
    headers: dict[str, str]
    at: float  # time.monotonic() on arrival


@dataclass(frozen=True)
class ScriptedReply:
    status: int
    body: dict[str, Any]
    headers: dict[str, str] = field(default_factory=dict)


@dataclass
class NotificationReceiver:
    """Records requests and accepts the authenticated ones with 202."""

    secret: str | None = None
    token: str | None = None
    requests: list[ReceivedRequest] = field(default_factory=list)
    accepted: list[Any] = field(default_factory=list)
    _script: deque[ScriptedReply] = field(default_factory=deque)

    def reply_next(self, status: int, times: int = 1, *, headers: dict[str, str] | None = None) -> None:
        """Answer the next ``times`` requests with ``status`` instead of handling them."""
        body = {"error": "scripted", "message": f"scripted HTTP {status}"}
        for _ in range(times):
            self._script.append(ScriptedReply(status, body, dict(headers or {})))

    def app(self) -> web.Application:
        app = web.Application()
        app.router.add_post(NOTIFICATION_PATH, self._handle)
        return app

    def authenticate(self, headers: dict[str, str], body: bytes) -> str | None:
        """``None`` when the request is authentic, else the reason it is not."""
        if self.secret is None and self.token is None:
            return None
        if self.token is not None:
            auth = headers.get("Authorization", "")
            if hmac.compare_digest(auth.encode(), f"Bearer {self.token}".encode()):
                return None
        if self.secret is not None:
            timestamp = headers.get("X-S3Sync-Timestamp", "")
            signature = headers.get("X-S3Sync-Signature", "")
            if not timestamp or not signature:
                return "missing signature"
            try:
                ts = int(timestamp)
            except ValueError:
                return "bad timestamp"
            if abs(time.time() - ts) > REPLAY_WINDOW_SECONDS:
                return "timestamp outside the replay window"
            mac = hmac.new(self.secret.encode(), timestamp.encode("ascii") + b"." + body, hashlib.sha256)
            expected = "sha256=" + mac.hexdigest()
            if not hmac.compare_digest(signature.encode(), expected.encode()):
                return "signature mismatch"
            return None
        return "missing or wrong bearer token"

    async def _handle(self, request: web.Request) -> web.Response:
        body = await request.read()
        headers = dict(request.headers)
        self.requests.append(ReceivedRequest(body, headers, time.monotonic()))
        if self._script:
            reply = self._script.popleft()
            return web.json_response(reply.body, status=reply.status, headers=reply.headers)
        problem = self.authenticate(headers, body)
        if problem is not None:
            return web.json_response({"error": "unauthorized", "message": problem}, status=401)
        try:
            doc = json.loads(body)
        except ValueError:
            return web.json_response({"error": "bad_request", "message": "body is not JSON"}, status=400)
        self.accepted.append(doc)
        records = doc.get("Records") if isinstance(doc, dict) else None
        accepted = len(records) if isinstance(records, list) else 0
        return web.json_response({"accepted": accepted, "ignored": 0 if accepted else 1}, status=202)
