"""The package's shape, read from its source (ast; nothing is imported): its modules depend on each
other one way only, and one module reads the environment.

An import inside a function counts like one at the top: it only delays loading (torch, psycopg,
matplotlib are slow to import), the two modules still need each other, and a cycle hidden that way
breaks the day someone moves the import up.
"""

import ast
from pathlib import Path

import pytest

pytestmark = pytest.mark.unit  # pure: no database, no model; `npm run test:unit` runs it

PACKAGE = Path(__file__).resolve().parents[1] / "twin_trainer"


def modules() -> dict[str, ast.Module]:
    return {path.stem: ast.parse(path.read_text(), str(path)) for path in sorted(PACKAGE.glob("*.py"))}


def imported(tree: ast.Module, names: set[str]) -> set[str]:
    """The package's modules a module imports, wherever the import statement is."""
    found: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom):
            if node.level == 1:  # from .x import y, from . import x
                parts = [node.module] if node.module else [alias.name for alias in node.names]
            elif node.level == 0 and (node.module or "").startswith("twin_trainer"):
                rest = node.module.split(".")[1:]
                parts = rest[:1] or [alias.name for alias in node.names]
            else:
                continue
        elif isinstance(node, ast.Import):
            parts = [alias.name.split(".")[1] for alias in node.names if alias.name.startswith("twin_trainer.")]
        else:
            continue
        found |= {part for part in parts if part in names}
    return found


def import_graph() -> dict[str, set[str]]:
    trees = modules()
    return {name: imported(tree, set(trees)) for name, tree in trees.items()}


def cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Import cycles, each as the path that closes it: a depth-first search meets at least one
    whenever the graph has any (every cycle holds an edge back to a module still on the path)."""
    found: list[list[str]] = []
    state: dict[str, str] = {}  # "open" while on the current path, "done" after

    def visit(node: str, path: list[str]) -> None:
        state[node] = "open"
        for target in sorted(graph[node]):
            if state.get(target) == "open":
                found.append(path[path.index(target) :] + [target])
            elif target not in state:
                visit(target, [*path, target])
        state[node] = "done"

    for node in sorted(graph):
        if node not in state:
            visit(node, [node])
    return found


def test_the_cycle_finder_finds_a_cycle_and_passes_a_tree():
    assert cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [["a", "b", "c", "a"]]
    assert cycles({"a": {"b", "c"}, "b": {"c"}, "c": set()}) == []
    assert cycles({"a": {"a"}}) == [["a", "a"]]


def test_no_two_modules_of_the_package_import_each_other_even_through_others():
    graph = import_graph()
    assert {"data", "database", "train", "environment"} <= set(graph), "the package is where the test looks"
    assert "errors" in graph["database"] and "data" not in graph["database"], graph["database"]
    assert cycles(graph) == [], "import cycles: " + "; ".join(" → ".join(cycle) for cycle in cycles(graph))


def reads_the_environment(tree: ast.Module) -> list[int]:
    """Lines that touch os.environ, os.getenv, os.putenv or os.unsetenv (or import them from os)."""
    names = {"environ", "getenv", "putenv", "unsetenv", "environb", "getenvb"}
    lines = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Attribute) and node.attr in names and isinstance(node.value, ast.Name) and node.value.id == "os":
            lines.append(node.lineno)
        elif isinstance(node, ast.ImportFrom) and node.module == "os" and any(a.name in names for a in node.names):
            lines.append(node.lineno)
    return lines


def test_only_environment_py_reads_environment_variables():
    readers = {name: lines for name, tree in modules().items() if (lines := reads_the_environment(tree))}
    assert set(readers) == {"environment"}, f"modules reading the environment outside environment.py: {readers}"
