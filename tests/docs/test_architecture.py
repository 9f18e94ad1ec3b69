"""The shape of the package: module sizes, the import graph, and docs/architecture.md.

Read from the source with ``ast``; nothing is imported, so a cycle cannot hide behind import
order, and a function-level import counts as much as one at the top of a module.
"""

from __future__ import annotations

import ast
import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
#: Source folder → the import name it installs as (pyproject's package-dir mapping).
PACKAGES = {
    "hermes_core": "hermes_core",
    "hookspecs": "hermes_core.hookspecs",
    "plugins": "hermes_core.plugins",
}
MAX_LINES = 400


def modules() -> dict[str, Path]:
    """Every module of the package by its dotted name (test kit and CLI included)."""
    found: dict[str, Path] = {}
    for folder, package in PACKAGES.items():
        for path in sorted((ROOT / folder).rglob("*.py")):
            parts = list(path.relative_to(ROOT / folder).with_suffix("").parts)
            if parts[-1] == "__init__":
                parts.pop()
            found[".".join([package, *parts])] = path
    return found


def _is_type_checking(node: ast.stmt) -> bool:
    return isinstance(node, ast.If) and "TYPE_CHECKING" in ast.unparse(node.test)


def imports(name: str, path: Path, known: set[str]) -> set[str]:
    """The package modules ``name`` imports at run time, wherever the import statement is."""
    tree = ast.parse(path.read_text(), str(path))
    skipped = {id(n) for stmt in ast.walk(tree) if _is_type_checking(stmt) for n in ast.walk(stmt)}
    found: set[str] = set()
    for node in ast.walk(tree):
        if id(node) in skipped:
            continue
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                package = name if path.name == "__init__.py" else name.rpartition(".")[0]
                for _ in range(node.level - 1):
                    package = package.rpartition(".")[0]
                base = f"{package}.{base}" if base else package
            found.add(base)
            found.update(f"{base}.{alias.name}" for alias in node.names)
    return {module for module in found if module in known and module != name}


def test_no_module_is_over_400_lines() -> None:
    long = {
        name: n
        for name, path in modules().items()
        if (n := len(path.read_text().splitlines())) > MAX_LINES
    }
    assert not long, f"modules over {MAX_LINES} lines: {long}"


def test_the_import_graph_has_no_cycle() -> None:
    found = modules()
    graph = {name: imports(name, path, set(found)) for name, path in found.items()}
    cycles: list[list[str]] = []
    state: dict[str, str] = {}

    def visit(name: str, trail: list[str]) -> None:
        state[name] = "open"
        for target in sorted(graph[name]):
            if state.get(target) == "open":
                cycles.append([*trail[trail.index(target) :], target])
            elif target not in state:
                visit(target, [*trail, target])
        state[name] = "done"

    for name in sorted(graph):
        if name not in state:
            visit(name, [name])
    assert not cycles, "import cycles:\n" + "\n".join(" -> ".join(c) for c in cycles)


def test_every_module_is_in_the_architecture_page() -> None:
    text = (ROOT / "docs" / "architecture.md").read_text()
    listed = set(re.findall(r"`([\w/]+\.py)`", text))
    missing = []
    for path in modules().values():
        folder = path.relative_to(ROOT).parts[0]
        relative = path.relative_to(ROOT / folder).as_posix()
        shown = relative if folder == "hermes_core" else f"{folder}/{relative}"
        if shown not in listed:
            missing.append(shown)
    assert not missing, f"docs/architecture.md does not describe {sorted(missing)}"
