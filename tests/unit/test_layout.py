"""The house keeps its plan: no import cycles, small modules, arrows pointing down.

Reads ``src/s3sync`` with :mod:`ast` (nothing is imported), so a new cycle or an
upward import fails here before anyone has to draw the picture.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2] / "src" / "s3sync"

# Lower layers never import higher ones (docs/design.md, "The tree"). Every module has a
# layer, the top level included, so an arrow from a loose module back up is seen too; the
# longest matching prefix wins.
LAYERS = {
    # the ground floor: shared values and helpers every layer may use
    "s3sync": 0,
    "s3sync.errors": 0,
    "s3sync.model": 0,
    "s3sync.retry": 0,
    "s3sync.stats": 0,
    "s3sync.watermarks": 0,
    "s3sync.logs": 0,
    # the configuration: read by everything above, knows nothing of it
    "s3sync.config": 1,
    "s3sync.s3": 2,
    "s3sync.local": 2,
    "s3sync.state": 2,
    "s3sync.sync": 3,
    "s3sync.sources": 4,
    "s3sync.api": 5,
    "s3sync.daemon": 6,
    "s3sync.cli": 7,
    "s3sync.__main__": 7,
}


def _modules() -> dict[str, Path]:
    out = {}
    for p in ROOT.rglob("*.py"):
        rel = p.relative_to(ROOT.parent).with_suffix("")
        parts = rel.parts[:-1] if rel.name == "__init__" else rel.parts
        out[".".join(parts)] = p
    return out


def _imports(mods: dict[str, Path]) -> dict[str, set[str]]:
    graph: dict[str, set[str]] = {}
    for name, path in mods.items():
        for node in ast.walk(ast.parse(path.read_text())):
            targets: list[str] = []
            if isinstance(node, ast.Import):
                targets = [a.name for a in node.names]
            elif isinstance(node, ast.ImportFrom) and node.module and not node.level:
                targets = [node.module] + [f"{node.module}.{a.name}" for a in node.names]
            for t in targets:
                while t and t not in mods:
                    t = t.rpartition(".")[0]
                if t and t != name and t.startswith("s3sync") and t != "s3sync":
                    graph.setdefault(name, set()).add(t)
    return graph


def _layer(name: str) -> int | None:
    """The layer of the longest prefix of ``name`` in :data:`LAYERS` (``s3sync`` alone: itself only)."""
    best: tuple[int, int] | None = None
    for prefix, layer in LAYERS.items():
        matches = name == prefix or (prefix != "s3sync" and name.startswith(prefix + "."))
        if matches and (best is None or len(prefix) > best[0]):
            best = (len(prefix), layer)
    return None if best is None else best[1]


class TestLayout:
    """The package tree of docs/design.md, checked from the code."""

    def test_no_import_cycles(self) -> None:
        """No module reaches itself through imports (lazy imports inside functions count too)."""
        graph = _imports(_modules())
        cycles: list[list[str]] = []
        state: dict[str, int] = {}
        stack: list[str] = []

        def visit(v: str) -> None:
            state[v] = 1
            stack.append(v)
            for w in sorted(graph.get(v, ())):
                if state.get(w) == 1:
                    cycles.append([*stack[stack.index(w) :], w])
                elif w not in state:
                    visit(w)
            stack.pop()
            state[v] = 2

        for v in sorted(graph):
            if v not in state:
                visit(v)
        assert not cycles, "import cycles: " + "; ".join(" -> ".join(c) for c in cycles)

    def test_every_module_has_a_layer(self) -> None:
        """A new module (top level included) is placed in the plan, or the arrows test cannot see it."""
        missing = sorted(name for name in _modules() if _layer(name) is None)
        assert not missing, f"give these a layer in LAYERS: {missing}"

    def test_arrows_point_down(self) -> None:
        """cli → daemon → api → sources → sync → s3 / local / state → config → ground floor: never up."""
        graph = _imports(_modules())
        upward = [
            f"{a} -> {b}"
            for a, targets in graph.items()
            for b in targets
            if (la := _layer(a)) is not None and (lb := _layer(b)) is not None and lb > la
        ]
        assert not upward, upward

    @pytest.mark.parametrize("limit", [420])
    def test_modules_stay_small(self, limit: int) -> None:
        """No module over ~400 lines and no class over ~250: big pieces split along their seams."""
        big = []
        for name, path in _modules().items():
            text = path.read_text()
            if len(text.splitlines()) > limit:
                big.append(f"{name}: {len(text.splitlines())} lines")
            for node in ast.walk(ast.parse(text)):
                if isinstance(node, ast.ClassDef) and node.end_lineno is not None:
                    n = node.end_lineno - node.lineno + 1
                    if n > 260:
                        big.append(f"{name}.{node.name}: {n} lines")
        assert not big, big

    def test_api_imports_neither_the_runners_nor_daemon(self) -> None:
        """The handlers get typed handles (api/handles.py); the supervisor that owns them is above.

        Only the body parser of ``sources/`` (``events``) is shared: the notification
        endpoint is itself a source. The SQS consumer and the scheduler are the supervisor's.
        """
        graph = _imports(_modules())
        leaks = [
            f"{a} -> {b}"
            for a, targets in graph.items()
            if a.startswith("s3sync.api")
            for b in targets
            if b.startswith(("s3sync.daemon", "s3sync.sources.sqs", "s3sync.sources.scheduler"))
        ]
        assert not leaks, leaks

    def test_sync_core_does_not_know_the_get_path(self) -> None:
        """Nothing under sync/ imports the lean or the aioboto3 path: only the facade."""
        graph = _imports(_modules())
        leaks = [
            f"{a} -> {b}"
            for a, targets in graph.items()
            if a.startswith("s3sync.sync")
            for b in targets
            if b in ("s3sync.s3.lean", "s3sync.s3.boto", "s3sync.s3.http")
        ]
        assert not leaks, leaks
