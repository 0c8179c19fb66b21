"""No import cycles inside any package, function-local imports included.

A cycle held open by an import inside a function still ties two modules together: neither can be
read, tested or moved without the other. This builds each package's module graph from the source
(every ``import``/``from ... import`` anywhere in a module, except those under
``if TYPE_CHECKING:``, which never run) and fails on any strongly connected component of more
than one module, naming the modules and the lines that close the loop.
"""

from __future__ import annotations

import ast
import pathlib

import pytest

ROOT = pathlib.Path(__file__).resolve().parents[1]
PACKAGES = ("pixeldcn_core", "exporters", "triton_repo", "benchmarks")


def _module_name(path: pathlib.Path) -> str:
    parts = list(path.relative_to(ROOT).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def _is_type_checking(test: ast.expr) -> bool:
    return (isinstance(test, ast.Name) and test.id == "TYPE_CHECKING") or (
        isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING"
    )


def _imports(
    tree: ast.AST, module: str, is_pkg: bool, modules: set[str]
) -> list[tuple[str, int]]:
    """(imported module, line) for every import that can run, resolved to absolute names.

    ``from pkg import name`` depends on ``pkg.name`` when that is a module of ``modules``, and on
    ``pkg`` itself (its ``__init__``) otherwise.
    """
    found: list[tuple[str, int]] = []
    package = module if is_pkg else module.rpartition(".")[0]

    def visit(node: ast.AST) -> None:
        if isinstance(node, ast.If) and _is_type_checking(node.test):
            for child in node.orelse:
                visit(child)
            return
        if isinstance(node, ast.Import):
            found.extend((alias.name, node.lineno) for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")
                base = base[: len(base) - (node.level - 1)]
                target = ".".join(base + ([node.module] if node.module else []))
            else:
                target = node.module or ""
            for alias in node.names:
                sub = f"{target}.{alias.name}"
                found.append((sub if sub in modules else target, node.lineno))
        for child in ast.iter_child_nodes(node):
            visit(child)

    visit(tree)
    return found


def import_graph(package: str) -> dict[str, dict[str, int]]:
    """module -> {imported module of the same package: first line}."""
    files = {
        _module_name(p): p for p in (ROOT / package).rglob("*.py") if "results" not in p.parts
    }
    graph: dict[str, dict[str, int]] = {m: {} for m in files}
    for module, path in files.items():
        tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
        for target, line in _imports(tree, module, path.name == "__init__.py", set(files)):
            if target in files and target != module:
                graph[module].setdefault(target, line)
    return graph


def cycles(graph: dict[str, dict[str, int]]) -> list[list[str]]:
    """Strongly connected components with more than one module (Tarjan)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    out: list[list[str]] = []
    counter = [0]

    def strong(v: str) -> None:
        index[v] = low[v] = counter[0]
        counter[0] += 1
        stack.append(v)
        on_stack.add(v)
        for w in graph[v]:
            if w not in index:
                strong(w)
                low[v] = min(low[v], low[w])
            elif w in on_stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            comp = []
            while True:
                w = stack.pop()
                on_stack.discard(w)
                comp.append(w)
                if w == v:
                    break
            if len(comp) > 1:
                out.append(sorted(comp))

    for v in sorted(graph):
        if v not in index:
            strong(v)
    return out


def _describe(graph: dict[str, dict[str, int]], comp: list[str]) -> str:
    members = set(comp)
    edges = [f"{a}:{line} -> {b}" for a in comp for b, line in graph[a].items() if b in members]
    return "\n  ".join(edges)


#: Cycles being taken apart (issue 21): each entry is removed with the change that breaks it, and
#: the test fails both on a cycle not listed here and on a listed one that is gone.
KNOWN: dict[str, list[list[str]]] = {
}


@pytest.mark.parametrize("package", PACKAGES)
def test_no_import_cycle(package):
    graph = import_graph(package)
    known = KNOWN.get(package, [])
    found = [comp for comp in cycles(graph) if comp not in known]
    gone = [comp for comp in known if comp not in cycles(graph)]
    assert not gone, f"cycles fixed in {package}: remove them from KNOWN: {gone}"
    assert not found, f"import cycles in {package}:\n  " + "\n\n  ".join(
        _describe(graph, comp) for comp in found
    )


def test_the_checker_finds_a_function_local_cycle(tmp_path):
    # the checker itself: a cycle closed by a function-local import is found,
    # one closed only under TYPE_CHECKING is not
    a = ast.parse("from . import b\n")
    b_local = ast.parse("def f():\n    from . import a\n")
    b_typing = ast.parse("from typing import TYPE_CHECKING\nif TYPE_CHECKING:\n    from . import a\n")
    for tree, expect in ((b_local, [["p.a", "p.b"]]), (b_typing, [])):
        graph = {"p.a": {}, "p.b": {}}
        for mod, t in (("p.a", a), ("p.b", tree)):
            for target, line in _imports(t, mod, False, set(graph)):
                if target in graph and target != mod:
                    graph[mod].setdefault(target, line)
        assert cycles(graph) == expect
