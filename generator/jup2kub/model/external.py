"""Which steps act outside the pipeline's own values, and the order that imposes on them.

nbclient stops at the first failing cell: no later cell runs. A pipeline runs independent steps
in parallel, so a step may start before an earlier one fails. For a step whose effects stay in
its values that is harmless (the results show no cell past the failure). A step that writes
files, runs a program or a shell command, or reaches the network or a database would leave
behind what the notebook never does, so it runs after every step before it in notebook order
(by first cell): an edge of the step graph, which every executor honours as it is (a process
per step, the runtimes on Kafka, a deployed chart), and which no failure upstream lets through.

Known APIs only: the calls the analysis follows for the step cache and the file order (writes
under a literal name, shell and program calls, files removed or moved), clients of the network
and of databases (``cacheability.NETWORK_CALLS``), memory-mapped files opened for writing and
frames written to a database. A call into other third-party code counts as pure: taking every
unknown call as effectful would run nearly every notebook one step at a time, and the same
lists already decide what the cache restores and which steps share files. Code a step re-runs
from elsewhere counts as what it does there: a function defined in another cell (its body's
effects), but not the setup and prelude code every step re-runs (the notebook ran it first).
"""

from __future__ import annotations

import ast
from collections.abc import Iterable, Iterator, Mapping

from jup2kub.model.analysis import CellAnalysis
from jup2kub.model.analysis.events import Statement
from jup2kub.model.cacheability import (
    NETWORK_CALLS,
    REMOVING_CALLS,
    matches,
    named_calls,
    notebook_imports,
    parse_or_empty,
)
from jup2kub.model.pipeline import Effect, Pipeline, Step

#: calls opening a memory-mapped file (-> the position of their mode), and the modes in which
#: they only read it
MEMMAP_CALLS = {"numpy.memmap": 2, "numpy.lib.format.open_memmap": 1}
MEMMAP_READ_MODES = frozenset({"r", "readonly", "c", "copyonwrite"})
#: methods writing a frame to a database
DATABASE_WRITERS = (".to_sql", ".to_gbq")


def order_effects(pipeline: Pipeline, analyses: Iterable[CellAnalysis]) -> Pipeline:
    """Record each step's external effects (``Step.effects``) and make every step that has some
    run after all the steps before it in notebook order; returns ``pipeline``."""
    statements = {(st.cell, st.line): st for a in analyses for st in a.statements}
    by_cell: dict[int, list[Statement]] = {}
    for st in statements.values():
        by_cell.setdefault(st.cell, []).append(st)
    imports = notebook_imports(pipeline.python.values())
    for step in pipeline.steps:
        step.effects = list(dict.fromkeys(_effects(pipeline, step, by_cell, statements, imports)))
    _order(pipeline)
    return pipeline


def _effects(
    pipeline: Pipeline,
    step: Step,
    by_cell: Mapping[int, list[Statement]],
    statements: Mapping[tuple[int, int], Statement],
    imports: Mapping[str, str],
) -> Iterator[Effect]:
    """Why ``step`` acts outside the pipeline's values (nothing: it does not)."""
    own = [st for i in step.cells for st in by_cell.get(i, [])]
    borrowed = [
        statements[d.cell, d.line]
        for d in step.replay
        if d.kind == "code" and d.cell not in step.cells and (d.cell, d.line) in statements
    ]
    for st in own + borrowed:
        cell = st.cell if st.cell in step.cells else None  # None: whenever its function runs
        where = f"cell {st.cell}" if cell is not None else f"a function of cell {st.cell}"
        if st.opaque:
            yield Effect(f"{where} {st.opaque.rsplit(', line', 1)[0]}", cell)
        for path in sorted(st.file_writes):
            yield Effect(f"{where} writes {path}", cell)
    sources = [pipeline.python[i] for i in step.cells] + [st.source for st in borrowed]
    for source in sources:
        for name, call in named_calls(parse_or_empty(source), imports):
            found = _call_effect(name, call)
            if found is not None:
                yield Effect(found)


def _call_effect(name: str, call: ast.Call) -> str | None:
    if matches(name, NETWORK_CALLS):
        return f"reaches the network or a database ({name})"
    if matches(name, REMOVING_CALLS) or name.endswith(".unlink"):
        return f"removes or moves files ({name})"
    if name.endswith(DATABASE_WRITERS):
        return f"writes to a database ({name.rsplit('.', 1)[-1]})"
    if name in MEMMAP_CALLS and _memmap_writes(call, MEMMAP_CALLS[name]):
        return f"writes a memory-mapped file ({name})"
    return None


def _memmap_writes(call: ast.Call, position: int) -> bool:
    """``np.memmap(f, mode=..)`` (default ``r+``) writes unless read-only or copy-on-write."""
    modes = [k.value for k in call.keywords if k.arg == "mode"]
    modes += call.args[position : position + 1]
    mode = modes[0] if modes else None
    if isinstance(mode, ast.Constant) and isinstance(mode.value, str):
        return mode.value not in MEMMAP_READ_MODES
    return True


def _order(pipeline: Pipeline) -> None:
    """Each step with effects after every step whose first cell comes before its own, except
    one that already follows it (an edge would close a cycle: the rule cannot hold there), with
    the fewest edges: none to a step that an added or existing one already follows."""
    steps = sorted(pipeline.steps, key=lambda s: min(s.cells, default=-1))
    bit = {s.name: 1 << i for i, s in enumerate(steps)}
    ancestors = dict.fromkeys(bit, 0)  # bit sets over ``steps``
    for name in pipeline.topological_order():
        for up in pipeline.step(name).after:
            ancestors[name] |= ancestors[up] | bit[up]
    for j, step in enumerate(steps):
        if not step.effects:
            continue
        mine = bit[step.name]
        wanted = [
            e.name
            for e in steps[:j]
            if not ancestors[step.name] & bit[e.name] and not ancestors[e.name] & mine
        ]
        covered = 0
        for w in wanted:
            covered |= ancestors[w]
        added = [w for w in wanted if not covered & bit[w]]
        step.after = [*step.after, *added]
        for w in added:
            ancestors[step.name] |= ancestors[w] | bit[w]
        for name, bits in ancestors.items():  # its descendants follow what it now follows
            if bits & mine:
                ancestors[name] |= ancestors[step.name]
    position = {s.name: i for i, s in enumerate(pipeline.steps)}
    for s in pipeline.steps:
        s.after = sorted(s.after, key=position.__getitem__)
