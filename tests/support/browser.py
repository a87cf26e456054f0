"""Which headless browser the page tests drive, and whether its absence may skip them.

`.ci/run` installs Debian's ``chromium`` and sets ``S3SYNC_REQUIRE_BROWSER=1``: there a
missing browser is an error, never a quiet skip. Elsewhere the tests skip with the reason.
"""

from __future__ import annotations

import os
import shutil

import pytest

BROWSER = next((b for b in ("chromium", "chromium-browser", "google-chrome") if shutil.which(b)), None)

if BROWSER is None and os.environ.get("S3SYNC_REQUIRE_BROWSER"):
    raise RuntimeError("S3SYNC_REQUIRE_BROWSER is set but no Chromium here: apt-get install chromium")

needs_browser = pytest.mark.skipif(
    BROWSER is None, reason="no Chromium on this machine (Debian: apt-get install chromium)"
)
