"""s3sync: keep a local directory an exact, always-current mirror of an S3 bucket."""

from __future__ import annotations

__version__ = "0.1.0"
