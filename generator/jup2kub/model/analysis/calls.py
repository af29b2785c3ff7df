"""Changes made through the notebook's own functions, followed over its call graph.

A function's summary says which of its parameters its body changes in place and which calls it
makes, with the parameters and module-level names each argument may hold. ``call_effects``
closes that over the functions a call may reach (a fixpoint, so recursion ends): ``batch(p)``
calling ``eval(parse(p), ENV)``, where ``eval`` assigns into its ``env``, changes ``ENV``. Callees
are looked up when the call happens, so the latest definition before it counts. A call through
anything else (a callable passed in, a method of an object of unknown class) is not followed.
"""

from __future__ import annotations

import ast
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass

from jup2kub.model.analysis.aliases import target_names
from jup2kub.model.analysis.events import CallSite, Summary
from jup2kub.model.analysis.knowledge import ARGUMENT_RETURNING_FUNCTIONS
from jup2kub.model.analysis.scopes import body_calls, class_free, function_effects, function_scope

#: a module-level name -> its summary, if it is a notebook function or class at that point
Lookup = Callable[[str], Summary | None]
FunctionNode = ast.FunctionDef | ast.AsyncFunctionDef
_SCOPES = (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)
#: methods whose result is (part of) the receiver: ``for k, v in env.items()``
_VIEW_METHODS = frozenset({"items", "values", "get", "setdefault", "__getitem__"})


# ---- one function's summary ------------------------------------------------------------------


def function_summary(
    node: FunctionNode, path: tuple[str, ...], owner: str | None = None
) -> Summary:
    """The summary of ``def`` ``node`` at ``path`` (``owner``: the class it is a method of)."""
    reads, writes, _ = function_effects(node)
    scope, local = function_scope(node)
    args = node.args
    positional = [a.arg for a in [*args.posonlyargs, *args.args]]
    params = (*positional, *(a.arg for a in args.kwonlyargs))
    named = set(params) | {a.arg for a in (args.vararg, args.kwarg) if a is not None}
    holders = _Holders(node, local, named)
    changed = set().union(*(holders.origins(n) for n in scope.mutated))
    mutated = (named & (scope.mutated | scope.augmented)) | (named & changed)
    inner = tuple(
        (d.name, function_summary(d, (*path, d.name))) for d in _nested_functions(node.body)
    )
    nested = {name for name, _ in inner}
    self_name = positional[0] if owner is not None and positional else None
    sites = tuple(_sites(node.body, holders, path, nested, owner, self_name))
    return Summary(
        frozenset(reads),
        frozenset(writes | (changed - local)),
        bool(mutated),
        body_calls(node),
        params=params,
        positional=len(positional),
        star=args.vararg.arg if args.vararg else None,
        starstar=args.kwarg.arg if args.kwarg else None,
        mutated_params=frozenset(mutated),
        local_names=frozenset(local),
        sites=sites,
        inner=inner,
    )


def class_summary(node: ast.ClassDef) -> Summary:
    """A class's summary: what its methods read and write, and the methods themselves."""
    _, method_reads, writes = class_free(node)
    methods = tuple(
        (d.name, function_summary(d, (node.name, d.name), owner=node.name))
        for d in node.body
        if isinstance(d, (ast.FunctionDef, ast.AsyncFunctionDef))
    )
    return Summary(
        frozenset(method_reads),
        frozenset(writes),
        calls=body_calls(node),
        kind="class",
        inner=methods,
    )


class _Holders:
    """The body's local names traced back to the parameters and module-level names whose
    objects (or parts of them) they may hold: ``e = env``, ``for d in frames``, ``x = d[k]``."""

    def __init__(self, node: FunctionNode, local: set[str], params: set[str]) -> None:
        self.local = local
        self.params = params
        self.held: dict[str, set[str]] = {}
        for n in _walk_scope(node.body):
            if isinstance(n, (ast.Assign, ast.AnnAssign, ast.NamedExpr)) and n.value is not None:
                targets = n.targets if isinstance(n, ast.Assign) else [n.target]
                self._bind(targets, n.value)
            elif isinstance(n, (ast.For, ast.AsyncFor)):
                self._bind([n.target], n.iter)
            elif isinstance(n, (ast.With, ast.AsyncWith)):
                for item in n.items:
                    if item.optional_vars is not None:
                        self._bind([item.optional_vars], item.context_expr)

    def _bind(self, targets: Iterable[ast.expr], value: ast.expr) -> None:
        sources = held_by(value)
        for target in targets:
            for name in target_names(target):
                self.held.setdefault(name, set()).update(sources)

    def origins(self, name: str) -> set[str]:
        """The parameters and module-level names ``name``'s object may be (part of)."""
        found: set[str] = set()
        todo, seen = [name], set()
        while todo:
            current = todo.pop()
            if current in seen:
                continue
            seen.add(current)
            if current not in self.local or current in self.params:
                found.add(current)
            todo.extend(self.held.get(current, ()))
        return found

    def of(self, node: ast.expr) -> frozenset[str]:
        return frozenset(set().union(*(self.origins(n) for n in held_by(node))))


def held_by(node: ast.expr) -> set[str]:
    """Variables whose objects the value of ``node`` may be or contain, by plain access only
    (``d``, ``d[k]``, ``d.attr``, ``[a, b]``, ``d.items()``, ``enumerate(d)``); the result of
    any other call is a new object."""
    if isinstance(node, ast.Name):
        return {node.id}
    if isinstance(node, (ast.Attribute, ast.Subscript, ast.Starred)):
        return held_by(node.value)
    if isinstance(node, (ast.Tuple, ast.List, ast.Set)):
        return set().union(*(held_by(e) for e in node.elts))
    if isinstance(node, ast.Dict):
        return set().union(*(held_by(v) for v in node.values))
    if isinstance(node, ast.IfExp):
        return held_by(node.body) | held_by(node.orelse)
    if isinstance(node, ast.BoolOp):
        return set().union(*(held_by(v) for v in node.values))
    if isinstance(node, ast.NamedExpr):
        return held_by(node.value)
    if isinstance(node, ast.Call):
        func = node.func
        if isinstance(func, ast.Attribute) and func.attr in _VIEW_METHODS:
            return held_by(func.value)
        if isinstance(func, ast.Name) and func.id in ARGUMENT_RETURNING_FUNCTIONS:
            # ``ChainMap(local, env)``, ``enumerate(frames)``: the elements are the arguments'
            return set().union(
                *(held_by(a) for a in [*node.args, *(k.value for k in node.keywords)])
            )
    return set()


def _walk_scope(stmts: Iterable[ast.AST]) -> Iterator[ast.AST]:
    """The nodes of a body; nested functions, lambdas and classes without their insides."""
    todo = list(stmts)
    while todo:
        node = todo.pop()
        yield node
        if not isinstance(node, (*_SCOPES, ast.Lambda)):
            todo.extend(ast.iter_child_nodes(node))


def _nested_functions(stmts: Iterable[ast.stmt]) -> Iterator[FunctionNode]:
    for node in _walk_scope(stmts):
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
            yield node


def _sites(
    body: list[ast.stmt],
    holders: _Holders,
    path: tuple[str, ...],
    nested: set[str],
    owner: str | None,
    self_name: str | None,
) -> Iterator[CallSite]:
    for node in _walk_scope(body):
        if not isinstance(node, ast.Call):
            continue
        func = node.func
        receiver: frozenset[str] | None = None
        if isinstance(func, ast.Name) and func.id in nested:
            callee = (*path, func.id)
        elif isinstance(func, ast.Name) and func.id not in holders.local:
            callee = (func.id,)
        elif isinstance(func, ast.Attribute) and isinstance(func.value, ast.Name):
            if owner is not None and func.value.id == self_name:
                callee, receiver = (owner, func.attr), frozenset({self_name})
            elif func.value.id not in holders.local:
                callee = (func.value.id, func.attr)  # ``Env.find(..)``, ``helpers.fill(..)``
            else:
                continue
        else:
            continue
        yield site_of(node, callee, holders.of, receiver)


def site_of(
    node: ast.Call,
    callee: tuple[str, ...],
    names: Callable[[ast.expr], frozenset[str]],
    receiver: frozenset[str] | None = None,
) -> CallSite:
    """The call ``node`` as a site: ``names`` says which variables an argument may hold."""
    spread: set[str] = set()
    args: list[frozenset[str]] = []
    for a in node.args:
        if isinstance(a, ast.Starred):
            spread |= names(a.value)
        else:
            args.append(names(a))
    keywords = []
    for k in node.keywords:
        if k.arg is None:
            spread |= names(k.value)
        else:
            keywords.append((k.arg, names(k.value)))
    return CallSite(callee, tuple(args), tuple(keywords), frozenset(spread), receiver)


# ---- the fixpoint over the call graph ---------------------------------------------------------


@dataclass(frozen=True)
class CallEffects:
    """What a call may change: the callee's parameters (their objects) and module-level names."""

    params: frozenset[str]
    globals: frozenset[str]


def resolve(path: tuple[str, ...], lookup: Lookup) -> Summary | None:
    """The summary at ``path``: a notebook function or class by name, then its methods or
    nested functions."""
    summary = lookup(path[0])
    for part in path[1:]:
        if summary is None:
            return None
        summary = dict(summary.inner).get(part)
    return summary


def call_effects(path: tuple[str, ...], lookup: Lookup) -> CallEffects | None:
    """What calling ``path`` may change, through every notebook function it may reach; a
    class's effects are those of any of its methods (constructor included). None: not a
    notebook function or class."""
    summary = resolve(path, lookup)
    if summary is None:
        return None
    graph = _CallGraph(lookup)
    roots = [(*path, m) for m, _ in summary.inner] if summary.kind == "class" else [path]
    for root in roots:
        graph.reach(root)
    graph.solve()
    params: set[str] = set()
    written: set[str] = set()
    for root in roots:
        if root in graph.state:
            p, w = graph.state[root]
            params |= p
            written |= w
    if summary.kind == "class":
        init = graph.state.get((*path, "__init__"))
        params = set(init[0]) if init else set()
    return CallEffects(frozenset(params), frozenset(written))


def changed_by(site: CallSite, lookup: Lookup) -> set[str]:
    """The caller's variables whose objects the call at ``site`` may change."""
    target = _callee(site, lookup)
    if target is None:
        return set()
    path, summary, bound = target
    effects = call_effects(path, lookup)
    return _arguments(site, summary, effects.params, bound) if effects else set()


def _callee(site: CallSite, lookup: Lookup) -> tuple[tuple[str, ...], Summary, bool] | None:
    """(path, summary, whether the first parameter is bound) of the function ``site`` calls; a
    class's constructor for a class."""
    summary = resolve(site.callee, lookup)
    if summary is None:
        return None
    if summary.kind == "class":
        init = dict(summary.inner).get("__init__")
        return ((*site.callee, "__init__"), init, True) if init is not None else None
    return site.callee, summary, site.receiver is not None


def _arguments(site: CallSite, callee: Summary, changed: Iterable[str], bound: bool) -> set[str]:
    """The variables given at ``site`` to the parameters in ``changed``."""
    changed = set(changed)
    positional = list(callee.params[: callee.positional])
    found: set[str] = set()
    first = positional.pop(0) if bound and positional else None
    if first is not None and first in changed:
        found |= site.receiver or set()
    for i, arg in enumerate(site.args):
        param = positional[i] if i < len(positional) else callee.star
        if param in changed:
            found |= arg
    for keyword, arg in site.keywords:
        param = keyword if keyword in callee.params else callee.starstar
        if param in changed:
            found |= arg
    if changed:
        found |= site.spread
    return found


class _CallGraph:
    """The notebook functions reachable from some calls, and per function what a call of it
    may change, grown until nothing changes (a fixpoint)."""

    def __init__(self, lookup: Lookup) -> None:
        self.lookup = lookup
        self.summaries: dict[tuple[str, ...], Summary] = {}
        #: per function: (parameters it may change, module-level names it may change)
        self.state: dict[tuple[str, ...], tuple[set[str], set[str]]] = {}

    def reach(self, root: tuple[str, ...]) -> None:
        todo = [root]
        while todo:
            path = todo.pop()
            if path in self.summaries:
                continue
            summary = resolve(path, self.lookup)
            if summary is None or summary.kind == "class":
                continue
            self.summaries[path] = summary
            self.state[path] = (set(summary.mutated_params), set(summary.writes))
            for site in summary.sites:
                target = _callee(site, self.lookup)
                if target is not None:
                    todo.append(target[0])

    def solve(self) -> None:
        changed = True
        while changed:
            changed = False
            for path, summary in self.summaries.items():
                params, written = self.state[path]
                size = len(params) + len(written)
                for site in summary.sites:
                    self._through(site, path, params, written)
                changed |= len(params) + len(written) != size

    def _through(
        self, site: CallSite, caller_path: tuple[str, ...], params: set[str], written: set[str]
    ) -> None:
        """Add to the caller's (params, written) what the call at ``site`` may change."""
        target = _callee(site, self.lookup)
        if target is None or target[0] not in self.state:
            return
        path, callee, bound = target
        caller = self.summaries[caller_path]
        callee_params, callee_written = self.state[path]
        named = set(caller.params) | {n for n in (caller.star, caller.starstar) if n}
        for name in _arguments(site, callee, callee_params, bound):
            (params if name in named else written).add(name)
        nested = path[:-1] == caller_path
        for name in callee_written:
            if nested and name in named:  # a nested function changing the caller's parameter
                params.add(name)
            elif not (nested and name in caller.local_names):
                written.add(name)
