"""Allow ``python -m s3sync``."""

from __future__ import annotations

from s3sync.cli import main

if __name__ == "__main__":
    raise SystemExit(main())
