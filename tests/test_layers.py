"""The layering is a test, not a wish: the import contract of pyproject.toml ([tool.importlinter]: the
command line on top, then runs, tasks / eval / guidance, the engine, networks and data, the maths, the
foundation; nothing imports upwards) and no import cycle between any two modules, imports inside functions
included (grimp reads them all)."""

import sys

import grimp
from importlinter.cli import lint_imports

from run_helpers import REPO


def test_the_import_contract_is_kept(monkeypatch):
    monkeypatch.chdir(REPO)  # lint-imports reads pyproject.toml from the working folder
    assert lint_imports() == 0


def _cycles(graph) -> list[list[str]]:
    """Strongly connected components of more than one module (Tarjan)."""
    adj = {m: graph.find_modules_directly_imported_by(m) for m in graph.modules}
    index, low, stack, on, out, counter = {}, {}, [], set(), [], [0]

    def visit(v):
        index[v] = low[v] = counter[0]
        counter[0] += 1
        stack.append(v)
        on.add(v)
        for w in adj[v]:
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            comp = []
            while True:
                w = stack.pop()
                on.discard(w)
                comp.append(w)
                if w == v:
                    break
            if len(comp) > 1:
                out.append(sorted(comp))

    limit = sys.getrecursionlimit()
    sys.setrecursionlimit(max(limit, 10_000))
    try:
        for m in sorted(graph.modules):
            if m not in index:
                visit(m)
    finally:
        sys.setrecursionlimit(limit)
    return out


def test_no_module_takes_part_in_an_import_cycle():
    graph = grimp.build_graph("holdsgm")
    assert len(graph.modules) > 50
    assert _cycles(graph) == []
    # the check sees imports inside functions: the CLI imports the runs layer only there
    assert "holdsgm.runs.sampling" in graph.find_modules_directly_imported_by("holdsgm.cli.sample")
