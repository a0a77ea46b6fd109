"""The rules of the source tree (docs/architecture.md), checked on the code itself.

1. ``qtasks.core`` imports nothing of qtasks outside ``core`` except ``qtasks.exceptions``;
2. ``qtasks.app``, ``qtasks.handles``, ``qtasks.worker`` and ``qtasks.core`` import nothing from
   ``qtasks.contrib`` or ``qtasks.testing``;
3. the import graph of ``src/qtasks`` has no cycle.

Every ``import`` statement counts, at module level or inside a function; only those under
``if TYPE_CHECKING:`` are left out (they never run). ``from package import submodule`` is an
edge to the submodule; the implicit import of a parent package is not counted.
"""

from __future__ import annotations

import ast
import sys
from pathlib import Path

import pytest

from helpers import run_script

SRC = Path(__file__).resolve().parents[2] / "src"


def _modules() -> dict[str, tuple[Path, bool]]:
    found = {}
    for path in (SRC / "qtasks").rglob("*.py"):
        parts = list(path.relative_to(SRC).with_suffix("").parts)
        package = parts[-1] == "__init__"
        found[".".join(parts[:-1] if package else parts)] = (path, package)
    return found


MODULES = _modules()


def _type_only(tree: ast.AST) -> set[int]:
    skipped: set[int] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.If) and "TYPE_CHECKING" in ast.unparse(node.test):
            skipped.update(id(inner) for stmt in node.body for inner in ast.walk(stmt))
    return skipped


def _nearest(name: str) -> str | None:
    while name not in MODULES and "." in name:
        name = name.rsplit(".", 1)[0]
    return name if name in MODULES else None


def imports_of(module: str) -> set[str]:
    """The qtasks modules ``module`` imports (any statement that runs)."""
    path, package = MODULES[module]
    tree = ast.parse(path.read_text(), str(path))
    skipped = _type_only(tree)
    targets: set[str] = set()
    for node in ast.walk(tree):
        if id(node) in skipped:
            continue
        if isinstance(node, ast.Import):
            targets.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = module.split(".") if package else module.split(".")[:-1]
                base = base[: len(base) - (node.level - 1)]
                source = ".".join([*base, *([node.module] if node.module else [])])
            else:
                source = node.module or ""
            submodules = [a.name for a in node.names if f"{source}.{a.name}" in MODULES]
            targets.update(f"{source}.{name}" for name in submodules)
            if len(submodules) < len(node.names):
                targets.add(source)
    found = {_nearest(t) for t in targets if t == "qtasks" or t.startswith("qtasks.")}
    return {m for m in found if m is not None and m != module}


GRAPH = {module: imports_of(module) for module in MODULES}


def _inside(module: str, *packages: str) -> bool:
    return any(module == p or module.startswith(p + ".") for p in packages)


def test_the_graph_sees_function_level_imports():
    # app.py imports qtasks.handles inside a method: the checker must see it, or it checks nothing
    assert "qtasks.handles" in GRAPH["qtasks.app"]
    assert "qtasks.contrib.django.transactions" in GRAPH["qtasks.contrib.django.integration"]


def test_core_imports_only_core_and_exceptions():
    wrong = {(module, target) for module, targets in GRAPH.items() if _inside(module, "qtasks.core")
             for target in targets
             if not _inside(target, "qtasks.core") and target != "qtasks.exceptions"}
    assert not wrong, f"core imports outside core: {sorted(wrong)}"


@pytest.mark.parametrize("part", ["qtasks.app", "qtasks.handles", "qtasks.worker", "qtasks.core"])
def test_core_parts_import_no_integration(part):
    wrong = {(module, target) for module, targets in GRAPH.items() if _inside(module, part)
             for target in targets if _inside(target, "qtasks.contrib", "qtasks.testing")}
    assert not wrong, f"{part} imports an integration: {sorted(wrong)}"


def _cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components with more than one module (Tarjan), or a self-loop."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[list[str]] = []

    def visit(node: str) -> None:
        index[node] = low[node] = len(index)
        stack.append(node)
        on_stack.add(node)
        for target in graph[node]:
            if target not in index:
                visit(target)
                low[node] = min(low[node], low[target])
            elif target in on_stack:
                low[node] = min(low[node], index[target])
        if low[node] == index[node]:
            component = []
            while True:
                top = stack.pop()
                on_stack.discard(top)
                component.append(top)
                if top == node:
                    break
            if len(component) > 1:
                found.append(sorted(component))

    sys.setrecursionlimit(max(sys.getrecursionlimit(), 10_000))
    for node in graph:
        if node not in index:
            visit(node)
    return found


def test_the_checker_finds_a_cycle():
    assert _cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [["a", "b", "c"]]


def test_no_import_cycle():
    cycles = _cycles(GRAPH)
    detail = "\n".join(
        " ".join(f"{m} -> {sorted(GRAPH[m] & set(c))};" for m in c) for c in cycles)
    assert not cycles, f"import cycles in src/qtasks:\n{detail}"


def test_django_integration_loads_only_with_django():
    """A process that never imports Django never loads qtasks' Django integration."""
    script = (
        "import sys\n"
        "from qtasks import QueueTasks\n"
        "from qtasks.integrations import installed\n"
        "app = QueueTasks('arch', broker_url='memory://arch')\n"
        "app.add_task('nothing')\n"
        "assert 'django' not in sys.modules, 'qtasks imported Django'\n"
        "assert not installed(), installed()\n"
        "import django\n"
        "app.add_task('nothing')\n"
        "assert installed() == {'qtasks.contrib.django.integration'}, installed()\n"
        "print('ok')\n"
    )
    run_script(script)
