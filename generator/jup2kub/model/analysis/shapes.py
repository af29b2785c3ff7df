"""The shapes of top-level statements the cell analysis tells apart: definitions a later step
can replay, calls that configure a module, Python cell magics, and paths computed at run time."""

from __future__ import annotations

import ast
from collections.abc import Sequence

from jup2kub.model.analysis.knowledge import SETUP_FUNCTIONS, SETUP_MAGICS
from jup2kub.model.analysis.scopes import root_name
from jup2kub.model.ipython import PYTHON_CELL_MAGICS, constant_str, magic_call


def computed_path(node: ast.expr | None) -> bool:
    """Whether ``node`` looks like a path computed at run time (not a literal, a mapping, ..)."""
    return isinstance(
        node, (ast.Name, ast.Attribute, ast.Subscript, ast.JoinedStr, ast.BinOp, ast.Call)
    )


def strip_magic_flags(arg: str) -> str:
    """Drop leading ``-x`` options of %time/%timeit (``-n 10 -r 3 f(x)`` -> ``f(x)``)."""
    words = arg.split()
    i = 0
    while i < len(words) and words[i].startswith("-"):
        i += 2 if words[i] in ("-n", "-r", "-p", "-o", "-T", "-D") else 1
    return " ".join(words[i:]) if i else arg


def top_level_defs(stmts: Sequence[ast.stmt]) -> set[str]:
    names: set[str] = set()
    for s in stmts:
        if isinstance(s, (ast.Assign, ast.AnnAssign, ast.AugAssign)):
            targets = s.targets if isinstance(s, ast.Assign) else [s.target]
            for t in targets:
                for n in ast.walk(t):
                    if isinstance(n, ast.Name) and isinstance(n.ctx, ast.Store):
                        names.add(n.id)
        elif isinstance(s, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
            names.add(s.name)
        elif isinstance(s, (ast.Import, ast.ImportFrom)):
            for alias in s.names:
                if alias.name != "*":
                    names.add(alias.asname or alias.name.split(".")[0])
        elif isinstance(s, ast.With):
            names |= top_level_defs(s.body)
        elif isinstance(s, ast.If):
            names |= top_level_defs(s.body) & top_level_defs(s.orelse)
    return names


def replayable(stmt: ast.stmt) -> bool:
    """Imports, defs and classes, and if/try statements made only of those (and ``pass``)."""
    if isinstance(
        stmt, (ast.Import, ast.ImportFrom, ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)
    ):
        return True
    if isinstance(stmt, ast.Try):
        parts = [*stmt.body, *stmt.orelse, *stmt.finalbody]
        parts += [s for h in stmt.handlers for s in h.body]
    elif isinstance(stmt, ast.If):
        if any(isinstance(n, ast.NamedExpr) for n in ast.walk(stmt.test)):
            return False
        parts = [*stmt.body, *stmt.orelse]
    else:
        return False
    definitions = [s for s in parts if not isinstance(s, ast.Pass)]
    return bool(definitions) and all(replayable(s) for s in definitions)


def setup_root(stmt: ast.stmt) -> str | None:
    """The module a statement configures, if it looks like ``mod.seed(..)``/``mod.opt = ..``."""
    if isinstance(stmt, ast.Expr) and isinstance(stmt.value, ast.Call):
        magic = magic_call(stmt.value)
        if magic is not None:
            method, args = magic
            name = constant_str(args[0]) if args else None
            return "%" if method == "run_line_magic" and name in SETUP_MAGICS else None
        func = stmt.value.func
        if isinstance(func, ast.Attribute) and func.attr in SETUP_FUNCTIONS:
            return root_name(func.value)
        return None
    if isinstance(stmt, ast.Assign) and all(
        isinstance(t, (ast.Attribute, ast.Subscript)) for t in stmt.targets
    ):
        roots = {root_name(t) for t in stmt.targets}
        if len(roots) == 1:
            return roots.pop()
    return None


def python_cell_magic(node: ast.stmt) -> tuple[str, str, str] | None:
    if isinstance(node, ast.Expr):
        magic = magic_call(node.value)
        if magic and magic[0] == "run_cell_magic" and len(magic[1]) >= 3:
            name, arg, body = (constant_str(a) for a in magic[1][:3])
            if name in PYTHON_CELL_MAGICS and arg is not None and body is not None:
                return name, arg, body
    return None
