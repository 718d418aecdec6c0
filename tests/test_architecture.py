"""The package's shape: imports only go down the layers, no private imports, no cycles, and
ARCHITECTURE.md names every module there is.

The checker reads the sources with ast (nothing is imported), so it also sees imports inside
functions and under TYPE_CHECKING.
"""

from __future__ import annotations

import ast
import re
from collections.abc import Iterator, Mapping
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
PACKAGE = "cph_exporter"

# Bottom up: a module may import from its own layer and the ones below it.
LAYERS = ("credentials", "cph", "refresh", "metrics", "http", "settings")
# The top: wiring and the command line, above every layer.
TOP = ("app", "cli", "startup", "__main__", "logsetup", "")
# Beside the layers: what each may import of the package besides itself.
ASIDE: Mapping[str, tuple[str, ...]] = {
    "simulator": ("cph.signing",),  # verifies signatures with the signer's own code
    "mixin": (),  # generates rules and dashboards from names alone
}


def rank(module: str) -> int:
    """The layer of `cph_exporter.x.y` (0 at the bottom); the top is above every layer."""
    part = module.split(".")[1] if "." in module else ""
    if part in LAYERS:
        return LAYERS.index(part)
    if part in TOP:
        return len(LAYERS)
    raise ValueError(f"{module} is in no layer: add it to ARCHITECTURE.md and to LAYERS")


def sources(root: Path = ROOT) -> dict[str, str]:
    """Module name -> source text, for every module of the package."""
    found = {}
    for path in sorted((root / PACKAGE).rglob("*.py")):
        parts = list(path.relative_to(root).with_suffix("").parts)
        if parts[-1] == "__init__":
            parts.pop()
        found[".".join(parts)] = path.read_text(encoding="utf-8")
    return found


def _imports(module: str, text: str, modules: set[str]) -> Iterator[tuple[str, str | None]]:
    """(imported module, imported name or None) for every import of the package's own code."""
    is_package = f"{module}.__init__" in modules or any(m.startswith(module + ".") for m in modules)
    for node in ast.walk(ast.parse(text)):
        if isinstance(node, ast.Import):
            for alias in node.names:
                if alias.name.split(".")[0] == PACKAGE:
                    yield alias.name, None
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = module.split(".")
                anchor = anchor[: len(anchor) - node.level + (1 if is_package else 0)]
                base = ".".join([*anchor, *([base] if base else [])])
            if base.split(".")[0] != PACKAGE:
                continue
            for alias in node.names:
                submodule = f"{base}.{alias.name}"
                if submodule in modules:  # `from cph_exporter.cph import client`
                    yield submodule, None
                else:
                    yield base, alias.name


def problems(modules: Mapping[str, str]) -> list[str]:
    """Every upward import, private import and import cycle among `modules`."""
    found: list[str] = []
    names = set(modules)
    graph: dict[str, set[str]] = {m: set() for m in modules}
    for module, text in modules.items():
        for target, name in _imports(module, text, names):
            if target not in names:
                found.append(f"{module} imports {target}, which does not exist")
                continue
            graph[module].add(target)
            if name is not None and _private(name) and target != module:
                found.append(f"{module} imports the private {target}.{name}")
            found.extend(_layer_problem(module, target))
    found.extend(f"import cycle: {' -> '.join(cycle)}" for cycle in _cycles(graph))
    return found


def _private(name: str) -> bool:
    return name.startswith("_") and not (name.startswith("__") and name.endswith("__"))


def _layer_problem(module: str, target: str) -> list[str]:
    def aside(name: str) -> str | None:
        part = name.split(".")[1] if "." in name else ""
        return part if part in ASIDE else None

    own, other = aside(module), aside(target)
    if own is not None:
        allowed = (f"{PACKAGE}.{own}", *(f"{PACKAGE}.{m}" for m in ASIDE[own]))
        if not any(target == a or target.startswith(a + ".") for a in allowed):
            return [f"{module} ({own}, aside) imports {target}"]
        return []
    if other is not None:
        if rank(module) < len(LAYERS):
            return [f"{module} imports {target}: only the top may use {other}"]
        return []
    if rank(target) > rank(module):
        return [f"{module} imports {target}, which is in a layer above it"]
    return []


def _cycles(graph: Mapping[str, set[str]]) -> list[list[str]]:
    cycles: list[list[str]] = []
    state: dict[str, int] = {}  # 1: on the current path, 2: done
    path: list[str] = []

    def visit(node: str) -> None:
        state[node] = 1
        path.append(node)
        for nxt in sorted(graph[node]):
            if nxt == node or nxt.startswith(node + "."):
                continue  # a package importing its own submodules is no cycle
            if state.get(nxt) == 1:
                cycles.append([*path[path.index(nxt) :], nxt])
            elif nxt not in state:
                visit(nxt)
        path.pop()
        state[node] = 2

    for node in sorted(graph):
        if node not in state:
            visit(node)
    return cycles


def test_the_package_keeps_its_layers() -> None:
    assert problems(sources()) == []


def test_every_module_is_in_a_layer() -> None:
    for module in sources():
        part = module.split(".")[1] if "." in module else ""
        assert part in ASIDE or rank(module) >= 0, module


def test_no_module_outside_the_simulator_is_long() -> None:
    for module, text in sources().items():
        if not module.startswith(f"{PACKAGE}.simulator"):
            assert text.count("\n") <= 450, f"{module}: split it by concern"


@pytest.mark.parametrize(
    ("modules", "expected"),
    [
        (
            {"cph_exporter.cph.client": "from cph_exporter.refresh.snapshot import Snapshot\n"},
            "in a layer above it",
        ),
        (
            {
                "cph_exporter.cph.client": "",
                "cph_exporter.credentials.values": "def f():\n    import cph_exporter.cph.client\n",
            },
            "in a layer above it",
        ),
        (
            {"cph_exporter.cph.models": "from cph_exporter.metrics.common import IDENTITY\n"},
            "in a layer above it",
        ),
        (
            {"cph_exporter.refresh.shard": "from cph_exporter.cph.client import _helper\n"},
            "private",
        ),
        (
            {
                "cph_exporter.cph.a": "from cph_exporter.cph.b import x\n",
                "cph_exporter.cph.b": "from cph_exporter.cph import a\n",
            },
            "import cycle",
        ),
        (
            {"cph_exporter.http.server": "from cph_exporter.simulator import CphSimulator\n"},
            "only the top may use simulator",
        ),
        (
            {"cph_exporter.simulator.server": "from cph_exporter.settings.config import Config\n"},
            "aside",
        ),
        (
            {"cph_exporter.metrics.servers": "from .common import _cut\n"},
            "does not exist",
        ),
    ],
)
def test_the_checker_catches_each_kind_of_problem(modules: dict[str, str], expected: str) -> None:
    # Every module a synthetic case imports exists, unless the case is about a missing one.
    full = {**{m: "" for m in _all_targets(modules)}, **modules}
    if expected == "does not exist":
        full = dict(modules)
    found = problems(full)
    assert any(expected in p for p in found), found


def _all_targets(modules: Mapping[str, str]) -> set[str]:
    names = set(modules)
    targets = set()
    for module, text in modules.items():
        for target, _ in _imports(module, text, names):
            targets.add(target)
    return targets


def test_the_checker_passes_downward_and_sideways_imports() -> None:
    modules = {
        "cph_exporter.credentials.values": "",
        "cph_exporter.cph.client": "from cph_exporter.credentials.values import Credentials\n",
        "cph_exporter.cph.iam": "from cph_exporter.cph.client import CphClient\n",
        "cph_exporter.app": "from cph_exporter.simulator import CphSimulator\n",
        "cph_exporter.simulator": "from cph_exporter.cph.signing import verify_request\n",
        "cph_exporter.cph.signing": "",
    }
    assert problems(modules) == []


def test_architecture_md_names_every_module() -> None:
    text = (ROOT / "ARCHITECTURE.md").read_text(encoding="utf-8")
    named = set(re.findall(r"`(cph_exporter/[\w/]+\.py)`", text))
    real = {
        str(path.relative_to(ROOT))
        for path in (ROOT / PACKAGE).rglob("*.py")
        if path.name != "__init__.py"
    }
    assert named - real == set(), "ARCHITECTURE.md names modules that are gone"
    assert real - named == set(), "ARCHITECTURE.md does not name these modules"
