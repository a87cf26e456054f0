"""Typed application keys (aiohttp ``web.AppKey``): no string keys anywhere."""

from __future__ import annotations

from typing import Any

from aiohttp import web
from prometheus_client.registry import CollectorRegistry

from s3sync.api.auth import FailureLimiter
from s3sync.api.handles import Handles
from s3sync.config import Settings
from s3sync.stats import SyncStats

SETTINGS = web.AppKey("settings", Settings)
STATS = web.AppKey("stats", SyncStats)
REGISTRY = web.AppKey("registry", CollectorRegistry)
SERVICES: web.AppKey[Handles] = web.AppKey("services")  # what the daemon's supervisor hands the app
OPENAPI = web.AppKey("openapi", dict[str, Any])
LIMITER = web.AppKey("limiter", FailureLimiter)
