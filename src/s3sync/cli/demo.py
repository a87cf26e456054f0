"""``s3sync demo``: zero set-up. An embedded moto S3 on loopback, a demo bucket, the daemon.

Uses throwaway credentials that only the embedded server accepts, never the
user's AWS credentials, and only ever talks to 127.0.0.1.

The embedded S3 lives in memory, so every start seeds a fresh bucket; the demo owns its mirror
too and starts it empty (a mirror kept from the last run would hold the previous run's uploads
and trip the delete guard on every pass). It only ever empties a directory it created itself,
recognised by a marker in the state directory; any other non-empty directory is refused.
"""

from __future__ import annotations

import asyncio
import os
import shutil
import socket
import sys
import threading
from pathlib import Path

DEMO_BUCKET = "s3sync-demo"
DEMO_OBJECTS = {
    "README.txt": b"Welcome to the s3sync demo: this bucket lives in an embedded moto S3 server.\n",
    "reports/2026/q1/summary.csv": b"month,revenue\njan,100\nfeb,120\nmar,140\n",
    "reports/2026/q2/summary.csv": b"month,revenue\napr,150\nmay,160\njun,170\n",
    "images/logo.svg": b'<svg xmlns="http://www.w3.org/2000/svg" width="10" height="10"/>\n',
    "data/nested/deeper/still deeper/file with spaces.json": b'{"hello": "world"}\n',
    "data/unicode/caf\u00e9.txt": "d\u00e9j\u00e0 vu\n".encode(),
    "logs/app.log": b"2026-11-24T00:00:00Z started\n" * 50,
}


MARKER = Path(".s3sync") / "demo-mirror"


def _legacy_demo_mirror(directory: Path) -> bool:
    """A mirror from a demo run before the marker: a state dir, and either the default name
    (``./demo-mirror``, where the banner's ``new.txt`` upload lands too) or only demo keys."""
    tops = {k.split("/", 1)[0] for k in DEMO_OBJECTS} | {".s3sync"}
    names = {p.name for p in directory.iterdir()}
    return ".s3sync" in names and (directory.name == "demo-mirror" or names <= tops)


def prepare_mirror(directory: Path) -> str | None:
    """Start the demo's mirror empty; None, or why the directory is not the demo's to empty."""
    if directory.exists():
        if not directory.is_dir():
            return f"{directory} exists and is not a directory; choose another with --dir"
        if any(directory.iterdir()):
            if not ((directory / MARKER).is_file() or _legacy_demo_mirror(directory)):
                return (
                    f"{directory} is not empty and is not a demo mirror; the demo empties its mirror "
                    "on every start, so choose an empty or new directory with --dir"
                )
            shutil.rmtree(directory)
    (directory / MARKER).parent.mkdir(parents=True, exist_ok=True)
    (directory / MARKER).write_text("made by `s3sync demo`, which empties this directory on start\n")
    return None


def _port_problem(port: int) -> str | None:
    """Before anything starts: the API port must be free (the demo's flag is --port, not api.port)."""
    if port == 0:
        return None
    with socket.socket() as s:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            s.bind(("127.0.0.1", port))
        except OSError as exc:
            return (
                f"cannot listen on 127.0.0.1:{port}: {(exc.strerror or str(exc)).lower()} (another demo or "
                f"s3sync still running? find it with `ss -ltnp 'sport = :{port}'`, or choose another port: "
                "s3sync demo --port 8899, or --port 0 for any free one)"
            )
    return None


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def start_moto() -> tuple[object, str]:
    """Start moto's threaded server on a free loopback port; returns (server, endpoint)."""
    from moto.server import ThreadedMotoServer

    port = _free_port()
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=port, verbose=False)
    server.start()
    return server, f"http://127.0.0.1:{port}"


def seed(endpoint: str) -> None:
    import boto3

    s3 = boto3.client("s3", endpoint_url=endpoint, region_name="us-east-1")
    s3.create_bucket(Bucket=DEMO_BUCKET)
    for key, body in DEMO_OBJECTS.items():
        s3.put_object(Bucket=DEMO_BUCKET, Key=key, Body=body)


def run_demo(port: int = 8888, directory: Path = Path("demo-mirror"), exit_after: float | None = None) -> int:
    try:
        import moto  # noqa: F401
    except ImportError:
        print("s3sync demo needs moto: pip install 's3sync[test]' (make demo does this for you)")
        return 2
    os.environ.setdefault("AWS_ACCESS_KEY_ID", "demo-access-key")
    os.environ.setdefault("AWS_SECRET_ACCESS_KEY", "demo-secret-key")
    for var in ("AWS_PROFILE", "AWS_SESSION_TOKEN"):
        os.environ.pop(var, None)
    os.environ["AWS_ACCESS_KEY_ID"] = "demo-access-key"
    os.environ["AWS_SECRET_ACCESS_KEY"] = "demo-secret-key"
    directory = directory.resolve()
    problem = _port_problem(port) or prepare_mirror(directory)
    if problem is not None:
        print(f"s3sync: {problem}", file=sys.stderr)
        return 2
    import logging

    logging.getLogger("werkzeug").setLevel(logging.WARNING)  # moto's access lines are not the demo's
    server, endpoint = start_moto()
    seed(endpoint)
    if port == 0:
        port = _free_port()
    from s3sync.cli.bootstrap import configure_logs, run_loop
    from s3sync.config import load_settings

    settings = load_settings(
        overrides={
            "s3": {"bucket": DEMO_BUCKET, "endpoint_url": endpoint, "region": "us-east-1"},
            "sync": {"local_dir": str(directory), "interval_seconds": 60, "delete": True},
            "api": {"host": "127.0.0.1", "port": port},
            "log": {"format": "console"},
        },
        environ={k: v for k, v in os.environ.items() if not k.startswith("S3SYNC_")},
    )
    configure_logs(settings)
    from s3sync.daemon.serve import serve

    def banner(url: str) -> None:
        print(
            "\n"
            "  s3sync demo is running\n"
            f"  embedded S3 (moto):  {endpoint}   bucket: {DEMO_BUCKET} ({len(DEMO_OBJECTS)} objects)\n"
            "                       in memory only: a restart starts again from an empty bucket\n"
            "                       (re-seeded with the demo objects; your uploads are gone)\n"
            f"  mirror directory:    {directory} (emptied on every start)\n"
            f"  API docs:            {url}/docs\n"
            f"  health:              {url}/api/v1/health\n"
            f"  stats:               {url}/api/v1/stats\n"
            f"  files:               {url}/api/v1/files?source=local\n"
            f"  metrics:             {url}/metrics\n"
            "  try: aws --endpoint-url " + endpoint + f" s3 cp ./somefile s3://{DEMO_BUCKET}/new.txt\n"
            f"       (with AWS_ACCESS_KEY_ID=demo-access-key AWS_SECRET_ACCESS_KEY=demo-secret-key),\n"
            f"       then: curl -X POST {url}/api/v1/sync\n"
            "  Ctrl-C to stop.\n",
            flush=True,
        )
        if exit_after is not None:
            threading.Timer(exit_after, lambda: os.kill(os.getpid(), 15)).start()

    try:
        return int(run_loop(lambda: serve(settings, ready=banner)))
    finally:
        try:
            server.stop()  # type: ignore[attr-defined]
        except Exception:
            pass
        asyncio.set_event_loop_policy(None)
