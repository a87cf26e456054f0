"""Typed application keys (aiohttp ``web.AppKey``): no string keys anywhere."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from aiohttp import web
from prometheus_client.registry import CollectorRegistry

from s3sync.api.auth import FailureLimiter
from s3sync.config import Settings
from s3sync.stats import SyncStats

if TYPE_CHECKING:
    from s3sync.api.services import Services

SETTINGS = web.AppKey("settings", Settings)
STATS = web.AppKey("stats", SyncStats)
REGISTRY = web.AppKey("registry", CollectorRegistry)
SERVICES: web.AppKey[Services] = web.AppKey("services")
OPENAPI = web.AppKey("openapi", dict[str, Any])
LIMITER = web.AppKey("limiter", FailureLimiter)
