"""Import cycles among our own modules, imports inside functions counted.

import-linter's layers contracts only look across the layers they name; a cycle between modules
of one layer (or hidden behind an import inside a function) passes them. grimp, the graph
import-linter itself builds, sees every ``import`` statement wherever it stands, so the strongly
connected components of its graph are exactly the cycles.
"""

from __future__ import annotations

import grimp

PACKAGES = ("jup2kub", "jup2kub_runtime")


def import_cycles(*packages: str) -> list[list[str]]:
    """Each group of modules that import each other, directly or not (Tarjan, iteratively)."""
    graph = grimp.build_graph(*(packages or PACKAGES), cache_dir=None)
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    groups: list[list[str]] = []
    for root in sorted(graph.modules):
        if root in index:
            continue
        work = [(root, iter(sorted(graph.find_modules_directly_imported_by(root))))]
        index[root] = low[root] = len(index)
        stack.append(root)
        on_stack.add(root)
        while work:
            node, edges = work[-1]
            child = next(edges, None)
            if child is not None:
                if child not in index:
                    index[child] = low[child] = len(index)
                    stack.append(child)
                    on_stack.add(child)
                    work.append(
                        (child, iter(sorted(graph.find_modules_directly_imported_by(child))))
                    )
                elif child in on_stack:
                    low[node] = min(low[node], index[child])
                continue
            work.pop()
            if work:
                parent = work[-1][0]
                low[parent] = min(low[parent], low[node])
            if low[node] == index[node]:
                group = []
                while True:
                    member = stack.pop()
                    on_stack.discard(member)
                    group.append(member)
                    if member == node:
                        break
                if len(group) > 1:
                    groups.append(sorted(group))
    return groups
