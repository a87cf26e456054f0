"""The lean path's response parsing, seen through the pool: framing, broken or silent answers, hostile bytes.

Raw-socket servers on 127.0.0.1 (``support.rawserver``) send exactly the bytes a
test gives them; the assertions are on what ``HttpPool.request`` returns or
raises and on whether the connection is reused, so they hold for fasthttp's
own parser and for the httptools one replacing it.
"""

from __future__ import annotations

import asyncio
import contextlib
import socket
from collections.abc import AsyncIterator

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from support.rawserver import (
    DEADLINE,
    LAST_CHUNK,
    Envs,
    RawServer,
    ServerConn,
    chunked_ext,
    echo_path,
    get,
    head,
    ok,
    serve_echo,
    serve_pieces,
    splits,
)
from support.wait import wait_for

from s3sync.s3.http import HttpPool
from s3sync.s3.http_parse import HttpError


@pytest.fixture
async def env() -> AsyncIterator[Envs]:
    """Factory of (stub server, pool) pairs, all closed after the test."""
    envs = Envs()
    yield envs
    await envs.aclose()


class TestBrokenResponses:
    """Resets, truncation and malformed heads surface as errors and never poison the pool."""

    @pytest.mark.parametrize("reader", ["read", "iter_chunks"])
    async def test_reset_mid_body(self, env: Envs, reader: str) -> None:
        """A TCP reset halfway through a Content-Length body raises HttpError to the reader."""

        got_head = asyncio.Event()

        async def script(conn: ServerConn) -> None:
            req = await conn.read_request()
            assert req is not None
            if conn.index == 0:
                await conn.send(b"HTTP/1.1 200 OK\r\nContent-Length: 100000\r\n\r\n" + b"x" * 5000)
                await got_head.wait()  # a reset discards unread bytes: let the head land first
                conn.reset()
                return
            await conn.send(ok(echo_path(req)))
            await serve_echo(conn)

        server, pool = await env(script)
        async with asyncio.timeout(DEADLINE):
            resp = await pool.request(head("/reset"))
            got_head.set()
            with pytest.raises(HttpError):
                if reader == "read":
                    await resp.body.read()
                else:
                    async for _ in resp.body.iter_chunks(65536):
                        pass
        assert (await get(pool, "/next"))[1] == b"/next"
        assert [c for c, _ in server.requests] == [0, 1]

    async def test_truncated_content_length_body(self, env: Envs) -> None:
        """A clean close before Content-Length bytes arrived is an error, not a short file."""

        async def script(conn: ServerConn) -> None:
            await conn.read_request()
            await conn.send(b"HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\nshort")

        _, pool = await env(script)
        with pytest.raises(HttpError):
            await get(pool)

    async def test_truncated_chunked_body(self, env: Envs) -> None:
        """A close before the terminating zero-size chunk is an error."""

        async def script(conn: ServerConn) -> None:
            await conn.read_request()
            await conn.send(chunked_ext([b"abc", b"def"])[:-5])

        _, pool = await env(script)
        with pytest.raises(HttpError):
            await get(pool)

    async def test_reset_before_the_head(self, env: Envs) -> None:
        """A reset before any response byte on a fresh connection raises HttpError."""

        async def script(conn: ServerConn) -> None:
            await conn.read_request()
            conn.reset()

        _, pool = await env(script)
        with pytest.raises(HttpError):
            await get(pool)

    @pytest.mark.parametrize(
        "response",
        [
            b"garbage\r\n\r\n",
            b"HTTP/1.1 OK\r\n\r\n",
            b"HTTP/1.1 200 OK\r\nContent-Length: ten\r\n\r\n",
        ],
        ids=["no-status", "non-numeric-status", "bad-content-length"],
    )
    async def test_malformed_head_is_an_http_error(self, env: Envs, response: bytes) -> None:
        """An unparseable status line or Content-Length raises HttpError (retryable)."""

        async def script(conn: ServerConn) -> None:
            await conn.read_request()
            await conn.send(response)
            await conn.wait_client_close()

        _, pool = await env(script)
        with pytest.raises(HttpError):
            await get(pool)

    async def test_negative_content_length_is_an_http_error(self, env: Envs) -> None:
        """``Content-Length: -5`` is malformed, never a length to slice by."""

        async def script(conn: ServerConn) -> None:
            await conn.read_request()
            await conn.send(b"HTTP/1.1 200 OK\r\nContent-Length: -5\r\n\r\n0123456789")
            await conn.wait_client_close()

        _, pool = await env(script)
        with pytest.raises(HttpError):
            await get(pool)

    async def test_oversized_head_is_an_http_error(self, env: Envs) -> None:
        """A head that never ends (more than 64 KiB of headers) is refused instead of buffered forever."""

        async def script(conn: ServerConn) -> None:
            await conn.read_request()
            await conn.send(b"HTTP/1.1 200 OK\r\n")
            with contextlib.suppress(ConnectionError):
                for _ in range(200):
                    await conn.send(b"X-Pad: " + b"p" * 1000 + b"\r\n")
            await conn.wait_client_close()

        _, pool = await env(script)
        with pytest.raises(HttpError):
            await get(pool)

    async def test_connection_refused(self) -> None:
        """Nobody listening is an HttpError naming the address."""
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            port = s.getsockname()[1]
        pool = HttpPool("127.0.0.1", port)
        try:
            with pytest.raises(HttpError, match=f"127.0.0.1:{port}"):
                await pool.request(head())
        finally:
            await pool.close()


class TestTimeouts:
    """``read_timeout`` bounds silence, both before the head and between body bytes."""

    async def test_no_response_times_out(self, env: Envs) -> None:
        """A server that never answers raises TimeoutError, and the connection is dropped."""

        async def script(conn: ServerConn) -> None:
            req = await conn.read_request()
            if conn.index == 0:
                await conn.wait_client_close()
                return
            assert req is not None
            await conn.send(ok(echo_path(req)))
            await serve_echo(conn)

        server, pool = await env(script, read_timeout=0.2)
        with pytest.raises(TimeoutError):
            await get(pool, "/silent")
        await wait_for(
            lambda: server.conns[0].closed_by_peer.is_set(),
            within=DEADLINE,
            interval=0.005,
            what="client drops the silent connection",
        )
        assert (await get(pool, "/next"))[1] == b"/next"
        assert [c for c, _ in server.requests] == [0, 1]

    async def test_stall_mid_body_times_out(self, env: Envs) -> None:
        """A body that stops arriving raises TimeoutError to its reader and is never reused."""

        async def script(conn: ServerConn) -> None:
            req = await conn.read_request()
            if conn.index == 0:
                await conn.send(b"HTTP/1.1 200 OK\r\nContent-Length: 100\r\n\r\nabc")
                await conn.wait_client_close()
                return
            assert req is not None
            await conn.send(ok(echo_path(req)))
            await serve_echo(conn)

        server, pool = await env(script, read_timeout=0.2)
        async with asyncio.timeout(DEADLINE):
            resp = await pool.request(head("/stall"))
            with pytest.raises(TimeoutError):
                async for _ in resp.body.iter_chunks(65536):
                    pass
        assert (await get(pool, "/next"))[1] == b"/next"
        assert [c for c, _ in server.requests] == [0, 1]


class TestFraming:
    """Content-Length, chunked, close-delimited and body-less responses are framed exactly."""

    async def test_headers_are_lowercased_and_repeats_joined(self, env: Envs) -> None:
        """Header names are case-insensitive; a repeated header is joined with ", " (RFC 9110 5.3)."""

        async def script(conn: ServerConn) -> None:
            await conn.read_request()
            await conn.send(ok(b"x", "X-Amz-Meta-A: 1", "x-amz-meta-a: 2", 'ETag: "abc"'))
            await conn.wait_client_close()

        _, pool = await env(script)
        resp, _ = await get(pool)
        assert resp.headers["x-amz-meta-a"] == "1, 2"
        assert resp.headers["etag"] == '"abc"'

    async def test_chunked_body_with_extensions_and_trailer_then_reuse(self, env: Envs) -> None:
        """Chunk extensions and trailers are consumed, and the connection stays usable."""

        async def script(conn: ServerConn) -> None:
            await conn.read_request()
            await conn.send(chunked_ext([b"hello ", b"world"], trailer="x-amz-checksum-crc32: AAAAAA==\r\n"))
            await serve_echo(conn)

        server, pool = await env(script)
        assert (await get(pool, "/a"))[1] == b"hello world"
        assert (await get(pool, "/b"))[1] == b"/b"
        assert [c for c, _ in server.requests] == [0, 0]

    async def test_close_delimited_body(self, env: Envs) -> None:
        """Without Content-Length or chunking the body runs to EOF, and that connection is done."""

        async def script(conn: ServerConn) -> None:
            req = await conn.read_request()
            assert req is not None
            if conn.index == 0:
                await conn.send(b"HTTP/1.1 200 OK\r\n\r\nuntil the end")
                return
            await conn.send(ok(echo_path(req)))

        server, pool = await env(script)
        assert (await get(pool, "/a"))[1] == b"until the end"
        assert (await get(pool, "/b"))[1] == b"/b"
        assert [c for c, _ in server.requests] == [0, 1]

    async def test_head_response_has_no_body_despite_content_length(self, env: Envs) -> None:
        """A HEAD answer announces a length but sends no body; the connection is reused."""

        async def script(conn: ServerConn) -> None:
            while (req := await conn.read_request()) is not None:
                if req.startswith(b"HEAD"):
                    await conn.send(b"HTTP/1.1 200 OK\r\nContent-Length: 12345\r\n\r\n")
                else:
                    await conn.send(ok(echo_path(req)))

        server, pool = await env(script)
        async with asyncio.timeout(DEADLINE):
            resp = await pool.request(head("/h", "HEAD"), no_body=True)
            assert (resp.status, resp.headers["content-length"], await resp.body.read()) == (
                200,
                "12345",
                b"",
            )
        assert (await get(pool, "/g"))[1] == b"/g"
        assert [c for c, _ in server.requests] == [0, 0]

    @pytest.mark.parametrize("status", [204, 304])
    async def test_bodyless_statuses_then_reuse(self, env: Envs, status: int) -> None:
        """204 and 304 end at the blank line (a 304 is how conditional GETs say "unchanged")."""

        async def script(conn: ServerConn) -> None:
            while (req := await conn.read_request()) is not None:
                if req.startswith(b"GET /cond"):
                    await conn.send(f'HTTP/1.1 {status} X\r\nETag: "e"\r\n\r\n'.encode())
                else:
                    await conn.send(ok(echo_path(req)))

        server, pool = await env(script)
        resp, body = await get(pool, "/cond")
        assert (resp.status, body) == (status, b"")
        assert (await get(pool, "/g"))[1] == b"/g"
        assert [c for c, _ in server.requests] == [0, 0]

    async def test_interim_1xx_is_skipped(self, env: Envs) -> None:
        """An unsolicited 1xx before the final answer is skipped, not returned as the response."""

        async def script(conn: ServerConn) -> None:
            await conn.read_request()
            await conn.send(b"HTTP/1.1 103 Early Hints\r\nLink: </x>\r\n\r\n" + ok(b"final"))
            await conn.wait_client_close()

        _, pool = await env(script)
        resp, body = await get(pool)
        assert (resp.status, body) == (200, b"final")

    async def test_large_body_streams_intact_through_flow_control(self, env: Envs) -> None:
        """A body far above the high-water mark, read slowly in chunks, arrives byte-exact."""
        payload = bytes(range(256)) * (6 * 4096)  # 6 MiB

        async def script(conn: ServerConn) -> None:
            await conn.read_request()
            await conn.send(ok(payload))
            await serve_echo(conn)

        server, pool = await env(script)
        got = bytearray()
        async with asyncio.timeout(DEADLINE * 3):
            resp = await pool.request(head("/big"))
            async for chunk in resp.body.iter_chunks(65536):
                got += chunk
                await asyncio.sleep(0)
        assert bytes(got) == payload
        assert (await get(pool, "/after"))[1] == b"/after"
        assert [c for c, _ in server.requests] == [0, 0]


class TestHostileInput:
    """Arbitrary splits and arbitrary bytes: the parser either frames exactly or raises HttpError."""

    @settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
    @given(
        st.lists(st.binary(min_size=0, max_size=40), min_size=0, max_size=6),
        st.lists(st.integers(min_value=0, max_value=10_000), max_size=12),
    )
    def test_chunked_body_survives_any_split(self, pieces: list[bytes], cuts: list[int]) -> None:
        """However the writes cut head and chunks, the body and the next answer on the connection are exact.

        The terminating ``0\r\n\r\n`` goes in one write here; cutting *it* is the test below.
        """
        raw = chunked_ext([p for p in pieces if p])
        body, end = raw[: -len(LAST_CHUNK)], raw[-len(LAST_CHUNK) :]
        first, second, conns = asyncio.run(serve_pieces([*splits(body, cuts), end], ok(b"next")))
        assert first == b"".join(pieces)
        assert second == b"next"
        assert conns == 1

    @pytest.mark.parametrize("trailer", ["", "x-amz-checksum-crc32: AAAAAA==\r\n"], ids=["plain", "trailer"])
    def test_terminal_chunk_split_anywhere(self, trailer: str) -> None:
        """A cut anywhere inside ``0\r\n[trailers]\r\n`` (a TCP or TLS record boundary) still frames."""
        raw = chunked_ext([b"abc"], trailer=trailer)
        start = len(raw) - len(LAST_CHUNK) - len(trailer)
        for cut in range(start + 1, len(raw)):
            first, second, conns = asyncio.run(serve_pieces([raw[:cut], raw[cut:]], ok(b"next")))
            assert (first, second, conns) == (b"abc", b"next", 1), f"cut at byte {cut - start} of the end"

    @settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
    @given(st.binary(max_size=300), st.lists(st.integers(min_value=0, max_value=400), max_size=4))
    def test_arbitrary_bytes_raise_only_http_or_timeout_errors(self, junk: bytes, cuts: list[int]) -> None:
        """Random bytes as a response never escape as another exception type, and never hang."""

        async def scenario() -> None:
            async def script(conn: ServerConn) -> None:
                await conn.read_request()
                for p in splits(junk, cuts):
                    await conn.send(p)

            server = await RawServer(script).start()
            pool = HttpPool("127.0.0.1", server.port, read_timeout=0.3)
            try:
                async with asyncio.timeout(DEADLINE):
                    resp = await pool.request(head())
                    await resp.body.read()
            except (HttpError, TimeoutError):
                pass
            finally:
                await pool.close()
                await server.close()

        asyncio.run(scenario())
