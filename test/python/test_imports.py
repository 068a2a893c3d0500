"""nnforge's modules import each other without a cycle.

The graph holds every import of one nnforge module by another, wherever it
is written (at the top, or inside a function: a lazy import is still a
dependency), plus the lazy public names of `nnforge/__init__.py`, which
stand for the modules defining them. A cycle means two modules that cannot
be understood, tested or moved apart: the shared part belongs in a module
below both.
"""

from __future__ import annotations

import ast
from pathlib import Path

import nnforge

PACKAGE = Path(nnforge.__file__).parent


def module_name(path: Path) -> str:
    parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


MODULES = {module_name(path): path for path in PACKAGE.rglob("*.py")}


def imported_modules(name: str, path: Path) -> set[str]:
    """The nnforge modules that module `name` (at `path`) imports."""
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    found = set()
    tree = ast.parse(path.read_text(), str(path))
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = package.rsplit(".", node.level - 1)[0] if node.level > 1 else package
                base = f"{anchor}.{base}" if base else anchor
            for alias in node.names:
                # `from package import module` imports the module.
                found.add(f"{base}.{alias.name}" if f"{base}.{alias.name}" in MODULES else base)
    if name == "nnforge":
        found.update(lazy_public_modules(tree))
    return {module for module in found if module in MODULES and module != name}


def lazy_public_modules(tree: ast.Module) -> set[str]:
    """The modules behind `nnforge/__init__.py`'s lazy public names."""
    modules = set()
    for node in tree.body:
        if isinstance(node, ast.Assign) and node.targets[0].id == "_EXPORTS":
            modules.update(ast.literal_eval(node.value).values())
        elif isinstance(node, ast.Assign) and node.targets[0].id == "_SUBMODULES":
            modules.update(f"nnforge.{submodule}" for submodule in ast.literal_eval(node.value))
    return modules


def find_cycle(graph: dict[str, set[str]]) -> list[str] | None:
    """A cycle of `graph` as the list of its modules (the first repeated at the end), or None."""
    state: dict[str, str] = {}  # "open" while on the current path, "done" once explored
    path: list[str] = []

    def visit(module: str) -> list[str] | None:
        state[module] = "open"
        path.append(module)
        for imported in sorted(graph[module]):
            if state.get(imported) == "open":
                return path[path.index(imported):] + [imported]
            if imported not in state and (cycle := visit(imported)):
                return cycle
        path.pop()
        state[module] = "done"
        return None

    for module in sorted(graph):
        if module not in state and (cycle := visit(module)):
            return cycle
    return None


def test_the_import_graph_is_complete():
    graph = {name: imported_modules(name, path) for name, path in MODULES.items()}
    # Spot checks that imports of each form are seen.
    assert "nnforge.compiler" in graph["nnforge"]  # a lazy public name
    assert "nnforge.targets.cpu.target" in graph["nnforge.targets"]  # an import inside a function
    assert "nnforge.pipelines" in graph["nnforge.stages"]  # `from nnforge import pipelines`


def test_nnforge_modules_import_each_other_without_a_cycle():
    graph = {name: imported_modules(name, path) for name, path in MODULES.items()}
    cycle = find_cycle(graph)
    assert cycle is None, "import cycle: " + " -> ".join(cycle)


def test_the_cycle_finder_finds_cycles():
    assert find_cycle({"a": {"b"}, "b": {"c"}, "c": {"a"}}) == ["a", "b", "c", "a"]
    assert find_cycle({"a": {"b", "c"}, "b": {"c"}, "c": set()}) is None
