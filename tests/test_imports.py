"""The package's modules import each other without cycles, counting imports inside functions too: a
cycle hidden behind a lazy import is still two modules that cannot be understood one without the other."""

from __future__ import annotations

import ast
from pathlib import Path

SRC = Path(__file__).resolve().parents[1] / "src"


def import_graph() -> dict[str, set[str]]:
    mods = {}
    for f in (SRC / "recnarr").rglob("*.py"):
        name = ".".join(f.relative_to(SRC).with_suffix("").parts).removesuffix(".__init__")
        mods[name] = f
    graph: dict[str, set[str]] = {m: set() for m in mods}
    for m, f in mods.items():
        for node in ast.walk(ast.parse(f.read_text())):
            if isinstance(node, ast.ImportFrom) and node.module and node.module.startswith("recnarr"):
                for a in node.names:  # `from recnarr.data import stages` names a module too
                    sub = f"{node.module}.{a.name}"
                    graph[m].add(sub if sub in mods else node.module)
            elif isinstance(node, ast.Import):
                graph[m].update(a.name for a in node.names if a.name.startswith("recnarr"))
    return {m: {d for d in deps if d in mods and d != m} for m, deps in graph.items()}


def cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components with more than one module (Tarjan)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    out: list[list[str]] = []

    def visit(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        for w in sorted(graph[v]):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            comp = []
            while True:
                w = stack.pop()
                comp.append(w)
                if w == v:
                    break
            if len(comp) > 1:
                out.append(sorted(comp))

    for v in sorted(graph):
        if v not in index:
            visit(v)
    return out


def test_the_cycle_finder_finds_a_cycle():
    assert cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [["a", "b", "c"]]


def test_no_import_cycles_among_the_packages_modules():
    graph = import_graph()
    assert len(graph) > 50 and "recnarr.model.checkpoint" in graph["recnarr.model.hf"]  # the walk sees edges
    assert cycles(graph) == []


def test_library_packages_never_import_the_stages():
    # stages/ orchestrate the library; a library module reaching back up would make a stage its dependency
    graph = import_graph()
    up = {m: sorted(d for d in deps if d.startswith("recnarr.stages")) for m, deps in graph.items()
          if m.partition(".")[2].split(".")[0] in ("data", "model", "training", "retrieval", "inference", "evaluation", "serving")}
    assert {m: d for m, d in up.items() if d} == {}
