"""Fixtures for the AWS-behaviour suite: the rewriting proxy in front of moto."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from support.awsproxy import AwsProxy


@pytest.fixture
def aws(moto_endpoint: str) -> Iterator[AwsProxy]:
    """A fresh AWS-like proxy in front of this worker's moto server, nothing configured yet."""
    with AwsProxy(moto_endpoint) as proxy:
        yield proxy
