"""The status page in a real headless Chromium, after a real sync against moto.

Chromium (Debian package ``chromium``) is driven over the DevTools protocol:
it loads ``GET /`` like any browser (``Accept: text/html``), the token is typed
into the page, and the test reads what the page *shows* once its JS has
rendered the API's numbers — not the HTML source. Without Chromium the test is
skipped with the reason.

``STATUS_PAGE_SCREENSHOT=path.png`` also saves what the browser drew (that is how
docs/status-page.png is made).
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import itertools
import json
import os
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import aiohttp
from support.browser import BROWSER, needs_browser
from support.daemon import run_daemon
from support.eventkit import s3_event, s3_record
from support.wait import wait_for

TOKEN = "page-token-0123456789"

pytestmark = needs_browser


class Page:
    """One tab over the DevTools protocol: call a method, evaluate JS."""

    def __init__(self, ws: aiohttp.ClientWebSocketResponse) -> None:
        self.ws = ws
        self.ids = itertools.count(1)
        self.requested: list[str] = []  # every URL the page asked for (Network.requestWillBeSent)

    async def call(self, method: str, **params: Any) -> dict[str, Any]:
        n = next(self.ids)
        await self.ws.send_json({"id": n, "method": method, "params": params})
        while True:
            msg = await asyncio.wait_for(self.ws.receive_json(), 60)
            if msg.get("method") == "Network.requestWillBeSent":
                self.requested.append(msg["params"]["request"]["url"])
            if msg.get("id") == n:
                assert "error" not in msg, msg
                result: dict[str, Any] = msg["result"]
                return result

    async def js(self, expression: str) -> Any:
        got = await self.call("Runtime.evaluate", expression=expression, returnByValue=True)
        assert "exceptionDetails" not in got, got
        return got["result"].get("value")


@contextlib.asynccontextmanager
async def chromium(tmp: Path) -> AsyncIterator[Page]:
    assert BROWSER is not None
    profile = tmp / "profile"
    proc = await asyncio.create_subprocess_exec(
        BROWSER, "--headless=new", "--no-sandbox", "--disable-gpu", "--no-first-run",
        "--disable-extensions", "--disable-background-networking", "--window-size=1280,1100",
        "--proxy-server=127.0.0.1:9", "--proxy-bypass-list=127.0.0.1",  # off the network: offline
        "--remote-debugging-port=0", f"--user-data-dir={profile}", "about:blank",
        stdout=asyncio.subprocess.DEVNULL, stderr=asyncio.subprocess.DEVNULL,
    )  # fmt: skip
    try:
        port_file = profile / "DevToolsActivePort"
        await wait_for(port_file.exists, within=60, what="Chromium's DevTools port")
        await wait_for(lambda: len(port_file.read_text().splitlines()) >= 2, within=10, what="port file")
        port = int(port_file.read_text().splitlines()[0])
        async with aiohttp.ClientSession() as http:
            async with http.get(f"http://127.0.0.1:{port}/json/list") as resp:
                targets = await resp.json()
            url = next(t["webSocketDebuggerUrl"] for t in targets if t["type"] == "page")
            async with http.ws_connect(url, max_msg_size=64 * 1024 * 1024) as ws:
                page = Page(ws)
                await page.call("Runtime.enable")
                yield page
    finally:
        with contextlib.suppress(ProcessLookupError):
            proc.kill()
        await proc.wait()


SHOWN = """(() => {
  const ids = ["health", "reason", "bucket", "directory", "events-through", "reconciled-through", "lag",
    "pending", "queue", "in-flight", "files-synced", "bytes", "files-deleted", "failed-skipped", "rate",
    "last-reconcile", "next-reconcile", "hooks", "changes", "problems", "chart-scale", "error"];
  // not parsed to the end yet (the probe may run while the page loads): nothing shown so far
  if (document.readyState !== "complete" || !document.getElementById("login"))
    return JSON.stringify({login: null, "files-synced": null});
  const out = Object.fromEntries(ids.map(id => [id, document.getElementById(id).innerText]));
  out.login = document.getElementById("login").className;
  out.bars = [...document.querySelectorAll("#chart rect")].filter(r => +r.getAttribute("height") > 0).length;
  out.href = location.href;
  return JSON.stringify(out);
})()"""


class TestStatusPage:
    async def test_shows_the_numbers_of_a_real_run(
        self, s3: Any, bucket: str, mirror: Path, make_settings: Any, tmp_path: Path
    ) -> None:
        objects = {f"docs/{i:02}.txt": b"y" * (100 * (i + 1)) for i in range(12)}
        for k, v in objects.items():
            s3.put_object(Bucket=bucket, Key=k, Body=v)
        s3.put_object(Bucket=bucket, Key="bad/" + "n" * 300, Body=b"a name no filesystem takes")
        settings = make_settings(bucket, mirror, api={"token": TOKEN})
        auth = {"Authorization": f"Bearer {TOKEN}"}
        async with run_daemon(settings) as d:
            async with d.http.post(f"{d.url}/api/v1/sync", headers=auth) as resp:
                assert resp.status == 200, await resp.text()
            s3.put_object(Bucket=bucket, Key="events/new.bin", Body=b"z" * 2048)
            async with d.http.post(
                f"{d.url}/api/v1/s3-notification",
                json=s3_event(s3_record(bucket, "ObjectCreated:Put", "events/new.bin")),
                headers=auth,
            ) as resp:
                assert resp.status == 202

            async def settled() -> dict[str, Any] | None:
                async with d.http.get(f"{d.url}/api/v1/stats", headers=auth) as resp:
                    st: dict[str, Any] = await resp.json()
                return st if st["freshness"]["pending"] == 0 and st["files_synced"] == 13 else None

            stats = await wait_for(settled, within=30, what="sync and event applied")
            # a non-browser GET / is still the JSON service info, and needs the token
            async with d.http.get(f"{d.url}/") as resp:
                assert resp.status == 401
            async with d.http.get(f"{d.url}/", headers=auth) as resp:
                assert (await resp.json())["service"] == "s3sync"

            async with chromium(tmp_path) as page:
                await page.call("Page.enable")
                await page.call("Network.enable")
                await page.call("Page.navigate", url=f"{d.url}/")

                async def login_shown() -> bool:
                    shown = json.loads(await page.js(SHOWN))
                    return bool(shown["login"] == "shown")

                await wait_for(login_shown, within=30, what="the page asks for the token")
                await page.js("document.getElementById('token').focus()")
                await page.call("Input.insertText", text=TOKEN)
                await page.js("document.getElementById('login').requestSubmit()")

                async def rendered() -> dict[str, Any] | None:
                    shown: dict[str, Any] = json.loads(await page.js(SHOWN))
                    return shown if shown["files-synced"] == "13" and shown["changes"].strip() else None

                shown = await wait_for(rendered, within=30, what="the page showing the run")
                requested = list(page.requested)
                if target := os.environ.get("STATUS_PAGE_SCREENSHOT"):
                    shot = await page.call("Page.captureScreenshot", format="png")
                    await asyncio.to_thread(Path(target).write_bytes, base64.b64decode(shot["data"]))

        # it loaded nothing but the daemon's own page and API (works offline; CSP forbids the rest)
        assert requested and all(u.startswith(f"{d.url}/") or u.startswith("data:") for u in requested)
        assert any(u.endswith("/api/v1/stats") for u in requested)
        assert all(TOKEN not in u for u in requested)
        assert shown["login"] == "" and shown["error"] == ""
        assert shown["href"] == f"{d.url}/"  # the token never went into a URL
        assert shown["health"] in ("healthy", "degraded")
        assert shown["bucket"] == f"s3://{bucket}/"
        assert shown["directory"] == str(mirror)
        assert shown["files-synced"] == str(stats["files_synced"]) == "13"
        expected_bytes = sum(len(v) for v in objects.values()) + 2048
        assert stats["bytes_downloaded"] == expected_bytes
        assert shown["bytes"] == f"{expected_bytes / 1024:.1f} KiB"
        assert shown["pending"] == "0" and shown["lag"] == "0.0 s"
        assert shown["events-through"] != "no events yet" and "ago" in shown["events-through"]
        assert "ago" in shown["reconciled-through"] and "ago" in shown["last-reconcile"]
        assert shown["next-reconcile"] == "not scheduled"
        assert shown["queue"] == "0" and shown["in-flight"] == "0"
        assert shown["hooks"] == "no hooks"
        assert "events/new.bin" in shown["changes"] and "notification" in shown["changes"]
        assert "docs/11.txt" in shown["changes"] and "manual" in shown["changes"]  # POST /api/v1/sync
        assert "1.2 KiB" in shown["changes"]  # docs/11.txt: 1,200 bytes
        assert "unsafe_key" in shown["problems"]
        assert shown["failed-skipped"].startswith("0 / ")
        assert shown["bars"] >= 1 and "files/s" in shown["rate"]
