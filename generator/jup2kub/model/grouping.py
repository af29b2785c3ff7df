"""Automatic step grouping: the fewest steps that keep all the parallelism of the cells.

A notebook without tags, markers or step headings used to become one step per code cell, and
each step pays a process, its imports and a round trip of its inputs through storage: a 151-cell
notebook ran 30 times slower than the notebook. ``group_cells`` takes the pipeline built with one
step per cell (the cells' dependency graph) and joins consecutive cells into one step when that
delays no cell (with enough cores every cell still starts as early as before):

- a cell joins the step before it when it depends on every cell of that step, nothing outside
  the step needs a cell of it without also needing the joining cell, and the joining cell needs
  nothing the step's first cell did not already wait for (a linear chain collapses);
- a cell that only imports or defines (its code is re-run wherever it is used, nothing waits for
  it) joins the cell after it.

Groups are runs of consecutive cells, so the order within a step is the notebook's order and
no cycle can appear. Each step records why its cells went together and why it starts where it
does (``StepCells.grouping``), which ``jup2kub inspect`` shows.
"""

from __future__ import annotations

import ast
from dataclasses import dataclass, field

from jup2kub.model.pipeline import Pipeline
from jup2kub.model.split import Split, StepCells

#: the split mode of a notebook grouped automatically (``auto`` found no explicit steps)
GROUPED_MODE = "grouped"

#: line magics that only set the session up (``%matplotlib inline``): allowed in a cell that
#: otherwise only imports or defines
_SETUP_MAGICS = frozenset({"matplotlib", "load_ext", "reload_ext", "autoreload", "config"})


@dataclass
class _Graph:
    """The cells' dependency graph, by position in the one-step-per-cell pipeline."""

    cells: list[int]  # position -> cell index
    preds: list[set[int]]
    succs: list[set[int]]
    ancestors: list[int]  # bit sets over positions
    descendants: list[int]
    pred_bits: list[int]
    succ_bits: list[int]

    @classmethod
    def of(cls, pipeline: Pipeline) -> _Graph:
        position = {s.name: i for i, s in enumerate(pipeline.steps)}
        n = len(pipeline.steps)
        preds = [{position[a] for a in s.after} for s in pipeline.steps]
        succs: list[set[int]] = [set() for _ in range(n)]
        for i, ps in enumerate(preds):
            for p in ps:
                succs[p].add(i)
        ancestors = [0] * n
        for i in range(n):  # steps are in notebook order and edges point forward
            for p in preds[i]:
                ancestors[i] |= ancestors[p] | (1 << p)
        descendants = [0] * n
        for i in reversed(range(n)):
            for s in succs[i]:
                descendants[i] |= descendants[s] | (1 << s)
        cells = [s.cells[0] for s in pipeline.steps]
        return cls(cells, preds, succs, ancestors, descendants, _bits(preds), _bits(succs))

    def needs(self, later: int, earlier: int) -> bool:
        return bool(self.ancestors[later] >> earlier & 1)


@dataclass
class _Group:
    members: list[int] = field(default_factory=list)  # positions, consecutive
    definitions: list[int] = field(default_factory=list)  # imports/definitions-only members
    why: list[str] = field(default_factory=list)
    inside: int = 0  # bit set of the members
    first: int | None = None  # the first member that is not definitions-only
    last: int | None = None  # the last such member
    outside: int = 0  # bit set of cells outside the group that need a member

    def add(self, graph: _Graph, pending: list[int], i: int) -> None:
        self.members += [*pending, i]
        self.definitions += pending
        for m in (*pending, i):
            self.inside |= 1 << m
        self.first = i if self.first is None else self.first
        self.last = i
        self.outside = (self.outside | graph.succ_bits[i]) & ~self.inside

    @property
    def working(self) -> list[int]:
        return [m for m in self.members if m not in self.definitions]


def group_cells(split: Split, per_cell: Pipeline) -> Split:
    """``split`` (one step per code cell) regrouped as the module docstring says; ``per_cell``
    is the pipeline built from ``split``."""
    graph = _Graph.of(per_cell)
    definitions = {i for i in range(len(graph.cells)) if _definitions_only(per_cell, i, graph)}
    groups: list[_Group] = []
    for segment, first_why in _segments(split, graph):
        groups += _group_segment(graph, segment, definitions, first_why)
    return Split(
        GROUPED_MODE,
        [_step(graph, g) for g in groups],
        prelude=list(split.prelude),
        parameters=list(split.parameters),
        skipped=list(split.skipped),
        metrics=list(split.metrics),
        warnings=list(split.warnings),
    )


def _segments(split: Split, graph: _Graph) -> list[tuple[list[int], str]]:
    """The positions between parameters cells, each with why its first step starts there: the
    analysis and the runtime see a step's cells as one stretch of the notebook, so no step
    spans a parameters cell."""
    segments: list[tuple[list[int], str]] = [([], "first step")]
    for i, cell in enumerate(graph.cells):
        previous = graph.cells[i - 1] if i else -1
        between = [p for p in split.parameters if previous < p < cell]
        if between and segments[-1][0]:
            segments.append(([], f"new step: the parameters cell {between[-1]} comes before it"))
        segments[-1][0].append(i)
    return segments


def _group_segment(
    graph: _Graph, segment: list[int], definitions: set[int], first_why: str
) -> list[_Group]:
    groups: list[_Group] = []
    pending: list[int] = []  # definitions-only cells waiting for the cell after them
    for i in segment:
        if i in definitions:
            pending.append(i)
            continue
        current = groups[-1] if groups else None
        refusal = _refusal(graph, current, i) if current is not None else None
        if current is None or refusal is not None:
            current = _Group(why=[_boundary(graph, refusal) if refusal else first_why])
            groups.append(current)
        current.add(graph, pending, i)
        pending = []
    if pending:
        if not groups:
            groups.append(_Group(why=[first_why]))
        groups[-1].members += pending
        groups[-1].definitions += pending
    return groups


def _refusal(graph: _Graph, group: _Group, i: int) -> str | None:
    """Why cell position ``i`` cannot join ``group`` without delaying some cell, or None.

    The group's working members form a chain, so needing the last one means needing all."""
    if group.last is None or group.first is None:
        return None
    if not graph.needs(i, group.last):
        return f"parallel {group.last} {i}"
    early = group.outside & ~(1 << i) & ~graph.descendants[i]
    if early:
        z = _lowest(early)
        a = next(m for m in group.working if graph.succ_bits[m] >> z & 1)
        return f"fanout {a} {z}"
    late = graph.pred_bits[i] & ~group.inside & ~graph.ancestors[group.first]
    if late:
        return f"join {_lowest(late)} {group.first}"
    return None


def _bits(sets: list[set[int]]) -> list[int]:
    out = []
    for members in sets:
        bits = 0
        for m in members:
            bits |= 1 << m
        out.append(bits)
    return out


def _lowest(bits: int) -> int:
    return (bits & -bits).bit_length() - 1


def _boundary(graph: _Graph, refusal: str) -> str:
    """The refusal code of ``_refusal`` as a sentence about cells."""
    kind, x, y = refusal.split()
    a, b = graph.cells[int(x)], graph.cells[int(y)]
    if kind == "parallel":
        return f"new step: it does not depend on cell {a}, so they can run in parallel"
    if kind == "fanout":
        return f"new step: cell {b} needs cell {a} but not this one, and need not wait for it"
    return f"new step: it also needs cell {a}, which cell {b} does not wait for"


def _step(graph: _Graph, group: _Group) -> StepCells:
    cells = [graph.cells[m] for m in group.members]
    name = f"cell-{cells[0]}" if len(cells) == 1 else f"cells-{cells[0]}-{cells[-1]}"
    step = StepCells(name, name, cells, explicit=False)
    working = [graph.cells[m] for m in group.working]
    folded = [graph.cells[m] for m in group.definitions]
    why = list(group.why)
    if len(working) > 1:
        why.append(
            f"cells {_cell_list(working)} form a chain: each needs the ones before it, "
            "and nothing outside needs them without the rest"
        )
    if len(folded) == 1:
        why.append(f"cell {folded[0]} only imports or defines: joined to its neighbour")
    elif folded:
        why.append(f"cells {_cell_list(folded)} only import or define: joined to their neighbour")
    step.grouping = why
    return step


def _cell_list(cells: list[int]) -> str:
    return ", ".join(map(str, cells))


def _definitions_only(pipeline: Pipeline, i: int, graph: _Graph) -> bool:
    """The cell only imports, defines functions or classes, or sets the session up, and no
    other cell waits for it nor it for one: its code is re-run where it is used."""
    step = pipeline.steps[i]
    if graph.preds[i] or graph.succs[i] or step.outputs or step.barrier is not None:
        return False
    try:
        body = ast.parse(pipeline.python[step.cells[0]]).body
    except SyntaxError:
        return False
    return bool(body) and all(_defines(node) for node in body)


def _defines(node: ast.stmt) -> bool:
    if isinstance(
        node, (ast.Import, ast.ImportFrom, ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)
    ):
        return True
    if isinstance(node, ast.Pass):
        return True
    if not isinstance(node, ast.Expr):
        return False
    value = node.value
    if isinstance(value, ast.Constant) and isinstance(value.value, str):
        return True  # a docstring
    return _setup_magic(value)


def _setup_magic(value: ast.expr) -> bool:
    """``get_ipython().run_line_magic("matplotlib", "inline")`` and the like."""
    return (
        isinstance(value, ast.Call)
        and isinstance(value.func, ast.Attribute)
        and value.func.attr == "run_line_magic"
        and bool(value.args)
        and isinstance(value.args[0], ast.Constant)
        and value.args[0].value in _SETUP_MAGICS
    )
