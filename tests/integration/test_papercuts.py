"""A newcomer's paper cuts (issue 15) and the bad-input cases of issue 11, against the real app and CLI."""

from __future__ import annotations

import gzip
import json
import os
import subprocess
import sys
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import pytest
from support.s3kit import CliRunner, clean_environ, seed
from support.wait import wait_for

StartApi = Callable[..., Awaitable[Any]]
ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture
async def start_api(aiohttp_client: Any) -> StartApi:
    from s3sync.daemon.app import create_app

    async def _start(settings: Any, **kw: Any) -> Any:
        return await aiohttp_client(create_app(settings), **kw)

    return _start


@pytest.fixture
async def client(start_api: StartApi, make_settings: Any, bucket: str, mirror: Path) -> Any:
    c = await start_api(make_settings(bucket, mirror))
    await wait_for(lambda: _ready(c), within=20, what="engine ready")
    return c


async def _ready(c: Any) -> bool:
    return bool((await c.get("/api/v1/health")).status == 200)


async def _json_error(resp: Any, status: int) -> dict[str, Any]:
    text = await resp.text()
    assert resp.status == status, (resp.status, text)
    assert resp.content_type == "application/json", (resp.content_type, text)
    data = json.loads(text)
    assert isinstance(data, dict) and "error" in data and "message" in data, data
    return data


class TestServeStartup:
    """serve: a missing bucket or a wrong region is exit 2; S3 unreachable is a retry."""

    def _serve(self, env: dict[str, str], tmp_path: Path) -> subprocess.Popen[str]:
        full = clean_environ() | {
            "S3SYNC_SYNC__LOCAL_DIR": str(tmp_path / "m"),
            "S3SYNC_API__PORT": "0",
            "S3SYNC_S3__CONNECT_TIMEOUT_SECONDS": "2",
            **env,
        }
        return subprocess.Popen(
            [sys.executable, "-m", "s3sync", "serve"],
            env=full,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )

    def test_missing_bucket_exits_2(self, moto_endpoint: str, tmp_path: Path) -> None:
        p = self._serve(
            {"S3SYNC_S3__BUCKET": "no-such-bucket-here", "S3SYNC_S3__ENDPOINT_URL": moto_endpoint}, tmp_path
        )
        out, err = p.communicate(timeout=60)
        assert p.returncode == 2, (out, err)
        assert "does not exist" in err, err

    def test_unreachable_s3_keeps_running(self, tmp_path: Path) -> None:
        import socket

        with socket.socket() as s:  # a port nobody listens on
            s.bind(("127.0.0.1", 0))
            dead = f"http://127.0.0.1:{s.getsockname()[1]}"
        p = self._serve({"S3SYNC_S3__BUCKET": "some-bucket", "S3SYNC_S3__ENDPOINT_URL": dead}, tmp_path)
        try:
            deadline = time.monotonic() + 30
            while time.monotonic() < deadline and p.poll() is None:
                if (tmp_path / "m").exists():
                    break
                time.sleep(0.1)
            assert p.poll() is None, p.communicate()
        finally:
            p.terminate()
            p.communicate(timeout=60)


class TestApiErrors:
    """Every 4xx the app produces is a JSON error body."""

    @pytest.mark.parametrize("cursor", ["%25%25%25", "====", "@@", "%FF%FE", "YQ%3D%3D%3D%3D%3D"])
    async def test_undecodable_cursor_is_400(self, client: Any, cursor: str) -> None:
        await _json_error(await client.get(f"/api/v1/files?cursor={cursor}"), 400)

    @pytest.mark.parametrize("body", ["[]", "[{}]", '"a string"', "42", "null", '{"hello": 1}', "{}"])
    async def test_json_of_no_known_shape_is_400(self, client: Any, body: str) -> None:
        resp = await client.post(
            "/api/v1/s3-notification", data=body, headers={"Content-Type": "application/json"}
        )
        await _json_error(resp, 400)

    @pytest.mark.parametrize("encoding", ["gzip", "deflate", "br", "zstd", "x-nonsense"])
    async def test_undecodable_content_encoding_is_400(self, client: Any, encoding: str) -> None:
        resp = await client.post(
            "/api/v1/s3-notification",
            data=b"this is not compressed at all",
            headers={"Content-Type": "application/json", "Content-Encoding": encoding},
        )
        assert resp.status in (400, 415), await resp.text()
        await _json_error(resp, resp.status)

    async def test_gzip_that_decodes_is_accepted(self, client: Any, bucket: str) -> None:
        body = gzip.compress(json.dumps({"Event": "s3:TestEvent"}).encode())
        resp = await client.post(
            "/api/v1/s3-notification",
            data=body,
            headers={"Content-Type": "application/json", "Content-Encoding": "gzip"},
        )
        assert resp.status == 202, await resp.text()

    @pytest.mark.parametrize("prefix", ["\U0010ffff", "a\ud7ff", "x/\U0010ffff"])
    async def test_prefix_at_the_top_of_unicode_is_not_a_500(self, client: Any, prefix: str) -> None:
        from urllib.parse import quote

        resp = await client.post(f"/api/v1/sync?prefix={quote(prefix)}")
        text = await resp.text()
        assert resp.status < 500, text
        for path in (
            f"/api/v1/files?prefix={quote(prefix)}",
            f"/api/v1/files?source=s3&prefix={quote(prefix)}",
        ):
            resp = await client.get(path)
            assert resp.status < 500, await resp.text()

    async def test_unsatisfiable_range_is_a_json_416(
        self, client: Any, s3: Any, bucket: str, mirror: Path
    ) -> None:
        seed(s3, bucket, {"f.txt": b"hello"})
        assert (await client.post("/api/v1/sync")).status == 200
        resp = await client.get("/api/v1/download/f.txt", headers={"Range": "bytes=100-200"})
        await _json_error(resp, 416)
        ok = await client.get("/api/v1/download/f.txt", headers={"Range": "bytes=1-3"})
        assert ok.status == 206 and await ok.read() == b"ell"

    @pytest.mark.parametrize("path", ["/static/../../etc/passwd", "/docs/static/nope.js"])
    async def test_static_404s_are_json(self, client: Any, path: str) -> None:
        await _json_error(await client.get(path), 404)

    async def test_unknown_path_is_json_404(self, client: Any) -> None:
        await _json_error(await client.get("/no/such/thing"), 404)

    async def test_wrong_method_is_json_405(self, client: Any) -> None:
        await _json_error(await client.delete("/api/v1/stats"), 405)


class TestLegacySyncMessage:
    """/api/v1/sync says what happened: not "Synced 7 of 7" when nothing was downloaded."""

    async def test_nothing_downloaded(self, client: Any, s3: Any, bucket: str) -> None:
        seed(s3, bucket, {f"k{i}": b"x" for i in range(7)})
        first = await (await client.post("/api/v1/sync")).json()
        assert first["message"].startswith("Synced 7 of 7 files (7 downloaded"), first["message"]
        again = await (await client.post("/api/v1/sync")).json()
        assert "Synced 7 of 7" not in again["message"], again["message"]
        assert again["message"].startswith("Up to date: nothing downloaded or deleted; 7 files checked")


class TestConfigRedaction:
    """A password inside endpoint_url never reaches /api/v1/config; bwlimit does."""

    async def test_endpoint_password_redacted(
        self, start_api: StartApi, make_settings: Any, bucket: str, mirror: Path
    ) -> None:
        settings = make_settings(bucket, mirror, sync={"bwlimit": "10M"})
        settings = settings.model_copy(
            update={"s3": settings.s3.model_copy(update={"endpoint_url": "http://admin:hunter2@127.0.0.1:1"})}
        )
        c = await start_api(settings)
        text = await (await c.get("/api/v1/config")).text()
        assert "hunter2" not in text
        data = json.loads(text)
        assert data["s3"]["endpoint_url"] == "http://admin:**redacted**@127.0.0.1:1"
        assert data["sync"]["bwlimit"] == 10 * 1024 * 1024

    async def test_bwlimit_gauge(
        self, start_api: StartApi, make_settings: Any, bucket: str, mirror: Path
    ) -> None:
        c = await start_api(make_settings(bucket, mirror, sync={"bwlimit": "2M"}))
        await wait_for(lambda: _ready(c), within=20, what="engine ready")
        metrics = await (await c.get("/metrics")).text()
        assert "s3sync_bwlimit_bytes_per_second 2.097152e+06" in metrics, metrics[:2000]


class TestDocsOffline:
    """/docs makes no request off the machine: assets are local, the online validator is off."""

    async def test_docs_page(self, client: Any) -> None:
        html = await (await client.get("/docs")).text()
        assert "validatorUrl: null" in html
        for token in ("http://", "https://", "//unpkg", "//cdn"):
            assert token not in html, token


class TestConsoleLog:
    """The console renderer escapes control characters (a key with NUL must not write a raw NUL)."""

    def test_nul_and_escape_are_escaped(self, tmp_path: Path) -> None:
        code = (
            "from s3sync import logs; import structlog; logs.configure('INFO', 'console');"
            "structlog.get_logger('t').warning('unsafe key skipped', key='a\\x00b\\x1b[2Jc\\x7f')"
        )
        p = subprocess.run([sys.executable, "-c", code], capture_output=True, check=True)
        assert b"\x00" not in p.stderr and b"\x1b[2J" not in p.stderr and b"\x7f" not in p.stderr
        assert b"a\\x00b\\x1b[2Jc\\x7f" in p.stderr


class TestNewcomerDocs:
    """README shows --endpoint-url for MinIO/moto; make demo says its S3 is in memory; SPDX license."""

    def test_readme_endpoint_url(self) -> None:
        readme = (ROOT / "README.md").read_text()
        assert "--endpoint-url" in readme
        assert "MinIO" in readme and "moto" in readme

    def test_demo_banner_says_in_memory(self, tmp_path: Path) -> None:
        env = clean_environ() | {"PYTHONUNBUFFERED": "1"}
        p = subprocess.run(
            [
                sys.executable,
                "-m",
                "s3sync",
                "demo",
                "--port",
                "0",
                "--dir",
                str(tmp_path / "d"),
                "--exit-after",
                "1",
            ],
            capture_output=True,
            text=True,
            env=env,
            timeout=120,
            check=False,
        )
        assert "in memory" in p.stdout, (p.stdout, p.stderr[-2000:])
        assert "restart starts again from an empty bucket" in p.stdout

    def test_license_is_an_spdx_string(self) -> None:
        import tomllib

        meta = tomllib.loads((ROOT / "pyproject.toml").read_text())
        assert meta["project"]["license"] == "Apache-2.0"
        req = next(r for r in meta["build-system"]["requires"] if r.startswith("setuptools"))
        assert int(req.split(">=")[1].split(".")[0]) >= 77


class TestCliTopOfUnicode:
    """A sync prefix ending in U+10FFFF or U+D7FF: a clean run, no traceback."""

    @pytest.mark.parametrize("prefix", ["\U0010ffff", "a\ud7ff"])
    def test_no_traceback(self, cli: CliRunner, s3: Any, bucket: str, mirror: Path, prefix: str) -> None:
        seed(s3, bucket, {"a": b"1"})
        res = cli.sync(bucket, mirror, "--prefix", prefix)
        assert "Traceback" not in res.stderr, res.stderr
        assert res.returncode in (0, 1), res
        os.listdir(mirror)
