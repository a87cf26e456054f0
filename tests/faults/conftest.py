"""Fixtures for the fault suite: the proxy, settings pointed at it, real daemons.

Everything talks over loopback: s3sync → :class:`support.proxy.Proxy` (its fault rules) → moto. Daemon
tests run ``python -m s3sync serve`` as a real subprocess (real signals, real
SIGKILL), configured through ``S3SYNC_*`` environment variables.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from support.daemon import Daemon, daemon_env
from support.proxy import Proxy
from support.s3kit import AWS_ENV


@pytest.fixture
def proxy(moto_endpoint: str) -> Iterator[Proxy]:
    """A fresh proxy in front of this worker's moto server, no fault rules yet (``proxy.faults``)."""
    with Proxy(moto_endpoint) as p:
        yield p


MakeSettings = Callable[..., Any]


@pytest.fixture
def proxied_settings(proxy: Proxy) -> MakeSettings:
    """``proxied_settings(bucket, local_dir, sync={...}, s3={...})`` → Settings whose S3 is the proxy.

    Retries back off quickly (the policy's base delay is fixed in code at 0.2 s
    with full jitter), periodic reconcile is off, fsync off to keep tests fast.
    """
    from s3sync.config import load_settings

    def _make(bucket: str, local_dir: Path, **sections: dict[str, Any]) -> Any:
        overrides: dict[str, dict[str, Any]] = {
            "s3": {"bucket": bucket, "endpoint_url": proxy.url, "connect_timeout_seconds": 3.0},
            "sync": {"local_dir": str(local_dir), "periodic": False, "fsync": False},
        }
        for section, values in sections.items():
            overrides.setdefault(section, {}).update(values)
        return load_settings(overrides=overrides, environ=dict(AWS_ENV))

    return _make


@pytest.fixture
def daemon_factory(tmp_path: Path) -> Iterator[Callable[..., Daemon]]:
    """``daemon_factory(bucket=..., endpoint=..., local_dir=..., **{"sync__x": v})`` → a started Daemon.

    Extra keyword settings use ``section__key`` names (``sync__concurrency=4``)
    and become ``S3SYNC_SECTION__KEY`` variables. Every daemon is killed at teardown.
    """
    made: list[Daemon] = []

    def _make(
        *,
        bucket: str,
        endpoint: str,
        local_dir: Path,
        start: bool = True,
        wait: bool = True,
        port: int | None = None,
        **settings: Any,
    ) -> Daemon:
        env = daemon_env(bucket=bucket, endpoint=endpoint, local_dir=local_dir, port=port, **settings)
        d = Daemon(env, tmp_path / f"daemon-{len(made)}.log")
        made.append(d)
        if start:
            d.start(wait=wait)
        return d

    yield _make
    for d in made:
        d.close()


@pytest.fixture(scope="module")
def fuzz_daemon(s3: Any, moto_endpoint: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Daemon]:
    """One real daemon per fuzzing module, with a few objects to list and download."""
    name = f"t-fuzz-{uuid.uuid4().hex[:8]}"
    s3.create_bucket(Bucket=name)
    for key in ("a.txt", "dir/b.txt", "space name.txt", "unicode-é.txt"):
        s3.put_object(Bucket=name, Key=key, Body=b"x" * 100)
    root = tmp_path_factory.mktemp("fuzz")
    env = daemon_env(bucket=name, endpoint=moto_endpoint, local_dir=root / "mirror")
    d = Daemon(env, root / "daemon.log").start()
    assert d.post("/api/v1/sync").status == 200
    try:
        yield d
    finally:
        d.close()
