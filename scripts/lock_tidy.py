"""Drop the project's own entry from a pip-compile'd lock file.

``.[dev]`` pulls in ``s3sync[test]``, so pip-compile lists ``s3sync @ file:///...``
(an absolute path of the machine that made the lock, with no hash); the project
itself is installed editable after the locked dependencies, never from the lock.
"""

from __future__ import annotations

import sys
from pathlib import Path


def tidy(text: str) -> str:
    out: list[str] = []
    skip_via = False
    for line in text.splitlines():
        if line.startswith(("# WARNING: pip install will require", "# Consider using a hashable URL")):
            continue
        if line.startswith("s3sync @ "):
            skip_via = True
            continue
        if skip_via and line.startswith("    # via"):
            continue
        skip_via = False
        out.append(line)
    return "\n".join(out) + "\n"


if __name__ == "__main__":
    path = Path(sys.argv[1])
    path.write_text(tidy(path.read_text()))
