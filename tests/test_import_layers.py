"""The package's import structure, read from the source (AST): the general packages never import
the tiny world, ``arcflow.flow`` imports nothing else of the project, and there is no import cycle
between modules or between packages. Imports inside functions count: they are dependencies too."""

from __future__ import annotations

import ast
from pathlib import Path

import arcflow

PACKAGE = Path(arcflow.__file__).parent
GENERAL = ("flow", "models", "engine", "pipelines")


def _module_name(path: Path) -> str:
    parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _imports(locations: bool = False) -> dict[str, set[str]]:
    """Module -> the ``arcflow`` modules it imports (``from arcflow.x import y`` counts as
    ``arcflow.x.y`` when that is a module, else ``arcflow.x``). With ``locations``, a registry's
    lazy ``locations=[...]`` strings count too: the registry imports them on its first look-up
    (never a cycle: a registered module imports the registry, by design)."""
    modules = {_module_name(path): path for path in PACKAGE.rglob("*.py")}
    graph: dict[str, set[str]] = {}
    for name, path in modules.items():
        targets: set[str] = set()
        for node in ast.walk(ast.parse(path.read_text(), str(path))):
            if isinstance(node, ast.Import):
                targets |= {alias.name for alias in node.names}
            elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
                for alias in node.names:
                    child = f"{node.module}.{alias.name}"
                    targets.add(child if child in modules else node.module)
            elif locations and isinstance(node, ast.keyword) and node.arg == "locations":
                targets |= {
                    item.value
                    for item in getattr(node.value, "elts", ())
                    if isinstance(item, ast.Constant) and isinstance(item.value, str)
                }
        graph[name] = {t for t in targets if t in modules and t != name}
    return graph


def _package(module: str) -> str:
    parts = module.split(".")
    return ".".join(parts[:2])


def _cycle(graph: dict[str, set[str]]) -> list[str] | None:
    """One cycle of ``graph`` as a path ``[a, b, ..., a]``, or None."""
    state: dict[str, int] = {}  # 1: on the current path, 2: done
    path: list[str] = []

    def visit(node: str) -> list[str] | None:
        state[node] = 1
        path.append(node)
        for nxt in sorted(graph.get(node, ())):
            if state.get(nxt) == 1:
                return path[path.index(nxt) :] + [nxt]
            if nxt not in state and (found := visit(nxt)):
                return found
        path.pop()
        state[node] = 2
        return None

    for start in sorted(graph):
        if start not in state and (found := visit(start)):
            return found
    return None


def _reached(graph: dict[str, set[str]], start: str) -> set[str]:
    """Every module ``start`` imports, directly or through others."""
    seen, stack = set(), [start]
    while stack:
        for target in graph.get(stack.pop(), ()):
            if target not in seen:
                seen.add(target)
                stack.append(target)
    return seen


def test_general_packages_do_not_import_the_tiny_world():
    """Not directly, and not through any module they import (the registries included)."""
    graph = _imports(locations=True)
    offenders = {
        module: sorted(t for t in _reached(graph, module) if t.startswith("arcflow.tinyworld"))
        for module in graph
        if module.split(".")[1:2] and module.split(".")[1] in GENERAL
    }
    assert {m: t for m, t in offenders.items() if t} == {}


def test_registry_locations_are_read_as_imports():
    """The checker sees a registry's lazy locations (they once named tiny-world modules)."""
    assert "arcflow.models.distiller" in _imports(locations=True)["arcflow.registry"]


# The released settings: constants only, importable from every layer.
RELEASED = "arcflow.released"


def test_flow_imports_nothing_else_of_the_project():
    outside = {
        module: sorted(t for t in targets if not t.startswith("arcflow.flow") and t != RELEASED)
        for module, targets in _imports().items()
        if module.startswith("arcflow.flow")
    }
    assert {m: t for m, t in outside.items() if t} == {}


def test_the_released_settings_import_nothing_of_the_project():
    assert _imports()[RELEASED] == set()


def test_no_import_cycle_between_modules():
    graph = _imports()
    # A package's __init__ importing its own modules is how a package exposes them, not a cycle.
    for module, targets in graph.items():
        graph[module] = {t for t in targets if not (module.startswith(f"{t}.") and t != "arcflow")}
    assert _cycle(graph) is None


def test_no_import_cycle_between_packages():
    packages: dict[str, set[str]] = {}
    for module, targets in _imports().items():
        source = _package(module)
        packages.setdefault(source, set()).update(
            _package(t) for t in targets if _package(t) != source
        )
    assert _cycle(packages) is None


def test_a_cycle_is_found():
    """The checker itself: a two-module loop is reported as a path back to its start."""
    assert _cycle({"a": {"b"}, "b": {"a"}}) == ["a", "b", "a"]
    assert _cycle({"a": {"b"}, "b": set()}) is None
