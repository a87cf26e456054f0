"""What the aioboto3 path needs on top of botocore: signed 307s and clock-skew correction.

* **307 Temporary Redirect.** aiohttp follows redirects by itself, and drops
  ``Authorization`` when the host changes, so the retried request is unsigned
  and S3 answers 403. :class:`NoRedirectSession` makes aiohttp hand the 307 back
  to botocore; :func:`install` registers a ``needs-retry`` handler (ahead of
  botocore's region redirector) that points the request at the ``Location`` S3
  named and lets botocore's retry loop re-sign it for that host — the same
  mechanism botocore uses for its own region redirects. One hop per request.
* **Unparsable timestamps** are unknown (:func:`lenient_timestamps`), as on the lean path.
* **RequestTimeTooSkewed.** botocore has no skew correction; the handler learns
  the offset from the answer's ``Date`` (:mod:`s3sync.s3.clock`) and retries
  the request once, re-signed with the corrected clock.

Imported only when the aioboto3 client is built (aiobotocore is not loaded otherwise).
"""

from __future__ import annotations

from typing import Any
from urllib.parse import urlsplit

from aiobotocore.httpsession import AIOHTTPSession

from s3sync.s3.clock import CLOCK, ensure_botocore_clock

MAX_REDIRECTS = 2


class _NoFollow:
    """An aiohttp session whose ``request`` never follows redirects."""

    def __init__(self, session: Any) -> None:
        self._session = session

    def request(self, *args: Any, **kwargs: Any) -> Any:
        kwargs["allow_redirects"] = False
        return self._session.request(*args, **kwargs)


class NoRedirectSession(AIOHTTPSession):  # type: ignore[misc]
    """aiobotocore's HTTP session, with redirects returned to botocore instead of followed."""

    async def _get_session(self, proxy_url: Any) -> Any:
        return _NoFollow(await super()._get_session(proxy_url))


def lenient_timestamps(session: Any) -> None:
    """An unparsable timestamp (a garbage ``Last-Modified``) is unknown, not a failed GET.

    botocore's parser raises ValueError and fails the whole request; the lean path reads
    such a date as unknown (0, never 1970 on disk). Same answer on both paths: ``None``.
    Call on the aiobotocore session before its clients are created.
    """
    from botocore.parsers import DEFAULT_TIMESTAMP_PARSER

    def parse(value: Any) -> Any:
        try:
            return DEFAULT_TIMESTAMP_PARSER(value)
        except ValueError:
            return None

    session.get_component("response_parser_factory").set_parser_defaults(timestamp_parser=parse)


def install(client: Any) -> None:
    """Register the 307 / skew handler on an aiobotocore S3 client (first in line)."""
    ensure_botocore_clock()
    client.meta.events.register_first("needs-retry.s3", _needs_retry)


def _needs_retry(request_dict: dict[str, Any], response: Any, **_: Any) -> int | None:
    """0 (retry now) for a 307 with a Location or a first RequestTimeTooSkewed; None otherwise."""
    if response is None:
        return None
    http, parsed = response
    status = getattr(http, "status_code", 0)
    context = request_dict.setdefault("context", {})
    meta = parsed.get("ResponseMetadata", {}) if isinstance(parsed, dict) else {}
    headers = meta.get("HTTPHeaders", {}) or {}
    error = parsed.get("Error", {}) if isinstance(parsed, dict) else {}
    if status in (302, 307, 308) and headers.get("location"):
        hops = context.get("s3sync_redirects", 0)
        location = headers["location"]
        if hops >= MAX_REDIRECTS or urlsplit(location).scheme not in ("http", "https"):
            return None
        context["s3sync_redirects"] = hops + 1
        request_dict["url"] = location
        # botocore's own region redirector must not re-resolve the endpoint over our URL
        context.setdefault("s3_redirect", {})["redirected"] = True
        context["s3_redirected"] = True
        return 0
    if error.get("Code") == "RequestTimeTooSkewed" and not context.get("s3sync_skew_retried"):
        context["s3sync_skew_retried"] = True
        if CLOCK.learn(headers.get("date"), error.get("ServerTime")):
            return 0
    return None
