"""s3sync: keep a local directory an exact, always-current mirror of an S3 bucket.

Importing the package has no side effects: what the ``s3sync`` program does to its own
process at start-up (which optional libraries it keeps out) is in :mod:`s3sync.cli.bootstrap`.
"""

from __future__ import annotations

__version__ = "0.1.0"
