"""Changes made through the notebook's own functions, followed over its call graph.

A function's summary says which of its parameters its body changes in place and which calls it
makes, with the parameters and module-level names each argument may hold. ``call_effects``
closes that over the functions a call may reach (a fixpoint, so recursion ends): ``batch(p)``
calling ``eval(parse(p), ENV)``, where ``eval`` assigns into its ``env``, changes ``ENV``. Callees
are looked up when the call happens, so the latest definition before it counts; ``obj.m(..)``
on an object of unknown class may be any notebook class's method ``m``. A call through anything
else (a callable passed in or stored in a container) is not followed: what it is given stays a
read-only input, which the runtime guard checks.
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
#: (receiver as written, method) -> the notebook classes whose method ``obj.method`` may be
Methods = Callable[[str, str], Iterable[str]]
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
        if isinstance(func, ast.Name) and func.id in nested:
            yield site_of(node, (*path, func.id), holders.of)
        elif isinstance(func, ast.Name) and func.id not in holders.local:
            yield site_of(node, (func.id,), holders.of)
        elif isinstance(func, ast.Attribute) and isinstance(func.value, ast.Name):
            name = func.value.id
            receiver = holders.of(func.value)
            if owner is not None and name == self_name:
                yield site_of(node, (owner, func.attr), holders.of, receiver, bound=True)
            elif name not in holders.local:  # ``Env.find(..)``, ``machine.extend(..)``
                yield site_of(node, (name, func.attr), holders.of, receiver)
            elif receiver:  # a method of a parameter (or what it holds)
                yield site_of(node, ("", func.attr), holders.of, receiver)


def site_of(
    node: ast.Call,
    callee: tuple[str, ...],
    names: Callable[[ast.expr], frozenset[str]],
    receiver: frozenset[str] | None = None,
    *,
    bound: bool = False,
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
    return CallSite(callee, tuple(args), tuple(keywords), frozenset(spread), receiver, bound)


# ---- the fixpoint over the call graph ---------------------------------------------------------


@dataclass(frozen=True)
class CallEffects:
    """What a call may change: the callee's parameters (their objects; not the ``self`` of a
    method called on an object) and module-level names."""

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


def call_effects(
    path: tuple[str, ...], lookup: Lookup, methods: Methods | None = None
) -> CallEffects | None:
    """What calling ``path`` may change, through every notebook function it may reach. For a
    class: what any of its methods may change, and the constructor's parameters; for
    ``obj.m`` (an object of unknown class): any notebook class's method ``m``, as ``methods``
    tells. None: none of those."""
    summary = resolve(path, lookup)
    # each function the call may run, and which of its parameters are the call's arguments
    # (all, those after ``self``, or none: a class's other methods run later, on the object)
    roots: list[tuple[tuple[str, ...], slice | None]]
    if summary is not None and summary.kind == "class":
        roots = [
            ((*path, m), slice(1, None) if m == "__init__" else None) for m, _ in summary.inner
        ]
    elif summary is not None:
        roots = [(path, slice(None))]
    elif methods is not None and len(path) == 2:
        roots = [((cls, path[1]), slice(1, None)) for cls in sorted(methods(*path))]
    else:
        return None
    graph = _CallGraph(lookup, methods)
    for root, _ in roots:
        graph.reach(root)
    graph.solve()
    params: set[str] = set()
    written: set[str] = set()
    for root, arguments in roots:
        if root in graph.state:
            changed, changed_globals = graph.state[root]
            written |= changed_globals
            if arguments is not None:
                params |= changed & _parameters(graph.summaries[root], arguments)
    return CallEffects(frozenset(params), frozenset(written))


def _parameters(summary: Summary, arguments: slice) -> set[str]:
    """The parameters in ``arguments`` (of the named ones), ``*args`` and ``**kwargs``."""
    variadic = {n for n in (summary.star, summary.starstar) if n}
    return set(summary.params[arguments]) | variadic


def changed_by(site: CallSite, lookup: Lookup, methods: Methods | None = None) -> set[str]:
    """The caller's variables whose objects the call at ``site`` may change; for a method of
    an object of unknown class, with the module-level names the method changes (no use of the
    class's name in the step counts them)."""
    targets = _targets(site, lookup, methods)
    graph = _CallGraph(lookup, methods)
    for path, _, _ in targets:
        graph.reach(path)
    graph.solve()
    unknown = resolve(site.callee, lookup) is None
    found: set[str] = set()
    for path, summary, bound in targets:
        params, written = graph.state.get(path, (set(), set()))
        found |= _arguments(site, summary, params, bound)
        if unknown:
            found |= written
    return found


def _targets(
    site: CallSite, lookup: Lookup, methods: Methods | None
) -> list[tuple[tuple[str, ...], Summary, bool]]:
    """(path, summary, whether the first parameter is bound) of each function ``site`` may
    call: the constructor for a class; for ``obj.m(..)`` on an object of unknown class, the
    notebook classes' methods ``m``."""
    summary = resolve(site.callee, lookup)
    if summary is not None and summary.kind == "class":
        init = dict(summary.inner).get("__init__")
        return [((*site.callee, "__init__"), init, True)] if init is not None else []
    if summary is not None:
        return [(site.callee, summary, site.bound)]
    if methods is None or site.receiver is None or len(site.callee) != 2:
        return []
    head, method = site.callee
    found: list[tuple[tuple[str, ...], Summary, bool]] = []
    for cls in sorted(methods(head, method)):
        target = resolve((cls, method), lookup)
        if target is not None:
            found.append(((cls, method), target, True))
    return found


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

    def __init__(self, lookup: Lookup, methods: Methods | None) -> None:
        self.lookup = lookup
        self.methods = methods
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
                todo.extend(t[0] for t in _targets(site, self.lookup, self.methods))

    def solve(self) -> None:
        changed = True
        while changed:
            changed = False
            for path, summary in self.summaries.items():
                params, written = self.state[path]
                size = len(params) + len(written)
                for site in summary.sites:
                    for target in _targets(site, self.lookup, self.methods):
                        self._through(site, target, path, params, written)
                changed |= len(params) + len(written) != size

    def _through(
        self,
        site: CallSite,
        target: tuple[tuple[str, ...], Summary, bool],
        caller_path: tuple[str, ...],
        params: set[str],
        written: set[str],
    ) -> None:
        """Add to the caller's (params, written) what the call at ``site`` may change."""
        path, callee, bound = target
        if path not in self.state:
            return
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
