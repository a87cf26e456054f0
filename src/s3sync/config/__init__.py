"""The configuration: what every component is given, and nothing it may change.

``loading`` reads the sources in order of precedence (built-in defaults < TOML file <
legacy env names < ``S3SYNC_*`` env < CLI flags) into one frozen :class:`Settings`;
``sections`` holds one pydantic model per ``[section]`` with its validation; ``units``
parses the human spellings (``10M``, ``2h``) the sections and the CLI flags share.
This package sits just above the ground floor: it imports nothing of s3sync beyond
``errors`` and ``model``, so every layer above may read its settings.

The names loading exports are re-exported here, so ``from s3sync.config import
Settings`` is the one way to say "the settings".
"""

from __future__ import annotations

from s3sync.config.loading import (
    LEGACY_ENV,
    Settings,
    check_serving,
    check_syncing,
    format_validation_error,
    load_settings,
    redact_url,
)
from s3sync.config.sections import SyncSettings

__all__ = [
    "LEGACY_ENV",
    "Settings",
    "SyncSettings",
    "check_serving",
    "check_syncing",
    "format_validation_error",
    "load_settings",
    "redact_url",
]
