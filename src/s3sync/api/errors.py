"""The API's error type and body: every 4xx/5xx the application makes is ``{"error", "message"}``.

Handlers raise :class:`ApiError`; :func:`~s3sync.api.middleware.error_middleware`
renders it (and every other exception) with :func:`error_body`.
"""

from __future__ import annotations


class ApiError(Exception):
    """Raised by handlers; the error middleware renders ``{"error", "message"}``."""

    def __init__(self, status: int, code: str, message: str, headers: dict[str, str] | None = None) -> None:
        super().__init__(message)
        self.status = status
        self.code = code
        self.message = message
        self.headers = headers or {}


def error_body(code: str, message: str) -> dict[str, str]:
    return {"error": code, "message": message}
