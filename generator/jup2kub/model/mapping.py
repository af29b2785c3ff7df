"""Data-parallel map cells: a cell marked ``#| map: true`` (or tagged ``map``) whose loop runs
its iterations apart, in parallel, with the notebook's results.

Three forms qualify: a comprehension assigned to a name (``scores = [score(x) for x in xs]``,
dict and set comprehensions too), ``list(map(f, xs, ...))`` assigned to a name, and a ``for``
loop whose body only computes per-iteration values and appends/adds/assigns them to
accumulators (``out.append(y)``, ``seen.add(k)``, ``table[k] = v``). The cell becomes a step of
its own; the runtime (``jup2kub_runtime.execution.map_chunks``) replays the accumulators'
operations in the original order, so the result equals the sequential one.

What would make the parallel result differ is refused (exit 2), naming the cell, line and
variable: a value carried from one iteration to the next (``total += x``, a read of a name the
body assigns, ``break``, a walrus), a change to shared state (a method call that may mutate, a
notebook function that writes a global or changes its arguments), a draw from the global random
generators, and effects the analysis cannot order (shell commands, file writes, module setup).
"""

from __future__ import annotations

import ast
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, replace

from jup2kub.errors import MapRefusedError
from jup2kub.model.analysis import BUILTIN_NAMES, CellAnalysis, Event, Summary, analyze_cell
from jup2kub.model.analysis.calls import call_effects
from jup2kub.model.analysis.effects import DRAW, random_effect
from jup2kub.model.analysis.scopes import is_pure as is_pure_method
from jup2kub.model.notebook import Cell, Notebook
from jup2kub.model.split import Split, StepCells, cell_options
from jup2kub_runtime.contract.mapspec import ACC, ITEM, MapSpec

MAP_TAG = "map"
MAP_OPTION = "map"
CHUNK_OPTION = "map-chunk"
#: accumulator operations the runtime records and replays
ACC_METHODS = frozenset({"append", "extend", "add"})
_COMPS = (ast.ListComp, ast.SetComp, ast.DictComp)
_FORM_OF = {ast.ListComp: "list", ast.SetComp: "set", ast.DictComp: "dict"}
#: values that are new objects, so changing them changes nothing shared
_FRESH = (
    ast.List,
    ast.Dict,
    ast.Set,
    ast.Tuple,
    ast.ListComp,
    ast.DictComp,
    ast.SetComp,
    ast.Constant,
    ast.JoinedStr,
)
_FRESH_CALLS = frozenset({"list", "dict", "set", "sorted", "str", "tuple", "bytearray"})


def is_map_cell(cell: Cell) -> bool:
    """Marked ``#| map: true`` or tagged ``map`` (Kale style)."""
    if cell.cell_type != "code":
        return False
    return MAP_TAG in cell.tags or cell_options(cell.source).get(MAP_OPTION) is True


def map_chunk(path: str, cell: Cell) -> int | None:
    """The ``#| map-chunk: N`` override (None: automatic)."""
    value = cell_options(cell.source).get(CHUNK_OPTION)
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise MapRefusedError(
            path,
            cell.index,
            None,
            f"'#| {CHUNK_OPTION}: {value}' is not a positive whole number",
            hint=f"write e.g. '#| {CHUNK_OPTION}: 4', or leave it out for an automatic size",
        )
    return value


# ---- steps -------------------------------------------------------------------------------------


def isolate_maps(nb: Notebook, split: Split) -> Split:
    """Every map cell becomes a step of its own: the cells before it stay in their step, the
    cells after it continue in a new one."""
    maps = {c.index for c in nb.cells if is_map_cell(c)}
    if not maps.intersection(i for s in split.steps for i in s.cells):
        return split
    taken = {s.name for s in split.steps}
    steps: list[StepCells] = []
    for sc in split.steps:
        steps.extend(_cut(sc, maps, taken))
    return replace(split, steps=steps)


def _cut(sc: StepCells, maps: set[int], taken: set[str]) -> list[StepCells]:
    if len(sc.cells) == 1 or not maps.intersection(sc.cells):
        return [sc]
    parts: list[list[int]] = [[]]
    for i in sc.cells:
        if i in maps:
            parts += [[i], []]
        else:
            parts[-1].append(i)
    parts = [p for p in parts if p]
    out: list[StepCells] = []
    for n, cells in enumerate(parts):
        if n == 0:
            out.append(replace(sc, cells=cells))
            continue
        name = _unique(f"{sc.name}-map" if cells[0] in maps else f"{sc.name}-{n + 1}", taken)
        out.append(StepCells(name, sc.source_name, cells, explicit=False, pod=sc.pod))
    return out


def _unique(name: str, taken: set[str]) -> str:
    candidate, n = name, 2
    while candidate in taken:
        candidate, n = f"{name}-{n}", n + 1
    taken.add(candidate)
    return candidate


# ---- qualification -----------------------------------------------------------------------------


@dataclass(frozen=True)
class _Context:
    """What the cells before the map cell tell: notebook functions and imports."""

    path: str
    cell: int
    summaries: Mapping[str, Summary]
    imports: Mapping[str, str]

    def refuse(self, line: int | None, what: str, variable: str | None = None) -> MapRefusedError:
        return MapRefusedError(self.path, self.cell, line, what, variable=variable)

    def methods(self, receiver: str, method: str) -> list[str]:
        """The notebook classes whose method ``receiver.method`` may be (none on a module)."""
        if receiver in self.imports:
            return []
        return [
            name
            for name, s in self.summaries.items()
            if s.kind == "class" and method in dict(s.inner)
        ]


def plan_maps(nb: Notebook, cells: Iterable[CellAnalysis]) -> dict[int, MapSpec]:
    """The MapSpec of every map cell that runs (cell index -> spec); refuses what cannot run
    its iterations apart."""
    summaries: dict[str, Summary] = {}
    imports: dict[str, str] = {}
    plans: dict[int, MapSpec] = {}
    for ca in sorted(cells, key=lambda c: c.index):
        cell = nb.cells[ca.index]
        if is_map_cell(cell):
            ctx = _Context(nb.path, ca.index, dict(summaries), dict(imports))
            plans[ca.index] = qualify(ctx, ca.python, map_chunk(nb.path, cell))
        for st in ca.statements:
            summaries.update(st.summaries)
            imports.update(st.imports)
    return plans


def qualify(ctx: _Context, python: str, chunk: int | None) -> MapSpec:
    """The map cell's pieces, or MapRefusedError saying why its loop cannot run apart."""
    try:
        tree = ast.parse(python)
    except SyntaxError as exc:  # analyze_cell reported it already; be safe
        raise ctx.refuse(exc.lineno, f"the cell does not parse: {exc.msg}") from None
    found = [st for st in tree.body if _candidate(st)]
    if not found:
        raise ctx.refuse(
            None,
            "the cell holds no loop to distribute: write a comprehension assigned to a name "
            "(ys = [f(x) for x in xs]), list(map(f, xs)) assigned to a name, or a for loop "
            "that appends each iteration's result",
        )
    if len(found) > 1:
        at = ", ".join(str(st.lineno) for st in found)
        raise ctx.refuse(found[1].lineno, f"the cell holds several loops (lines {at})")
    loop = found[0]
    lines = python.splitlines(keepends=True)
    _own_lines(ctx, tree, loop)
    before = "".join(lines[: loop.lineno - 1])
    after = "\n" * (loop.end_lineno or loop.lineno) + "".join(lines[loop.end_lineno :])
    if isinstance(loop, ast.For):
        return _for_loop(ctx, loop, lines, before, after, chunk)
    if isinstance(loop, ast.AsyncFor):
        raise ctx.refuse(loop.lineno, "an async for loop cannot be distributed")
    assert isinstance(loop, ast.Assign)
    return _assigned(ctx, loop, before, after, chunk)


def _candidate(st: ast.stmt) -> bool:
    if isinstance(st, (ast.For, ast.AsyncFor)):
        return True
    if isinstance(st, ast.Assign) and len(st.targets) == 1:
        return isinstance(st.targets[0], ast.Name) and (
            isinstance(st.value, _COMPS) or _list_map(st.value) is not None
        )
    return False


def _list_map(node: ast.expr) -> ast.Call | None:
    """``list(map(f, xs, ...))``: the inner ``map`` call."""
    if (
        isinstance(node, ast.Call)
        and isinstance(node.func, ast.Name)
        and node.func.id == "list"
        and len(node.args) == 1
        and not node.keywords
    ):
        inner = node.args[0]
        if (
            isinstance(inner, ast.Call)
            and isinstance(inner.func, ast.Name)
            and inner.func.id == "map"
            and len(inner.args) >= 2
            and not inner.keywords
            and not any(isinstance(a, ast.Starred) for a in inner.args)
        ):
            return inner
    return None


def _own_lines(ctx: _Context, tree: ast.Module, loop: ast.stmt) -> None:
    for st in tree.body:
        if st is loop:
            continue
        end = st.end_lineno or st.lineno
        if st.lineno <= (loop.end_lineno or loop.lineno) and end >= loop.lineno:
            raise ctx.refuse(
                loop.lineno, "the loop shares a line with another statement; give it its own"
            )


def _pad(line: int, code: str) -> str:
    return "\n" * (line - 1) + code + "\n"


def _assigned(
    ctx: _Context, loop: ast.Assign, before: str, after: str, chunk: int | None
) -> MapSpec:
    target = loop.targets[0]
    assert isinstance(target, ast.Name)
    value = loop.value
    finish_value = ACC
    if isinstance(value, _COMPS):
        form = _FORM_OF[type(value)]
        gens = value.generators
        if any(g.is_async for g in gens):
            raise ctx.refuse(loop.lineno, "an async comprehension cannot be distributed")
        iterable = ast.unparse(gens[0].iter)
        first = ast.comprehension(
            target=gens[0].target,
            iter=ast.List(elts=[ast.Name(ITEM, ast.Load())], ctx=ast.Load()),
            ifs=gens[0].ifs,
            is_async=0,
        )
        elt = (
            ast.Tuple(elts=[value.key, value.value], ctx=ast.Load())
            if isinstance(value, ast.DictComp)
            else value.elt
        )
        collect: ast.expr = ast.ListComp(elt=elt, generators=[first, *gens[1:]])
        method = "extend"
        if form in ("set", "dict"):
            finish_value = f"{form}({ACC})"
    else:
        inner = _list_map(value)
        assert inner is not None
        form = "map"
        function, iterables = inner.args[0], inner.args[1:]
        if not _plain_function(function):
            raise ctx.refuse(
                loop.lineno,
                f"map's function {ast.unparse(function)!r} is an expression evaluated once; "
                "name the function (f = ...) before the map",
            )
        iterable = (
            ast.unparse(iterables[0])
            if len(iterables) == 1
            else f"zip({', '.join(ast.unparse(i) for i in iterables)})"
        )
        item: ast.expr = ast.Name(ITEM, ast.Load())
        args: list[ast.expr] = [item] if len(iterables) == 1 else [ast.Starred(item, ast.Load())]
        collect = ast.Call(func=function, args=args, keywords=[])
        method = "append"
    call = ast.Expr(
        ast.Call(
            func=ast.Attribute(ast.Name(ACC, ast.Load()), method, ast.Load()),
            args=[collect],
            keywords=[],
        )
    )
    element = ast.unparse(ast.fix_missing_locations(ast.Module(body=[call], type_ignores=[])))
    _check_comprehension_calls(ctx, value, loop.lineno)
    for node in ast.walk(value):
        if isinstance(node, ast.NamedExpr):
            raise ctx.refuse(
                loop.lineno,
                f"{ast.unparse(node.target)} := binds a name every iteration reads and writes",
                ast.unparse(node.target),
            )
    reads = _check_element(
        ctx, _pad(loop.lineno, element), accumulators={ACC}, carry=set(), fresh={}
    )
    return MapSpec(
        cell=ctx.cell,
        line=loop.lineno,
        form=form,
        iterable=iterable,
        element=_pad(loop.lineno, element),
        before=before + f"{ACC} = []\n",
        finish=_pad(loop.lineno, f"{target.id} = {finish_value}\ndel {ACC}"),
        after=after,
        accumulators=[ACC],
        reads=sorted(reads),
        result=target.id,
        chunk=chunk,
    )


def _check_comprehension_calls(ctx: _Context, value: ast.expr, line: int) -> None:
    """A method call inside a comprehension that may change its object (the cell analysis
    counts those only outside comprehensions)."""
    local = {
        n
        for g in ast.walk(value)
        if isinstance(g, ast.comprehension)
        for n in _target_names(g.target)
    }
    for node in ast.walk(value):
        if not (
            isinstance(node, ast.Call)
            and isinstance(node.func, ast.Attribute)
            and isinstance(node.func.value, ast.Name)
        ):
            continue
        name, method = node.func.value.id, node.func.attr
        if name in ctx.imports or name in ctx.summaries or is_pure_method(method):
            continue
        what = "an item of the collection" if name in local else "state every iteration shares"
        raise ctx.refuse(
            line,
            f"{name}.{method}() may change {name!r} ({what}); iterations running apart would "
            "lose the change",
            name,
        )


def _plain_function(node: ast.expr) -> bool:
    if isinstance(node, ast.Lambda):
        return True
    while isinstance(node, ast.Attribute):
        node = node.value
    return isinstance(node, ast.Name)


def _for_loop(
    ctx: _Context,
    loop: ast.For,
    lines: list[str],
    before: str,
    after: str,
    chunk: int | None,
) -> MapSpec:
    if loop.orelse:
        raise ctx.refuse(
            loop.orelse[0].lineno, "a for loop's else clause depends on how the loop ended"
        )
    _check_body_statements(ctx, loop.body)
    target = ast.unparse(loop.target)
    header_end = loop.body[0].lineno - 1
    if header_end >= loop.lineno:
        body_text = "".join(lines[loop.body[0].lineno - 1 : loop.end_lineno])
        indent = min(
            len(line) - len(line.lstrip())
            for line in body_text.splitlines()
            if line.strip() and not line.lstrip().startswith("#")
        )
        element = "\n" * (header_end - 1) + f"for {target} in [{ITEM}]:\n"
        element += "".join(
            (" " * 4 + line[indent:]) if line.strip() else "\n"
            for line in body_text.splitlines(keepends=True)
        )
    else:
        node = ast.For(
            target=loop.target,
            iter=ast.List(elts=[ast.Name(ITEM, ast.Load())], ctx=ast.Load()),
            body=loop.body,
            orelse=[],
        )
        element = _pad(loop.lineno, ast.unparse(ast.fix_missing_locations(node)))
    accumulators = _accumulators(ctx, loop)
    carry = _bound(loop)
    for name in sorted(accumulators & carry):
        raise ctx.refuse(
            loop.lineno,
            f"{name!r} is both assigned and collected into inside the loop",
            name,
        )
    fresh = _fresh_bindings(loop.body)
    reads = _check_element(ctx, element, accumulators=accumulators, carry=carry, fresh=fresh)
    targets = _target_names(loop.target)
    return MapSpec(
        cell=ctx.cell,
        line=loop.lineno,
        form="for",
        iterable=ast.unparse(loop.iter),
        element=element,
        before=before,
        after=after,
        accumulators=sorted(accumulators),
        carry=sorted(carry - targets),
        target=target,
        reads=sorted(reads),
        chunk=chunk,
    )


def _check_body_statements(ctx: _Context, body: list[ast.stmt]) -> None:
    """What a loop body may not hold, whatever it computes."""
    for node in _walk_loop_level(body):
        if isinstance(node, ast.Break):
            raise ctx.refuse(
                node.lineno,
                "break ends the loop on an iteration's result: iterations depend "
                "on the ones before them",
            )
        if isinstance(node, (ast.Global, ast.Nonlocal)):
            raise ctx.refuse(node.lineno, "global/nonlocal inside the loop")
    for node in ast.walk(ast.Module(body=body, type_ignores=[])):
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
            raise ctx.refuse(
                node.lineno,
                f"the loop defines {node.name!r}; define it before the loop",
                node.name,
            )
        if isinstance(node, (ast.Import, ast.ImportFrom)):
            raise ctx.refuse(node.lineno, "the loop imports; import before the loop")
        if isinstance(node, (ast.Yield, ast.YieldFrom, ast.Await)):
            raise ctx.refuse(node.lineno, "yield/await inside the loop")
        if isinstance(node, ast.NamedExpr):
            raise ctx.refuse(
                node.lineno,
                f"{ast.unparse(node.target)} := binds a name every iteration reads and writes",
                ast.unparse(node.target),
            )


def _walk_loop_level(body: list[ast.stmt]) -> Iterable[ast.AST]:
    """The nodes of ``body`` outside nested loops and functions (where ``break`` ends ours)."""
    nested = (ast.For, ast.AsyncFor, ast.While, ast.FunctionDef, ast.Lambda)
    stack: list[ast.AST] = [n for n in body if not isinstance(n, nested)]
    while stack:
        node = stack.pop()
        yield node
        stack.extend(c for c in ast.iter_child_nodes(node) if not isinstance(c, nested))


def _accumulators(ctx: _Context, loop: ast.For) -> set[str]:
    """Names the body collects into (``acc.append(..)``, ``acc.add(..)``, ``acc.extend(..)``
    as statements, ``acc[k] = v``); any other use of them inside the loop is refused."""
    receivers: set[int] = set()
    names: set[str] = set()
    for node in ast.walk(ast.Module(body=loop.body, type_ignores=[])):
        if (
            isinstance(node, ast.Expr)
            and isinstance(node.value, ast.Call)
            and isinstance(node.value.func, ast.Attribute)
            and node.value.func.attr in ACC_METHODS
            and isinstance(node.value.func.value, ast.Name)
            and len(node.value.args) == 1
            and not node.value.keywords
        ):
            receivers.add(id(node.value.func.value))
            names.add(node.value.func.value.id)
        elif (
            isinstance(node, ast.Assign)
            and len(node.targets) == 1
            and isinstance(node.targets[0], ast.Subscript)
            and isinstance(node.targets[0].value, ast.Name)
        ):
            receivers.add(id(node.targets[0].value))
            names.add(node.targets[0].value.id)
    bound = _bound(loop)
    names -= bound
    for node in ast.walk(ast.Module(body=loop.body, type_ignores=[])):
        if isinstance(node, ast.Name) and node.id in names and id(node) not in receivers:
            raise ctx.refuse(
                node.lineno,
                f"the loop reads {node.id!r}, which it also collects into: each iteration "
                "would depend on the ones before it",
                node.id,
            )
    return names


def _bound(loop: ast.For) -> set[str]:
    """Module-level names the loop binds (its target and the body's assignments)."""
    names = _target_names(loop.target)
    for node in ast.walk(ast.Module(body=loop.body, type_ignores=[])):
        if isinstance(node, ast.Name) and isinstance(node.ctx, (ast.Store, ast.Del)):
            names.add(node.id)
        elif isinstance(node, ast.ExceptHandler) and node.name:
            names.add(node.name)
    return names - _comprehension_names(loop.body)


def _comprehension_names(body: list[ast.stmt]) -> set[str]:
    """Names bound only as comprehension targets (local to the comprehension)."""
    inside: set[str] = set()
    outside: set[str] = set()
    for node in ast.walk(ast.Module(body=body, type_ignores=[])):
        if isinstance(node, ast.comprehension):
            inside |= _target_names(node.target)
    for node in ast.walk(ast.Module(body=body, type_ignores=[])):
        if isinstance(node, (ast.Assign, ast.AugAssign, ast.AnnAssign, ast.For, ast.With)):
            for sub in ast.walk(node):
                if isinstance(sub, ast.Name) and isinstance(sub.ctx, ast.Store):
                    outside.add(sub.id)
    return inside - outside


def _target_names(target: ast.expr) -> set[str]:
    return {n.id for n in ast.walk(target) if isinstance(n, ast.Name)}


def _fresh_bindings(body: list[ast.stmt]) -> dict[str, bool]:
    """Per name the body assigns: whether every assignment makes a new object."""
    fresh: dict[str, bool] = {}
    for node in ast.walk(ast.Module(body=body, type_ignores=[])):
        if isinstance(node, ast.Assign):
            new = isinstance(node.value, _FRESH) or (
                isinstance(node.value, ast.Call)
                and isinstance(node.value.func, ast.Name)
                and node.value.func.id in _FRESH_CALLS
            )
            for target in node.targets:
                if isinstance(target, ast.Name):
                    fresh[target.id] = fresh.get(target.id, True) and new
        elif isinstance(node, (ast.For, ast.With, ast.AnnAssign)):
            for sub in ast.walk(node):
                if isinstance(sub, ast.Name) and isinstance(sub.ctx, ast.Store):
                    fresh[sub.id] = False
    return fresh


def _check_element(
    ctx: _Context,
    element: str,
    *,
    accumulators: set[str],
    carry: set[str],
    fresh: Mapping[str, bool],
) -> set[str]:
    """Refuse what the element code does that would differ run apart; returns the shared
    names it reads (the runtime checks them unchanged)."""
    blank = len(element) - len(element.lstrip("\n"))
    analysis = analyze_cell(ctx.path, ctx.cell, "pass\n" * blank + element[blank:])
    reads: set[str] = set()
    for st in analysis.statements:
        if st.opaque:
            at = re.search(r", line (\d+)$", st.opaque)
            raise ctx.refuse(
                int(at.group(1)) if at else st.line,
                f"the loop {st.opaque.rsplit(', line', 1)[0]}: the iterations' effects could "
                "not be ordered",
            )
        if st.file_writes:
            path = sorted(st.file_writes)[0]
            lines = [n for n, text in enumerate(element.splitlines(), 1) if path in text]
            raise ctx.refuse(
                lines[0] if lines else st.line,
                f"the loop writes the file {path!r}: iterations running apart would race",
                path,
            )
        if st.setup_root:
            raise ctx.refuse(st.line, f"the loop configures {st.setup_root!r}")
        for e in st.events:
            _check_event(ctx, e, accumulators, carry, fresh, reads)
    return _through_functions(ctx, reads) - carry - accumulators - {ITEM, ACC} - BUILTIN_NAMES


def _through_functions(ctx: _Context, reads: set[str]) -> set[str]:
    """``reads`` with what the notebook functions among them read when called, transitively
    (another replica must be given those values too)."""
    found, todo = set(reads), list(reads)
    while todo:
        summary = ctx.summaries.get(todo.pop())
        for name in summary.reads - found if summary is not None else ():
            found.add(name)
            todo.append(name)
    return found


def _check_event(
    ctx: _Context,
    e: Event,
    accumulators: set[str],
    carry: set[str],
    fresh: Mapping[str, bool],
    reads: set[str],
) -> None:
    if e.kind == "read":
        if e.name in carry:
            raise ctx.refuse(
                e.line,
                f"the loop reads {e.name!r} before assigning it: a value carried from one "
                "iteration to the next",
                e.name,
            )
        reads.add(e.name)
    elif e.kind == "def" and e.name not in carry:
        raise ctx.refuse(
            e.line, f"the loop assigns {e.name!r}, which outlives the iteration", e.name
        )
    elif e.kind == "del":
        raise ctx.refuse(e.line, f"the loop deletes {e.name!r}", e.name)
    elif e.kind == "mutate" and e.name not in accumulators:
        if (e.name in carry and fresh.get(e.name, False)) or e.name in ctx.imports:
            return
        what = (
            "an item of the collection, which the notebook's loop would change in place"
            if e.name in carry
            else "state every iteration shares"
        )
        raise ctx.refuse(
            e.line,
            f"the loop changes {e.name!r} ({what}); iterations running apart would lose the change",
            e.name,
        )
    elif e.kind == "call":
        _check_call(ctx, e.name, e.keywords, e.line, carry, accumulators | {ACC})


def _check_call(
    ctx: _Context,
    callee: str,
    keywords: tuple[str, ...],
    line: int,
    carry: set[str],
    collected: set[str],
) -> None:
    """Refuse a call that draws, changes shared state, or reads what the loop carries
    (``collected``: the lists the iterations' results go to, whose methods are the lists')."""
    if random_effect(callee, keywords, ctx.imports) == DRAW:
        raise ctx.refuse(
            line,
            f"{callee}() draws from the global random generator: iterations running apart "
            "cannot continue the notebook's random stream",
            callee,
        )
    # through the notebook functions it calls too (``batch()`` calling ``eval(x, ENV)``), and
    # any notebook class's method ``m`` for ``obj.m()``
    methods = None if callee.partition(".")[0] in collected else ctx.methods
    effects = call_effects(tuple(callee.split(".")), ctx.summaries.get, methods)
    written = effects.globals - set(ctx.imports) - set(ctx.summaries) if effects else set()
    if written:
        name = sorted(written)[0]
        raise ctx.refuse(
            line, f"{callee}() changes the global {name!r}, which every iteration shares", name
        )
    if effects is not None and effects.params:
        raise ctx.refuse(
            line,
            f"{callee}() changes its arguments; iterations running apart would lose the change",
            callee,
        )
    summary = ctx.summaries.get(callee)
    if summary is None:
        return
    carried = sorted(summary.reads & carry)
    if carried:
        raise ctx.refuse(
            line,
            f"{callee}() reads {carried[0]!r}, which the loop assigns: a value carried from one "
            "iteration to the next",
            carried[0],
        )
    for inner, inner_keywords in sorted(summary.calls):
        if random_effect(inner, inner_keywords, ctx.imports) == DRAW:
            raise ctx.refuse(
                line,
                f"{callee}() calls {inner}(), which draws from the global random generator",
                callee,
            )
