"""The import graph has layers and no circles: models sit below the services, the worker
above what it schedules. Read from the source (every import, also those inside functions),
so a lazy import cannot hide a circle."""

from __future__ import annotations

import ast
from pathlib import Path

import reseller

PACKAGE = Path(reseller.__file__).parent
# The modules the models may use: the bottom layer.
BELOW_SERVICES = ("reseller.models", "reseller.extensions", "reseller.clock", "reseller.keyring")
# What they must never reach: the business rules, the views, the provider and gateway seams.
ABOVE_THE_MODELS = tuple(
    f"reseller.{name}"
    for name in (
        "services",
        "api",
        "admin",
        "auth",
        "dashboard",
        "docs",
        "main",
        "payments",
        "gateways",
        "upstream",
        "commands",
        "admin_commands",
        "worker_commands",
    )
)


def _module_name(path: Path) -> str:
    parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def import_graph() -> dict[str, set[str]]:
    """{module: the reseller modules it imports}, for every module of the package."""
    files = {_module_name(p): p for p in PACKAGE.rglob("*.py")}
    graph: dict[str, set[str]] = {}
    for name, path in files.items():
        package = name if path.name == "__init__.py" else name.rpartition(".")[0]
        edges: set[str] = set()
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Import):
                targets = [alias.name for alias in node.names]
            elif isinstance(node, ast.ImportFrom):
                base = node.module or ""
                if node.level:
                    anchor = package.split(".")
                    anchor = anchor[: len(anchor) - (node.level - 1)]
                    base = ".".join(anchor + ([base] if base else []))
                # `from . import catalog` names a module; `from .models import User` does not.
                targets = [
                    f"{base}.{a.name}" if f"{base}.{a.name}" in files else base for a in node.names
                ]
            else:
                continue
            edges.update(t for t in targets if t in files and t != name)
        graph[name] = edges
    return graph


def reachable(graph: dict[str, set[str]], start: str) -> set[str]:
    seen, todo = set(), [start]
    while todo:
        for target in graph[todo.pop()]:
            if target not in seen:
                seen.add(target)
                todo.append(target)
    return seen


def circles(graph: dict[str, set[str]], members: set[str]) -> list[set[str]]:
    """The groups of `members` that import each other, directly or round about."""
    found = []
    for name in sorted(members):
        loop = {other for other in reachable(graph, name) if name in reachable(graph, other)}
        loop = (loop | {name}) & members if loop else set()
        if len(loop) > 1 and loop not in found:
            found.append(loop)
    return found


def test_the_models_import_nothing_above_them():
    graph = import_graph()
    for bottom in BELOW_SERVICES:
        above = {m for m in reachable(graph, bottom) if m.startswith(ABOVE_THE_MODELS)}
        assert not above, f"{bottom} reaches {sorted(above)}"


def test_no_circles_but_blueprint_packages_and_their_views():
    """The only circle allowed is Flask's blueprint pattern: `bp` in a package's __init__,
    whose view modules (routes and the like) it imports at the bottom."""
    graph = import_graph()
    for loop in circles(graph, set(graph)):
        package = min(loop, key=len)
        views = loop - {package}
        assert all(m.rpartition(".")[0] == package for m in views), sorted(loop)
        assert all(package in graph[m] for m in views), sorted(loop)  # they import its `bp`


def test_the_worker_sits_above_what_it_schedules():
    graph = import_graph()
    importers = {m for m, edges in graph.items() if "reseller.services.worker" in edges}
    assert not {m for m in importers if m.startswith("reseller.services.")} - {
        "reseller.services.admin"  # the console's "refresh prices now" runs a worker step
    }
    assert "reseller.services.worker" not in reachable(graph, "reseller.services.stats")


def test_the_graph_sees_lazy_imports():
    """The check would have caught the old circles (models ↔ services.accounts through an
    import inside User.get_id): a function-level import is an edge."""
    graph = import_graph()
    assert "reseller.services.stats" in graph["reseller.services.health"]  # imported lazily
