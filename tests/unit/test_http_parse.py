"""Response framing by llhttp, against a raw-socket server on 127.0.0.1 that sends exact bytes."""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, field

import pytest
from support.rawserver import CLOSE, RESET, Answer, RawServer, chunked, response

from s3sync.s3.http_parse import Framing, HttpError, ResponseParser

GET = b"GET /b/k HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n"
HEAD = b"HEAD /b/k HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n"


@dataclass
class Seen:
    """Everything the parser reported, in order."""

    events: list[str] = field(default_factory=list)
    status: int = 0
    headers: dict[str, str] = field(default_factory=dict)
    body: bytearray = field(default_factory=bytearray)
    trailers: dict[str, str] | None = None

    def on_response(self, status: int, headers: dict[str, str]) -> None:
        self.events.append("response")
        self.status, self.headers = status, headers

    def on_body(self, data: bytes) -> None:
        self.body += data

    def on_complete(self, trailers: dict[str, str]) -> None:
        self.events.append("complete")
        self.trailers = trailers


async def exchange(port: int, requests: list[tuple[bytes, bool]], read_size: int = 7) -> list[Seen]:
    """Send each request on ONE connection after the previous answer completed; small reads
    so every framing boundary falls inside a read somewhere."""
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    out: list[Seen] = []
    try:
        for request, no_body in requests:
            seen = Seen()
            parser = ResponseParser(seen)
            out.append(seen)
            parser.start(no_body=no_body)
            writer.write(request)
            while not parser.complete:
                data = await reader.read(read_size)
                if not data:
                    parser.eof()
                    break
                parser.feed(data)
        return out
    finally:
        writer.close()


def script(*answers: Answer) -> RawServer:
    return RawServer.answering(lambda n, head: answers[n])


class TestFraming:
    """Each way a body can be delimited arrives whole, with the right size."""

    async def test_content_length(self) -> None:
        async with script([response(200, b"hello world", [("ETag", '"e"')])]) as srv:
            (seen,) = await exchange(srv.port, [(GET, False)])
        assert seen.status == 200
        assert bytes(seen.body) == b"hello world"
        assert seen.headers["etag"] == '"e"'
        assert seen.events == ["response", "complete"]

    async def test_chunked(self) -> None:
        parts = [b"a" * 10, b"b" * 300, b"c"]
        async with script([chunked(parts)]) as srv:
            (seen,) = await exchange(srv.port, [(GET, False)])
        assert bytes(seen.body) == b"".join(parts)
        assert "content-length" not in seen.headers
        assert seen.trailers == {}

    async def test_chunked_with_trailers(self) -> None:
        answer = chunked([b"x" * 33, b"y" * 5], trailers=[("x-amz-checksum-crc32", "AAAAAA=="), ("X-T", "1")])
        async with script([answer]) as srv:
            (seen,) = await exchange(srv.port, [(GET, False)])
        assert bytes(seen.body) == b"x" * 33 + b"y" * 5
        assert seen.trailers == {"x-amz-checksum-crc32": "AAAAAA==", "x-t": "1"}
        assert "x-t" not in seen.headers

    async def test_close_delimited(self) -> None:
        raw = b'HTTP/1.1 200 OK\r\nETag: "e"\r\n\r\n' + b"z" * 1000
        async with script([raw, CLOSE]) as srv:
            (seen,) = await exchange(srv.port, [(GET, False)])
        assert bytes(seen.body) == b"z" * 1000
        assert seen.events == ["response", "complete"]

    async def test_keep_alive_reuse_and_head(self) -> None:
        """A HEAD answer carries Content-Length but no body; the next answer on the same connection parses."""
        async with script(
            [b"HTTP/1.1 200 OK\r\nContent-Length: 5000\r\n\r\n"],
            [response(200, b"next")],
            [b'HTTP/1.1 304 Not Modified\r\nETag: "e"\r\n\r\n'],
            [response(200, b"after 304")],
        ) as srv:
            head, get, nm, last = await exchange(
                srv.port, [(HEAD, True), (GET, False), (GET, False), (GET, False)]
            )
        assert len(srv.conns) == 1
        assert (head.status, bytes(head.body), head.headers["content-length"]) == (200, b"", "5000")
        assert bytes(get.body) == b"next"
        assert (nm.status, bytes(nm.body)) == (304, b"")
        assert bytes(last.body) == b"after 304"


class TestInterim:
    """1xx answers are skipped; the final answer is what is reported."""

    @pytest.mark.parametrize(
        "interim",
        [
            b"HTTP/1.1 100 Continue\r\n\r\n",
            b"HTTP/1.1 103 Early Hints\r\nLink: </x>; rel=preload\r\n\r\n",
            b"HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 102 Processing\r\n\r\n",
        ],
    )
    async def test_1xx_before_the_answer(self, interim: bytes) -> None:
        async with script([interim, response(200, b"final", [("X-Final", "yes")])]) as srv:
            (seen,) = await exchange(srv.port, [(GET, False)])
        assert seen.status == 200
        assert bytes(seen.body) == b"final"
        assert seen.events == ["response", "complete"]
        assert "link" not in seen.headers
        assert seen.headers["x-final"] == "yes"


class TestBrokenAnswers:
    """A body that does not arrive whole is an error, never a short success."""

    async def test_truncated_length(self) -> None:
        raw = b"HTTP/1.1 200 OK\r\nContent-Length: 100\r\n\r\n" + b"a" * 40
        async with script([raw, CLOSE]) as srv:
            with pytest.raises(HttpError, match="40 of 100"):
                await exchange(srv.port, [(GET, False)])

    async def test_truncated_chunked(self) -> None:
        raw = chunked([b"a" * 50, b"b" * 50])
        async with script([raw[: raw.index(b"b" * 50) + 10], CLOSE]) as srv:
            with pytest.raises(HttpError, match="inside a chunked body"):
                await exchange(srv.port, [(GET, False)])

    async def test_chunked_missing_last_chunk(self) -> None:
        raw = chunked([b"a" * 50])
        async with script([raw[: raw.index(b"0\r\n")], CLOSE]) as srv:
            with pytest.raises(HttpError, match="chunked"):
                await exchange(srv.port, [(GET, False)])

    async def test_reset_mid_body(self) -> None:
        raw = b"HTTP/1.1 200 OK\r\nContent-Length: 100\r\n\r\n" + b"a" * 40
        async with script([raw, RESET]) as srv:
            with pytest.raises(ConnectionError):
                await exchange(srv.port, [(GET, False)])

    async def test_reset_mid_close_delimited_body_is_no_success(self) -> None:
        """Only a clean close ends a close-delimited body; a reset is a failure."""
        raw = b"HTTP/1.1 200 OK\r\n\r\n" + b"a" * 40
        async with script([raw, RESET]) as srv:
            with pytest.raises(ConnectionError):
                await exchange(srv.port, [(GET, False)])

    async def test_closed_before_any_answer(self) -> None:
        async with script([CLOSE]) as srv:
            with pytest.raises(HttpError, match="before a response"):
                await exchange(srv.port, [(GET, False)])

    async def test_malformed_status_line(self) -> None:
        async with script([b"HTTX/1.1 200 OK\r\n\r\n", CLOSE]) as srv:
            with pytest.raises(HttpError, match="malformed"):
                await exchange(srv.port, [(GET, False)])

    async def test_bad_chunk_size(self) -> None:
        raw = b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\nabc\r\n0\r\n\r\n"
        async with script([raw, CLOSE]) as srv:
            with pytest.raises(HttpError, match="malformed"):
                await exchange(srv.port, [(GET, False)])

    async def test_unsolicited_switching_protocols(self) -> None:
        raw = b"HTTP/1.1 101 Switching Protocols\r\nConnection: upgrade\r\nUpgrade: h2c\r\n\r\n"
        async with script([raw, CLOSE]) as srv:
            with pytest.raises(HttpError):
                await exchange(srv.port, [(GET, False)])


class TestNoPipelining:
    """One answer per request: anything beyond it is refused and the connection is not reused."""

    async def test_second_answer_in_the_same_bytes(self) -> None:
        async with script([response(200, b"one") + response(200, b"two")]) as srv:
            with pytest.raises(HttpError, match="unexpected bytes after the response"):
                await exchange(srv.port, [(GET, False)], read_size=65536)

    async def test_more_body_than_content_length(self) -> None:
        raw = b"HTTP/1.1 200 OK\r\nContent-Length: 3\r\n\r\nabcdef"
        async with script([raw]) as srv:
            with pytest.raises(HttpError, match=r"unexpected|malformed"):
                await exchange(srv.port, [(GET, False)], read_size=65536)

    def test_start_while_busy_refused(self) -> None:
        parser = ResponseParser(Seen())
        parser.start()
        with pytest.raises(HttpError, match="no pipelining"):
            parser.start()

    def test_bytes_with_no_request_outstanding(self) -> None:
        parser = ResponseParser(Seen())
        with pytest.raises(HttpError, match="no answer due"):
            parser.feed(response(200, b"x"))

    def test_bytes_after_completion(self) -> None:
        seen = Seen()
        parser = ResponseParser(seen)
        parser.start()
        parser.feed(response(200, b"x"))
        assert parser.complete
        with pytest.raises(HttpError, match="no answer due"):
            parser.feed(b"HTTP/1.1 408 Request Timeout\r\n\r\n")


class TestReportedFacts:
    """What the pool needs to decide on reuse and size checks."""

    def test_framing_and_keep_alive(self) -> None:
        parser = ResponseParser(Seen())
        parser.start()
        parser.feed(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\nConnection: close\r\n\r\nok")
        assert (parser.framing, parser.keep_alive, parser.content_length, parser.received) == (
            Framing.LENGTH,
            False,
            2,
            2,
        )
        parser.start()
        parser.feed(chunked([b"abc"]))
        assert (parser.framing, parser.keep_alive, parser.content_length, parser.received) == (
            Framing.CHUNKED,
            True,
            None,
            3,
        )

    def test_http10_without_keep_alive(self) -> None:
        parser = ResponseParser(Seen())
        parser.start()
        parser.feed(b"HTTP/1.0 200 OK\r\nContent-Length: 1\r\n\r\nx")
        assert parser.complete and not parser.keep_alive

    def test_duplicate_headers_joined(self) -> None:
        seen = Seen()
        parser = ResponseParser(seen)
        parser.start()
        parser.feed(b"HTTP/1.1 200 OK\r\nX-A: 1\r\nx-a: 2\r\nContent-Length: 0\r\n\r\n")
        assert seen.headers["x-a"] == "1, 2"


class TestLengthBypass:
    """A Content-Length body after the head is passed on as it came, counted, never over-read."""

    def test_pieces_passed_through_and_counted(self) -> None:
        seen = Seen()
        parser = ResponseParser(seen)
        parser.start()
        parser.feed(b"HTTP/1.1 200 OK\r\nContent-Length: 10\r\nX-A:  v  \r\n\r\nab")
        assert seen.headers["x-a"] == "v"
        piece = b"cdefgh"
        parser.feed(piece)
        assert parser.received == 8 and not parser.complete
        parser.feed(b"ij")
        assert parser.complete and bytes(seen.body) == b"abcdefghij"

    def test_bytes_beyond_the_length_after_the_head(self) -> None:
        seen = Seen()
        parser = ResponseParser(seen)
        parser.start()
        parser.feed(b"HTTP/1.1 200 OK\r\nContent-Length: 4\r\n\r\nab")
        with pytest.raises(HttpError, match="unexpected bytes"):
            parser.feed(b"cdHTTP/1.1 200 OK\r\n")
        assert bytes(seen.body) == b"abcd" and seen.events == ["response", "complete"]
