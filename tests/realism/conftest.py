"""Fixtures for the AWS-behaviour suite: the proxy in front of moto, with its AWS behaviour."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from support.aws import Aws
from support.proxy import Proxy
from support.s3kit import AWS_ENV

#: Sizes that make the ranged path (parallel ranged GETs) kick in at 12 MiB.
RANGE = {"multipart_threshold_mb": 10, "part_size_mb": 5}


@pytest.fixture
def proxy(moto_endpoint: str) -> Iterator[Proxy]:
    """A fresh proxy in front of this worker's moto server with the AWS behaviour, nothing configured yet."""
    with Proxy(moto_endpoint, Aws()) as p:
        yield p


@pytest.fixture
def settings_for(proxy: Proxy) -> Any:
    """``settings_for(bucket, mirror, fast_get, s3={...}, sync={...})`` → Settings whose S3 is the proxy."""
    from s3sync.config import load_settings

    def _make(bucket: str, local_dir: Path, fast_get: bool, **sections: dict[str, Any]) -> Any:
        overrides: dict[str, dict[str, Any]] = {
            "s3": {"bucket": bucket, "endpoint_url": proxy.url, "fast_get": fast_get},
            "sync": {
                "local_dir": str(local_dir),
                "periodic": False,
                "fsync": False,
                "retry_attempts": 2,
                **RANGE,
            },
        }
        for section, values in sections.items():
            overrides.setdefault(section, {}).update(values)
        return load_settings(overrides=overrides, environ=dict(AWS_ENV))

    return _make
