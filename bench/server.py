"""The S3 server every tool talks to: ``rclone serve s3`` over a data directory.

rclone's Go server is fast enough that the clients, not the server, are what is
measured (moto is not). Buckets are the top-level directories of the data
directory, so the harness creates objects by writing files, which is far faster
than PUTs. rclone caches directory listings (``--dir-cache-time``), so after
changing files behind its back the server is restarted (`RcloneServer.restart`,
~0.1 s) before any tool looks; every timed pass therefore starts against a
server whose caches are in the same state.

A minimal SigV4 client (`S3Client`) covers the few requests the harness itself
makes (PUT for the event-latency workload, HEAD to warm the server's MD5 of a
large object) with the standard library only.
"""

from __future__ import annotations

import datetime as _dt
import hashlib
import hmac
import html
import http.client
import re
import socket
import subprocess
import time
from pathlib import Path
from urllib.parse import quote

from peers import ACCESS_KEY, PEERS_DIR, REGION, SECRET_KEY


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def wait_http(host: str, port: int, deadline_s: float = 15.0) -> None:
    """Poll until something accepts HTTP on host:port, or raise."""
    end = time.monotonic() + deadline_s
    last: Exception | None = None
    while time.monotonic() < end:
        try:
            conn = http.client.HTTPConnection(host, port, timeout=1)
            conn.request("GET", "/")
            conn.getresponse().read()
            conn.close()
            return
        except OSError as exc:
            last = exc
            time.sleep(0.01)
    raise RuntimeError(f"nothing answered on {host}:{port} within {deadline_s}s: {last}")


class RcloneServer:
    """``rclone serve s3`` on a free loopback port; restartable on the same port."""

    def __init__(self, data_dir: Path, log_file: Path, config_file: Path) -> None:
        self.data_dir = data_dir
        self.log_file = log_file
        self.config_file = config_file
        self.port = free_port()
        self._proc: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def argv(self) -> list[str]:
        return [
            str(PEERS_DIR / "bin" / "rclone"),
            "serve",
            "s3",
            "--config",
            str(self.config_file),
            "--auth-key",
            f"{ACCESS_KEY},{SECRET_KEY}",
            "--addr",
            f"127.0.0.1:{self.port}",
            # ETag = MD5 of the content, like real S3 for single-part objects,
            # so checksum-verifying clients can verify.
            "--etag-hash",
            "MD5",
            "--force-path-style=true",
            "--log-level",
            "NOTICE",
            str(self.data_dir),
        ]

    def start(self) -> None:
        self.data_dir.mkdir(parents=True, exist_ok=True)
        log = self.log_file.open("ab")
        for _attempt in range(3):
            self._proc = subprocess.Popen(
                self.argv(), stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL
            )
            try:
                wait_http("127.0.0.1", self.port, 15.0)
                log.close()
                return
            except RuntimeError:
                self.stop()
                self.port = free_port()
        log.close()
        raise RuntimeError(f"rclone serve s3 did not start; see {self.log_file}")

    def stop(self) -> None:
        if self._proc is None:
            return
        self._proc.terminate()
        try:
            self._proc.wait(10)
        except subprocess.TimeoutExpired:
            self._proc.kill()
            self._proc.wait()
        self._proc = None

    def restart(self) -> None:
        """Fresh process, same port: drops rclone's directory and hash caches."""
        self.stop()
        end = time.monotonic() + 10
        while time.monotonic() < end:
            try:
                with socket.socket() as s:
                    s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
                    s.bind(("127.0.0.1", self.port))
                break
            except OSError:
                time.sleep(0.02)
        self.start()

    @property
    def pid(self) -> int | None:
        return self._proc.pid if self._proc is not None else None


def _hmac(key: bytes, msg: str) -> bytes:
    return hmac.new(key, msg.encode(), hashlib.sha256).digest()


class S3Client:
    """Just enough SigV4 (path-style, one keep-alive connection) for the harness."""

    def __init__(self, port: int) -> None:
        self.host = f"127.0.0.1:{port}"
        self.port = port
        self._conn: http.client.HTTPConnection | None = None

    def _connection(self) -> http.client.HTTPConnection:
        if self._conn is None:
            self._conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=120)
        return self._conn

    def close(self) -> None:
        if self._conn is not None:
            self._conn.close()
            self._conn = None

    def _signed_headers(self, method: str, path: str, body: bytes, query: str = "") -> dict[str, str]:
        now = _dt.datetime.now(_dt.UTC)
        amz_date = now.strftime("%Y%m%dT%H%M%SZ")
        day = now.strftime("%Y%m%d")
        payload_hash = hashlib.sha256(body).hexdigest()
        headers = {
            "host": self.host,
            "x-amz-content-sha256": payload_hash,
            "x-amz-date": amz_date,
        }
        names = sorted(headers)
        canonical = "\n".join(
            [
                method,
                quote(path, safe="/-_.~"),
                query,
                "".join(f"{n}:{headers[n]}\n" for n in names),
                ";".join(names),
                payload_hash,
            ]
        )
        scope = f"{day}/{REGION}/s3/aws4_request"
        to_sign = "\n".join(
            ["AWS4-HMAC-SHA256", amz_date, scope, hashlib.sha256(canonical.encode()).hexdigest()]
        )
        key = _hmac(("AWS4" + SECRET_KEY).encode(), day)
        for part in (REGION, "s3", "aws4_request"):
            key = _hmac(key, part)
        sig = hmac.new(key, to_sign.encode(), hashlib.sha256).hexdigest()
        headers["Authorization"] = (
            f"AWS4-HMAC-SHA256 Credential={ACCESS_KEY}/{scope}, "
            f"SignedHeaders={';'.join(names)}, Signature={sig}"
        )
        return headers

    def request(self, method: str, bucket: str, key: str, body: bytes = b"") -> tuple[int, dict[str, str]]:
        path = f"/{bucket}/{key}"
        headers = self._signed_headers(method, path, body)
        for attempt in range(2):
            conn = self._connection()
            try:
                conn.request(method, quote(path, safe="/-_.~"), body=body or None, headers=headers)
                resp = conn.getresponse()
                resp.read()
                return resp.status, {k.lower(): v for k, v in resp.getheaders()}
            except (http.client.HTTPException, OSError):
                self.close()
                if attempt:
                    raise
        raise AssertionError("unreachable")

    def list_all(self, bucket: str) -> int:
        """Walk ListObjectsV2 to the end (the harness warms rclone's listing cache with it)."""
        count, token = 0, ""
        while True:
            params = {"list-type": "2", "max-keys": "1000"}
            if token:
                params["continuation-token"] = token
            query = "&".join(f"{k}={quote(v, safe='-_.~')}" for k, v in sorted(params.items()))
            path = f"/{bucket}"
            headers = self._signed_headers("GET", path, b"", query)
            conn = self._connection()
            conn.request("GET", f"{quote(path, safe='/-_.~')}?{query}", headers=headers)
            resp = conn.getresponse()
            body = resp.read().decode("utf-8", "replace")
            if resp.status != 200:
                raise RuntimeError(f"ListObjectsV2 {bucket} -> {resp.status}")
            count += body.count("<Key>")
            m = re.search(r"<NextContinuationToken>([^<]+)</NextContinuationToken>", body)
            if "<IsTruncated>true</IsTruncated>" not in body or not m:
                return count
            token = html.unescape(m.group(1))

    def put(self, bucket: str, key: str, body: bytes) -> str:
        status, headers = self.request("PUT", bucket, key, body)
        if status != 200:
            raise RuntimeError(f"PUT {bucket}/{key} -> {status}")
        return headers.get("etag", "").strip('"')

    def head(self, bucket: str, key: str) -> tuple[int, str]:
        status, headers = self.request("HEAD", bucket, key)
        return status, headers.get("etag", "").strip('"')
