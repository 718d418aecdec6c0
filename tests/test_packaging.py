"""What a fresh virtualenv gets from `pip install '.[test,lint]'` is what the tests import.

.ci/run proves it by running the suite in a new virtualenv; this test names the missing
distribution directly, and also fails where the machine's global Python would have hidden it.
"""

from __future__ import annotations

import ast
import importlib.metadata
import re
import sys
from pathlib import Path
from typing import Any

import pytest

REPO = Path(__file__).resolve().parents[1]
TESTS = sorted((REPO / "tests").rglob("*.py"))
# Modules of this repository: the package, the tests' own modules (test_rules, conftest).
LOCAL = {"cph_exporter", "tests", "conftest"} | {path.stem for path in TESTS}

tomllib = pytest.importorskip("tomllib", reason="tomllib is Python 3.11+")


def pyproject() -> dict[str, Any]:
    loaded: dict[str, Any] = tomllib.loads((REPO / "pyproject.toml").read_text(encoding="utf-8"))
    return loaded


def normalise(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def requirement_name(requirement: str) -> str:
    match = re.match(r"\s*([A-Za-z0-9][A-Za-z0-9._-]*)", requirement)
    assert match, requirement
    return normalise(match.group(1))


def imported_modules(path: Path) -> set[str]:
    """Top-level modules a test file imports, anywhere in it, importorskip included."""
    modules = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"), str(path))):
        if isinstance(node, ast.Import):
            modules |= {alias.name.split(".")[0] for alias in node.names}
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            modules.add(node.module.split(".")[0])
        elif (
            isinstance(node, ast.Call)
            and isinstance(node.func, ast.Attribute)
            and node.func.attr == "importorskip"
            and node.args
            and isinstance(node.args[0], ast.Constant)
        ):
            modules.add(str(node.args[0].value).split(".")[0])
    return modules


def third_party_imports() -> dict[str, set[str]]:
    """module -> the test files importing it, for modules outside the stdlib and the repo."""
    found: dict[str, set[str]] = {}
    for path in TESTS:
        for module in imported_modules(path) - LOCAL - set(sys.stdlib_module_names):
            if module != "__future__":
                found.setdefault(module, set()).add(path.name)
    return found


def test_the_scan_sees_the_known_test_dependencies() -> None:
    modules = third_party_imports()
    # Guards the scan itself: these are imported today, at top level and via importorskip.
    assert {"pytest", "hypothesis", "cryptography", "kubernetes_validate"} <= set(modules)
    assert not {"json", "cph_exporter", "test_rules", "conftest"} & set(modules)


def test_every_third_party_test_import_is_a_listed_dependency() -> None:
    project = pyproject()["project"]
    listed = {requirement_name(r) for r in project["dependencies"]}
    listed |= {requirement_name(r) for r in project["optional-dependencies"]["test"]}
    distributions = importlib.metadata.packages_distributions()
    unlisted = {}
    for module, users in sorted(third_party_imports().items()):
        provided_by = {normalise(d) for d in distributions.get(module, [])}
        assert provided_by, f"{module} (imported by {sorted(users)}) is not installed"
        if not provided_by & listed:
            unlisted[module] = (sorted(provided_by), sorted(users))
    assert not unlisted, f"add to the test extra in pyproject.toml: {unlisted}"


def test_the_license_is_declared_once_and_shipped_in_full() -> None:
    project = pyproject()["project"]
    assert project["license"] == "Apache-2.0"  # an SPDX expression, not the deprecated table
    assert project["license-files"] == ["LICENSE"]
    text = " ".join((REPO / "LICENSE").read_text(encoding="utf-8").split())
    assert text.startswith("Apache License Version 2.0, January 2004")
    assert "TERMS AND CONDITIONS FOR USE, REPRODUCTION, AND DISTRIBUTION" in text
    assert "END OF TERMS AND CONDITIONS" in text


def test_the_version_is_written_in_pyproject_only() -> None:
    version = pyproject()["project"]["version"]
    assert re.fullmatch(r"\d+\.\d+\.\d+", version)
    # The package reads it from the installed metadata (cph_exporter.__version__).
    for path in sorted((REPO / "cph_exporter").rglob("*.py")):
        assert version not in path.read_text(encoding="utf-8"), path
    changelog = (REPO / "CHANGELOG.md").read_text(encoding="utf-8")
    assert f"## [{version}]" in changelog, "CHANGELOG.md has no section for this version"
