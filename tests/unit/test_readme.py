"""The README and docs are part of the product: their links resolve, the first screen shows how
to start, and every `s3sync` command they show is one the CLI accepts."""

from __future__ import annotations

import re
import shlex
from pathlib import Path

import pytest

from s3sync.cli import build_parser

ROOT = Path(__file__).resolve().parents[2]
README = ROOT / "README.md"
DOCS = sorted((ROOT / "docs").glob("*.md"))
_LINK = re.compile(r"(?<!!)\[[^\]]*\]\(([^)\s]+)(?:\s+\"[^\"]*\")?\)")
_FENCE = re.compile(r"^```[^\n]*\n(.*?)^```", re.S | re.M)


def _relative_links(md: Path) -> list[str]:
    text = _FENCE.sub("", md.read_text(encoding="utf-8"))  # code blocks are not links
    out = []
    for target in _LINK.findall(text):
        if re.match(r"^[a-z][a-z0-9+.-]*:", target, re.I) or target.startswith("#"):
            continue  # http:, https:, mailto:, file: and in-page anchors
        out.append(target)
    return out


def _commands(md: Path) -> list[str]:
    """Every `s3sync …` command line inside fenced code blocks (comments and prompts removed)."""
    lines: list[str] = []
    for block in _FENCE.findall(md.read_text(encoding="utf-8")):
        for raw in block.splitlines():
            line = raw.strip().removeprefix("$ ")
            line = re.sub(r"\s+#.*$", "", line)
            m = re.search(r"(?:^|/|\s)(s3sync\s+(?:serve|sync|verify|status|demo)\b.*)$", line)
            if m and not line.startswith("#"):
                lines.append(m.group(1))
    return lines


class TestLinks:
    """Every relative link in README.md and docs/*.md points at a file that exists."""

    @pytest.mark.parametrize("md", [README, *DOCS], ids=lambda p: p.name)
    def test_relative_links_resolve(self, md: Path) -> None:
        """Paths are resolved against the linking file's directory; anchors are ignored."""
        missing = [t for t in _relative_links(md) if not (md.parent / t.split("#", 1)[0]).exists()]
        assert not missing, f"{md.name}: broken links {missing}"

    def test_readme_links_the_guides(self) -> None:
        """A new user reaches configuration, systemd, Lambda, SQS fan-out, troubleshooting, migration."""
        links = {Path(t.split("#", 1)[0]).name for t in _relative_links(README)}
        for doc in ("configuration.md", "deploy-systemd.md", "lambda.md", "events.md",
                    "troubleshooting.md", "migration.md"):
            assert doc in links, f"README does not link docs/{doc}"


class TestFirstScreen:
    """The first 25 lines tell a newcomer how to see it work and how to test it."""

    def test_make_demo_and_make_test(self) -> None:
        """`make demo` and `make test` are visible without scrolling."""
        head = "\n".join(README.read_text(encoding="utf-8").splitlines()[:25])
        assert "make demo" in head and "make test" in head


class TestCommandsInDocs:
    """A command copied from the docs is one the CLI accepts (flags included)."""

    @pytest.mark.parametrize("md", [README, *DOCS], ids=lambda p: p.name)
    def test_every_shown_command_parses(self, md: Path) -> None:
        """Each `s3sync <cmd> …` line parses with the real argument parser."""
        parser = build_parser()
        bad = []
        for cmd in _commands(md):
            try:
                parser.parse_args(shlex.split(cmd)[1:])
            except SystemExit as exc:
                if exc.code not in (0, None):
                    bad.append(cmd)
        assert not bad, f"{md.name}: commands the CLI rejects: {bad}"

    def test_readme_shows_the_main_commands(self) -> None:
        """The README demonstrates sync, verify, serve and status, with their --help listing each flag."""
        shown = _commands(README)
        subs = {shlex.split(c)[1] for c in shown}
        assert {"sync", "verify", "serve", "status"} <= subs, shown
        for cmd in shown:
            words = shlex.split(cmd)
            help_text = _help(words[1])
            for flag in (w.split("=", 1)[0] for w in words if w.startswith("--")):
                assert flag in help_text, f"{flag} not in `s3sync {words[1]} --help`"


def _help(sub: str) -> str:
    parser = build_parser()
    for action in parser._subparsers._group_actions:  # type: ignore[union-attr]
        choices = getattr(action, "choices", None) or {}
        if sub in choices:
            return str(choices[sub].format_help())
    raise AssertionError(f"no subcommand {sub!r}")
