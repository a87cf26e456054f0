"""Shared fixtures: a loopback moto S3 server, unique buckets, settings and CLI helpers.

Every xdist worker starts its own moto server on a free loopback port, so tests
never share state across processes; inside one worker each test gets its own
bucket, which is all the isolation moto needs.
"""

from __future__ import annotations

import os
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from support.s3kit import (
    AWS_ENV,
    CliRunner,
    clean_environ,
)

# Variables that would make a test talk to something other than our moto server,
# or change s3sync's configuration behind the test's back.
_SCRUBBED_PREFIXES = ("S3SYNC_", "AWS_")


@pytest.fixture(scope="session", autouse=True)
def aws_test_env() -> Iterator[None]:
    """Fake credentials for everything in this process; the real env is restored after."""
    saved = dict(os.environ)
    for name in list(os.environ):
        if name.startswith(_SCRUBBED_PREFIXES):
            del os.environ[name]
    os.environ.update(AWS_ENV)
    try:
        yield
    finally:
        os.environ.clear()
        os.environ.update(saved)


@pytest.fixture(scope="session")
def moto_endpoint(aws_test_env: None) -> Iterator[str]:
    """Base URL of a moto S3 server on 127.0.0.1 and a free port."""
    from moto.server import ThreadedMotoServer

    server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    host, port = server.get_host_and_port()
    try:
        yield f"http://{host}:{port}"
    finally:
        server.stop()


@pytest.fixture(scope="session")
def s3(moto_endpoint: str) -> Any:
    """A synchronous boto3 client, for seeding and inspecting buckets from tests."""
    import boto3

    return boto3.client(
        "s3",
        endpoint_url=moto_endpoint,
        region_name="us-east-1",
        aws_access_key_id=AWS_ENV["AWS_ACCESS_KEY_ID"],
        aws_secret_access_key=AWS_ENV["AWS_SECRET_ACCESS_KEY"],
    )


@pytest.fixture
def bucket(s3: Any) -> str:
    """A fresh, empty bucket for this test only."""
    name = f"t-{uuid.uuid4().hex[:12]}"
    s3.create_bucket(Bucket=name)
    return name


@pytest.fixture
def mirror(tmp_path: Path) -> Path:
    """The local mirror directory; its parent holds nothing else, so escapes are visible."""
    d = tmp_path / "jail" / "mirror"
    d.mkdir(parents=True)
    return d


MakeSettings = Callable[..., Any]


@pytest.fixture
def make_settings(moto_endpoint: str) -> MakeSettings:
    """``make_settings(bucket, local_dir, sync={...}, api={...}, ...)`` → frozen Settings.

    Periodic reconciliation is off unless a test turns it on, so the only syncs
    that happen are the ones the test asks for.
    """
    from s3sync.config import load_settings

    def _make(bucket: str, local_dir: Path, **sections: dict[str, Any]) -> Any:
        overrides: dict[str, dict[str, Any]] = {
            "s3": {"bucket": bucket, "endpoint_url": moto_endpoint},
            "sync": {"local_dir": str(local_dir), "periodic": False},
        }
        for section, values in sections.items():
            overrides.setdefault(section, {}).update(values)
        return load_settings(overrides=overrides, environ=dict(AWS_ENV))

    return _make


@pytest.fixture
def cli(moto_endpoint: str, tmp_path: Path) -> CliRunner:
    """Runs ``python -m s3sync …`` in a subprocess against the moto server."""
    return CliRunner(moto_endpoint, cwd=tmp_path, base_env=clean_environ())
