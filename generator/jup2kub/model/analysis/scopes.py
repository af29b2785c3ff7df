"""Python's scoping rules for the analysis: the free names of functions, classes, lambdas and
comprehensions, and what a call or a value is."""

from __future__ import annotations

import ast

from jup2kub.model.analysis.aliases import dotted_name
from jup2kub.model.analysis.knowledge import (
    DATABASE_MODULES,
    MUTATING_FUNCTIONS,
    MUTATING_METHODS,
    PURE_METHODS,
    PURE_PREFIXES,
    UNSHIPPABLE_CALLS,
)

#: the four comprehension kinds, each a scope of its own
Comprehension = ast.ListComp | ast.SetComp | ast.GeneratorExp | ast.DictComp


class ComprehensionVisitor(ast.NodeVisitor):
    """A visitor that treats the four comprehension kinds alike, through ``_comprehension``."""

    def _comprehension(self, node: Comprehension) -> None:
        raise NotImplementedError

    def visit_ListComp(self, node: ast.ListComp) -> None:
        self._comprehension(node)

    def visit_SetComp(self, node: ast.SetComp) -> None:
        self._comprehension(node)

    def visit_GeneratorExp(self, node: ast.GeneratorExp) -> None:
        self._comprehension(node)

    def visit_DictComp(self, node: ast.DictComp) -> None:
        self._comprehension(node)


class Scope(ComprehensionVisitor):
    """Collects the names a nested scope (function, lambda, class, comprehension) binds and uses."""

    def __init__(self) -> None:
        self.loads: set[str] = set()
        self.stores: set[str] = set()
        self.globals: set[str] = set()
        self.nonlocals: set[str] = set()
        self.walrus: set[str] = set()
        self.nested_free: set[str] = set()
        self.global_writes: set[str] = set()
        #: names whose object the body may change (``x.append(..)``, ``x[k] = ..``)
        self.mutated: set[str] = set()
        #: names the body augments (``x += ..``): changed in place if the object is mutable
        self.augmented: set[str] = set()

    def visit_Name(self, node: ast.Name) -> None:
        (self.loads if isinstance(node.ctx, ast.Load) else self.stores).add(node.id)

    def _store_through(self, node: ast.Attribute | ast.Subscript) -> None:
        if isinstance(node.ctx, (ast.Store, ast.Del)):
            root = root_name(node)
            if root:
                self.mutated.add(root)
        self.generic_visit(node)

    def visit_Attribute(self, node: ast.Attribute) -> None:
        self._store_through(node)

    def visit_Subscript(self, node: ast.Subscript) -> None:
        self._store_through(node)

    def visit_Call(self, node: ast.Call) -> None:
        func = node.func
        if isinstance(func, ast.Attribute):
            root = root_name(func.value)
            direct = isinstance(func.value, ast.Name)
            if root and (func.attr in MUTATING_METHODS or (direct and not is_pure(func.attr))):
                self.mutated.add(root)
        if call_name(func) in MUTATING_FUNCTIONS and node.args:
            root = root_name(node.args[0])
            if root:
                self.mutated.add(root)
        self.generic_visit(node)

    def visit_AugAssign(self, node: ast.AugAssign) -> None:
        if isinstance(node.target, ast.Name):
            self.loads.add(node.target.id)
            self.augmented.add(node.target.id)  # ``lst += [x]`` extends the list in place
        self.generic_visit(node)

    def visit_Global(self, node: ast.Global) -> None:
        self.globals.update(node.names)

    def visit_Nonlocal(self, node: ast.Nonlocal) -> None:
        self.nonlocals.update(node.names)

    def visit_NamedExpr(self, node: ast.NamedExpr) -> None:
        self.visit(node.value)
        if isinstance(node.target, ast.Name):
            self.stores.add(node.target.id)
            self.walrus.add(node.target.id)

    def _nested(self, reads: set[str], writes: set[str]) -> None:
        self.nested_free |= reads
        self.global_writes |= writes
        self.mutated |= writes

    def visit_FunctionDef(self, node: ast.FunctionDef | ast.AsyncFunctionDef) -> None:
        self.stores.add(node.name)
        for expr in def_time_exprs(node):
            self.visit(expr)
        self._nested(*function_free(node))

    def visit_AsyncFunctionDef(self, node: ast.AsyncFunctionDef) -> None:
        self.visit_FunctionDef(node)

    def visit_Lambda(self, node: ast.Lambda) -> None:
        for expr in [*node.args.defaults, *(d for d in node.args.kw_defaults if d)]:
            self.visit(expr)
        self._nested(*function_free(node))

    def visit_ClassDef(self, node: ast.ClassDef) -> None:
        self.stores.add(node.name)
        for expr in [*node.decorator_list, *node.bases, *(k.value for k in node.keywords)]:
            self.visit(expr)
        body_reads, method_reads, writes = class_free(node)
        self._nested(body_reads | method_reads, writes)

    def _comprehension(self, node: Comprehension) -> None:
        self.visit(node.generators[0].iter)
        reads, walrus = comprehension_free(node)
        self.nested_free |= reads
        self.stores |= walrus
        self.walrus |= walrus

    def visit_Import(self, node: ast.Import) -> None:
        for alias in node.names:
            self.stores.add(alias.asname or alias.name.split(".")[0])

    def visit_ImportFrom(self, node: ast.ImportFrom) -> None:
        for alias in node.names:
            if alias.name != "*":
                self.stores.add(alias.asname or alias.name)

    def visit_ExceptHandler(self, node: ast.ExceptHandler) -> None:
        if node.name:
            self.stores.add(node.name)
        self.generic_visit(node)

    def visit_MatchAs(self, node: ast.MatchAs) -> None:
        if node.name:
            self.stores.add(node.name)
        self.generic_visit(node)

    def visit_MatchStar(self, node: ast.MatchStar) -> None:
        if node.name:
            self.stores.add(node.name)

    def visit_MatchMapping(self, node: ast.MatchMapping) -> None:
        if node.rest:
            self.stores.add(node.rest)
        self.generic_visit(node)


def _arg_names(args: ast.arguments) -> set[str]:
    names = {a.arg for a in [*args.posonlyargs, *args.args, *args.kwonlyargs]}
    names.update(a.arg for a in (args.vararg, args.kwarg) if a is not None)
    return names


def def_time_exprs(node: ast.FunctionDef | ast.AsyncFunctionDef) -> list[ast.expr]:
    """Expressions evaluated when the ``def`` runs: decorators, defaults, annotations."""
    args = node.args
    exprs: list[ast.expr] = [*node.decorator_list, *args.defaults]
    exprs += [d for d in args.kw_defaults if d is not None]
    for a in [*args.posonlyargs, *args.args, *args.kwonlyargs, args.vararg, args.kwarg]:
        if a is not None and a.annotation is not None:
            exprs.append(a.annotation)
    if node.returns is not None:
        exprs.append(node.returns)
    return exprs


def function_free(
    node: ast.FunctionDef | ast.AsyncFunctionDef | ast.Lambda,
) -> tuple[set[str], set[str]]:
    """Names a function body reads from outside itself, and globals it assigns."""
    reads, writes, _ = function_effects(node)
    return reads, writes


def function_effects(
    node: ast.FunctionDef | ast.AsyncFunctionDef | ast.Lambda,
) -> tuple[set[str], set[str], bool]:
    """``function_free``'s reads and writes, and whether the body may change an object passed
    to it (``def prep(d): d["x"] = 1``), from one walk of the body."""
    scope, local = function_scope(node)
    reads = (scope.loads | scope.nested_free) - local
    mutated = scope.mutated | scope.augmented
    # a module-level object the body changes in place counts as written (``log.append(x)``)
    writes = (scope.globals & scope.stores) | scope.global_writes | (mutated - local)
    return reads, writes, bool(_arg_names(node.args) & mutated)


def function_scope(
    node: ast.FunctionDef | ast.AsyncFunctionDef | ast.Lambda,
) -> tuple[Scope, set[str]]:
    """The body's scope, and its local names (parameters included)."""
    scope = Scope()
    if isinstance(node, ast.Lambda):
        scope.visit(node.body)
    else:
        for stmt in node.body:
            scope.visit(stmt)
    return scope, _arg_names(node.args) | (scope.stores - scope.globals - scope.nonlocals)


def body_calls(node: ast.AST) -> frozenset[tuple[str, tuple[str, ...]]]:
    """Every call in ``node`` (nested bodies included): (callee as written, keywords given)."""
    found = set()
    for call in ast.walk(node):
        if isinstance(call, ast.Call) and (callee := dotted_name(call.func)) is not None:
            found.add((callee, tuple(k.arg for k in call.keywords if k.arg)))
    return frozenset(found)


def class_free(node: ast.ClassDef) -> tuple[set[str], set[str], set[str]]:
    """(names the class body reads when it runs, names its methods read later, global writes)."""
    scope = Scope()
    for stmt in node.body:
        scope.visit(stmt)
    body_reads = scope.loads - (scope.stores - scope.globals)
    writes = scope.global_writes | (scope.globals & scope.stores)
    return body_reads, scope.nested_free, writes


def comprehension_free(
    node: ast.ListComp | ast.SetComp | ast.GeneratorExp | ast.DictComp,
) -> tuple[set[str], set[str]]:
    """Names a comprehension reads (besides its first iterable) and walrus names it binds."""
    scope = Scope()
    targets = Scope()
    for i, gen in enumerate(node.generators):
        targets.visit(gen.target)
        if i:
            scope.visit(gen.iter)
        for cond in gen.ifs:
            scope.visit(cond)
    if isinstance(node, ast.DictComp):
        scope.visit(node.key)
        scope.visit(node.value)
    else:
        scope.visit(node.elt)
    local = targets.stores | (scope.stores - scope.walrus)
    reads = (scope.loads | scope.nested_free) - local
    return reads, scope.walrus


def root_name(node: ast.expr) -> str | None:
    """The variable at the base of ``a.b[c].d`` (``a``), if the chain has no calls."""
    while isinstance(node, (ast.Attribute, ast.Subscript)):
        node = node.value
    return node.id if isinstance(node, ast.Name) else None


def is_pure(method: str) -> bool:
    return method in PURE_METHODS or method.startswith(PURE_PREFIXES)


def call_name(func: ast.expr) -> str | None:
    if isinstance(func, ast.Attribute):
        return func.attr
    if isinstance(func, ast.Name):
        return func.id
    return None


def unshippable(value: ast.expr | None) -> str | None:
    """What ``value`` evaluates to when that is an object pickle cannot store, else None."""
    if isinstance(value, ast.GeneratorExp):
        return "a generator"
    if not isinstance(value, ast.Call):
        return None
    func = value.func
    name = call_name(func)
    if (
        name == "connect"
        and isinstance(func, ast.Attribute)
        and isinstance(func.value, ast.Name)
        and func.value.id in DATABASE_MODULES
    ):
        return "a database connection"
    if (name or "").startswith("read_") and any(
        k.arg == "chunksize" or (k.arg == "iterator" and _true(k.value)) for k in value.keywords
    ):
        return "a chunked file reader (it holds the open file)"
    return UNSHIPPABLE_CALLS.get(name or "")


def _true(node: ast.expr) -> bool:
    return isinstance(node, ast.Constant) and node.value is True
