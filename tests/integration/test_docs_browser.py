"""/docs renders in a real browser, offline, with and without a token (issue 23, bug 8).

Headless Chromium (Debian package ``chromium``) loads the page from the real app and
dumps the DOM after its scripts ran; the operations of the OpenAPI document must be
listed there. It used to show "Unable to render this definition": the spec is OpenAPI
3.1 and the bundled Swagger UI 4 reads only 3.0. Skipped, with the reason, where no
Chromium is installed.
"""

from __future__ import annotations

import asyncio
import re
from pathlib import Path
from typing import Any

import pytest
from support.browser import BROWSER, needs_browser
from support.wait import wait_for

pytestmark = needs_browser
TOKEN = "docs-test-token-0123456789abcdef"


async def _dump_dom(url: str, profile: Path) -> str:
    """The DOM after the page's scripts ran; the proxy flags keep Chromium off the network."""
    assert BROWSER is not None
    proc = await asyncio.create_subprocess_exec(
        BROWSER,
        "--headless",
        "--no-sandbox",
        "--disable-gpu",
        "--no-first-run",
        f"--user-data-dir={profile}",
        "--proxy-server=127.0.0.1:9",  # anything not on the bypass list would fail: offline
        "--proxy-bypass-list=127.0.0.1",
        "--virtual-time-budget=15000",
        "--dump-dom",
        url,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    out, err = await asyncio.wait_for(proc.communicate(), timeout=120)
    assert proc.returncode == 0, err.decode(errors="replace")[-2000:]
    return out.decode()


async def _start(aiohttp_client: Any, make_settings: Any, bucket: str, mirror: Path, **api: Any) -> Any:
    from s3sync.daemon.app import create_app

    c = await aiohttp_client(create_app(make_settings(bucket, mirror, api=api)))
    await wait_for(lambda: _healthy(c), within=20, what="engine ready")
    return c


async def _healthy(c: Any) -> bool:
    return bool((await c.get("/api/v1/health")).status == 200)


def _operations(dom: str) -> set[tuple[str, str]]:
    """(METHOD, path) of every operation block Swagger UI rendered."""
    found = re.finditer(r'opblock-summary-method">(\w+)<.*?data-path="([^"]+)"', dom, flags=re.S)
    return {(m.group(1).upper(), m.group(2)) for m in found}


@pytest.mark.parametrize("path", ["/docs", "/docs/"])
@pytest.mark.parametrize("token", [None, TOKEN])
async def test_operations_are_listed(
    aiohttp_client: Any,
    make_settings: Any,
    bucket: str,
    mirror: Path,
    tmp_path: Path,
    path: str,
    token: str | None,
) -> None:
    c = await _start(aiohttp_client, make_settings, bucket, mirror, token=token)
    spec = await (await c.get("/api/v1/openapi.json", headers={"Authorization": f"Bearer {TOKEN}"})).json()
    expected = {(m.upper(), p) for p, item in spec["paths"].items() for m in item}
    dom = await _dump_dom(str(c.make_url(path)), tmp_path / "profile")
    assert "Unable to render" not in dom, dom[-3000:]
    assert len(expected) >= 10 and _operations(dom) == expected, dom[-3000:]
    if token is not None:  # the page opened; the API itself still wants the token
        assert (await c.get("/api/v1/stats")).status == 401
        assert (await c.get("/api/v1/openapi.json")).status == 401
