"""Print every import cycle between modules of the project (exit 1 if there is one).

`make lint` runs import-linter for the layers; this finds what a layers contract cannot see: two
files of the same package, or tests and benchmarks, importing each other (directly or around a
loop). Imports inside functions count: a lazy import hides a cycle, it does not remove it.
"""

from __future__ import annotations

import sys
from pathlib import Path

import grimp

PACKAGES = ("arena", "workers", "leaderboard", "tests", "benchmarks")
# The repository first: `python scripts/import_cycles.py` reads this checkout, not an installed one.
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))


def import_cycles(graph: grimp.ImportGraph) -> list[list[str]]:
    """The strongly connected components of more than one module (Tarjan, iterative)."""
    edges = {m: sorted(graph.find_modules_directly_imported_by(m)) for m in graph.modules}
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[list[str]] = []
    counter = 0
    for root in sorted(edges):
        if root in index:
            continue
        work = [(root, 0)]
        while work:
            node, i = work.pop()
            if i == 0:
                index[node] = low[node] = counter
                counter += 1
                stack.append(node)
                on_stack.add(node)
            targets = edges.get(node, [])
            if i < len(targets):
                work.append((node, i + 1))
                nxt = targets[i]
                if nxt not in index:
                    work.append((nxt, 0))
                elif nxt in on_stack:
                    low[node] = min(low[node], index[nxt])
                continue
            if low[node] == index[node]:
                component = []
                while True:
                    m = stack.pop()
                    on_stack.discard(m)
                    component.append(m)
                    if m == node:
                        break
                if len(component) > 1:
                    found.append(sorted(component))
            if work:
                parent = work[-1][0]
                low[parent] = min(low[parent], low[node])
    return found


def main() -> int:
    graph = grimp.build_graph(*PACKAGES, cache_dir=None)
    cycles = import_cycles(graph)
    for component in cycles:
        print("cycle:", " <-> ".join(component))
    print(f"{len(graph.modules)} modules, {len(cycles)} import cycles")
    return 1 if cycles else 0


if __name__ == "__main__":
    sys.exit(main())
