"""The package layout as a contract, checked from the code's own imports.

Folders by part; imports point one way (cli -> offline parts and ros -> core, backends, io
-> models -> contract, errors); only `ros/` talks to ROS; `docs/architecture.md` maps every
module.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest
from ros_required import ROS_PACKAGES

ROOT = Path(__file__).resolve().parents[1]
PACKAGE = ROOT / "ood_perception"
# Top-level part -> rank; a module may import its own rank or lower ranks only.
RANKS = {
    "errors": 0, "contract": 0, "__init__": 0,
    "models": 1,
    "core": 2, "backends": 2, "io": 2,
    "synthetic": 3, "evaluation": 3, "training": 3, "export": 3, "ros": 3, "profiling": 3,
    "fleet": 3,
    "cli": 4,
}


def _modules() -> dict[str, Path]:
    return {".".join(path.relative_to(ROOT).with_suffix("").parts).removesuffix(".__init__"): path
            for path in PACKAGE.rglob("*.py")}


MODULES = _modules()


def _imports(name: str, path: Path) -> set[str]:
    """Every module `name` imports, at any depth of the file (lazy imports included)."""
    found = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            found |= {alias.name for alias in node.names}
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                package = name.split(".")[: -node.level] if not path.name == "__init__.py" \
                    else name.split(".")[: len(name.split(".")) - node.level + 1]
                base = ".".join([*package, base] if base else package)
            found.add(base)
            found |= {f"{base}.{alias.name}" for alias in node.names
                      if f"{base}.{alias.name}" in MODULES}
    return found


IMPORTS = {name: _imports(name, path) for name, path in MODULES.items()}


def _part(name: str) -> str:
    parts = name.split(".")
    return parts[1] if len(parts) > 1 else "__init__"


def _internal(name: str) -> set[str]:
    return {m for m in IMPORTS[name] if m in MODULES and m != name}


def test_every_part_has_a_rank():
    assert {_part(name) for name in MODULES} <= set(RANKS)


def test_at_most_six_modules_directly_in_the_package():
    assert len(list(PACKAGE.glob("*.py"))) <= 6


@pytest.mark.parametrize("name", sorted(MODULES))
def test_imports_point_down(name):
    rank = RANKS[_part(name)]
    upward = sorted(m for m in _internal(name) if RANKS[_part(m)] > rank)
    assert not upward, f"{name} imports higher parts: {upward}"


def test_models_never_import_export_backends_cli_or_ros():
    offenders = {name: sorted(m for m in _internal(name)
                              if _part(m) in ("export", "backends", "cli", "ros"))
                 for name in MODULES if _part(name) == "models"}
    assert not {k: v for k, v in offenders.items() if v}


def test_only_ros_modules_import_ros():
    offenders = {name: sorted(m for m in IMPORTS[name] if m.split(".")[0] in ROS_PACKAGES)
                 for name in MODULES if _part(name) != "ros"}
    assert not {k: v for k, v in offenders.items() if v}


def test_no_import_cycles():
    graph = {name: _internal(name) for name in MODULES}
    state: dict[str, int] = {}
    stack: list[str] = []

    def visit(name: str) -> None:
        state[name] = 1
        stack.append(name)
        for other in sorted(graph[name]):
            if state.get(other) == 1:
                cycle = stack[stack.index(other):] + [other]
                raise AssertionError(f"import cycle: {' -> '.join(cycle)}")
            if other not in state:
                visit(other)
        stack.pop()
        state[name] = 2

    for name in sorted(graph):
        if name not in state:
            visit(name)


def test_architecture_doc_names_every_module_file():
    text = (ROOT / "docs" / "architecture.md").read_text()
    missing = sorted(str(path.relative_to(PACKAGE)) for path in PACKAGE.rglob("*.py")
                     if path.name != "__init__.py"
                     and f"`{path.relative_to(PACKAGE)}`" not in text)
    assert not missing, f"docs/architecture.md does not name: {missing}"
