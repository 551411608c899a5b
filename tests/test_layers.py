"""countlib's modules form layers: the import graph between them has no cycle, counting every
import, at module top, inside a function or under ``if TYPE_CHECKING:``, as if all were at the
top. Read from the source with `ast`, so nothing is imported (and no torch is needed)."""

import ast
from pathlib import Path

import countlib

PACKAGE = Path(countlib.__file__).parent


def module_files() -> dict[str, Path]:
    """Every module of the package by dotted name; a package's ``__init__`` is the package."""
    modules = {}
    for path in sorted(PACKAGE.rglob("*.py")):
        parts = list(path.relative_to(PACKAGE.parent).with_suffix("").parts)
        if parts[-1] == "__init__":
            parts.pop()
        modules[".".join(parts)] = path
    return modules


def imported(name: str, path: Path, modules: dict[str, Path]) -> set[str]:
    """The countlib modules that module ``name`` imports anywhere in its source.

    ``import countlib.x`` and ``from countlib.x import y`` are edges to ``countlib.x``, the
    latter also to ``countlib.x.y`` where that is a module. A package importing its own
    submodules (``from countlib.train import trainer`` in ``countlib/train/__init__.py``) is no
    edge to itself.
    """
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    found = set()
    for node in ast.walk(ast.parse(path.read_text(), filename=str(path))):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            if node.level:  # relative: from the package, up level - 1 packages
                base = package.split(".")[: len(package.split(".")) - node.level + 1]
                source = ".".join([*base, *([node.module] if node.module else [])])
            else:
                source = node.module or ""
            found.add(source)
            found.update(f"{source}.{alias.name}" for alias in node.names)
    return {module for module in found if module in modules and module != name}


def import_graph() -> dict[str, set[str]]:
    modules = module_files()
    return {name: imported(name, path, modules) for name, path in modules.items()}


def find_cycle(graph: dict[str, set[str]]) -> list[str] | None:
    """A cycle of ``graph`` as the modules along it (first repeated at the end), or None."""
    done: set[str] = set()
    path: list[str] = []
    on_path: set[str] = set()

    def visit(module: str) -> list[str] | None:
        path.append(module)
        on_path.add(module)
        for target in sorted(graph[module]):
            if target in on_path:
                return [*path[path.index(target) :], target]
            if target not in done:
                cycle = visit(target)
                if cycle:
                    return cycle
        path.pop()
        on_path.discard(module)
        done.add(module)
        return None

    for module in sorted(graph):
        if module not in done:
            cycle = visit(module)
            if cycle:
                return cycle
    return None


def test_the_graph_reads_every_kind_of_import():
    graph = import_graph()
    assert "countlib.sweep" in graph and "countlib.sweep.run" in graph  # packages and modules
    assert "countlib.sweep" in graph["countlib.report"]  # inside a function
    assert "countlib.sweep.run" in graph["countlib.sweep"]  # a package's own re-exports
    assert "countlib.train.trainer" in graph["countlib.train"]  # a lazy package's loader
    assert "countlib.train.records" in graph["countlib.results"]  # `from a.b import c`


def test_the_search_finds_a_cycle():
    graph = {"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}
    assert find_cycle(graph) == ["a", "b", "c", "a"]
    assert find_cycle({"a": {"b"}, "b": set()}) is None


def test_the_import_graph_has_no_cycle():
    cycle = find_cycle(import_graph())
    assert cycle is None, "import cycle: " + " -> ".join(cycle)


def test_thresholds_and_formatting_are_a_leaf():
    assert import_graph()["countlib.formatting"] == set()


def test_the_claims_are_judged_below_the_pages_that_show_them():
    """The claims and their rules import no presentation module: pages render them."""
    assert not import_graph()["countlib.claims"] & {"countlib.report", "countlib.tables"}
