"""The README's module table is the tree as built: every package has a row, every name in it exists.

Like ``test_config_docs`` for the configuration keys: a module moved or removed
without its row (or a row naming a module that is gone) fails here.
"""

from __future__ import annotations

import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
README = ROOT / "README.md"
PKG = ROOT / "src" / "s3sync"
_NAME = re.compile(r"`([A-Za-z_][\w]*(?:\.py|/))`")


def _rows() -> dict[str, str]:
    """First-column names (``cli/``, ``errors.py``) → the row's second column."""
    text = README.read_text(encoding="utf-8")
    start = text.index("| package / module | holds |")
    rows: dict[str, str] = {}
    for line in text[start:].splitlines()[2:]:
        if not line.startswith("|"):
            break
        first, holds = line.split("|")[1:3]
        for name in _NAME.findall(first):
            rows[name] = holds
    return rows


def _top_level() -> set[str]:
    """The packages and loose modules at the top of ``src/s3sync``."""
    out = {f"{p.name}/" for p in PKG.iterdir() if p.is_dir() and (p / "__init__.py").exists()}
    out |= {p.name for p in PKG.glob("*.py") if p.name not in ("__init__.py", "__main__.py")}
    return out


class TestModuleTable:
    """README.md, "How it works": the package / module table."""

    def test_every_package_and_module_has_a_row(self) -> None:
        assert _top_level() == set(_rows()), "README module table rows differ from src/s3sync"

    def test_every_name_in_a_row_exists_in_its_package(self) -> None:
        missing = []
        for first, holds in _rows().items():
            if not first.endswith("/"):
                continue
            base = PKG / first.rstrip("/")
            for name in _NAME.findall(holds):
                if name.endswith("/"):
                    found = any(p.is_dir() for p in base.rglob(name.rstrip("/")))
                else:
                    found = any(base.rglob(name))
                if not found:
                    missing.append(f"{first}{name}")
        assert not missing, f"named in the README's module table but not in the tree: {missing}"


class TestDocumentReferences:
    """Code and tests cite documents that ship with the repository, never ones outside it."""

    _OUTSIDE = re.compile(r"\b(?:DESIGN|INTERFACE)(?:\.md)?\b")
    _DOC = re.compile(r"\bdocs/([\w-]+\.md)\b")

    def _files(self) -> list[Path]:
        here = Path(__file__).resolve()
        files = [*PKG.rglob("*.py"), *(ROOT / "tests").rglob("*.py")]
        return [p for p in files if p.resolve() != here]

    def test_no_reference_to_documents_outside_the_repo(self) -> None:
        bad = [
            f"{p.relative_to(ROOT)}:{n}"
            for p in self._files()
            for n, line in enumerate(p.read_text(encoding="utf-8").splitlines(), 1)
            if self._OUTSIDE.search(line)
        ]
        assert not bad, bad

    def test_cited_docs_exist(self) -> None:
        cited = {m for p in self._files() for m in self._DOC.findall(p.read_text(encoding="utf-8"))}
        assert {c for c in cited if not (ROOT / "docs" / c).exists()} == set()
