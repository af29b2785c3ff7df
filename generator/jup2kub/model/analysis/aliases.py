"""Which variables' objects an expression's value may share (aliasing).

``b = a``, ``x = frame[cols]``, ``first = models[0]``, ``ax = fig.gca()``, ``pair = [a, b]``:
after these, changing the new name's object in place may change what the other names show.
The answer is conservative (may-alias): a name counted too many costs a stored copy and an
edge, a name missed would be a silent difference.
"""

from __future__ import annotations

import ast

from jup2kub.model.analysis.knowledge import ARGUMENT_RETURNING_FUNCTIONS, NEW_OBJECT_METHODS


def value_sources(node: ast.expr | None) -> set[str]:
    """Variables whose objects (or parts of them) the value of ``node`` may be."""
    if node is None:
        return set()
    if isinstance(node, ast.Name):
        return {node.id}
    if isinstance(node, (ast.Attribute, ast.Subscript, ast.Starred)):
        return value_sources(node.value)
    if isinstance(node, (ast.Tuple, ast.List, ast.Set)):
        return set().union(*(value_sources(e) for e in node.elts))
    if isinstance(node, ast.Dict):
        return set().union(*(value_sources(v) for v in node.values))
    if isinstance(node, ast.IfExp):
        return value_sources(node.body) | value_sources(node.orelse)
    if isinstance(node, ast.BoolOp):
        return set().union(*(value_sources(v) for v in node.values))
    if isinstance(node, ast.NamedExpr):
        return value_sources(node.value) | value_sources(node.target)
    if isinstance(node, (ast.ListComp, ast.SetComp, ast.GeneratorExp)):
        return _comprehension_sources(node, node.elt)
    if isinstance(node, ast.DictComp):
        return _comprehension_sources(node, node.value)
    if isinstance(node, ast.Call):
        return _call_sources(node)
    return set()


def _call_sources(node: ast.Call) -> set[str]:
    func = node.func
    if isinstance(func, ast.Attribute):
        if func.attr in NEW_OBJECT_METHODS or func.attr.startswith(("to_", "is_")):
            return set()
        return value_sources(func.value)  # ``fig.gca()``, ``arr.reshape(..)``, ``d.get(k)``
    if isinstance(func, ast.Name) and func.id in ARGUMENT_RETURNING_FUNCTIONS:
        args = [*node.args, *(k.value for k in node.keywords)]
        return set().union(*(value_sources(a) for a in args))
    return set()


def _comprehension_sources(
    node: ast.ListComp | ast.SetComp | ast.GeneratorExp | ast.DictComp, elt: ast.expr
) -> set[str]:
    """``[d for d in frames]`` holds the elements of ``frames``; ``[f(d) ...]`` holds new ones."""
    targets = {n.id for g in node.generators for n in ast.walk(g.target) if isinstance(n, ast.Name)}
    found = value_sources(elt)
    if found & targets:
        found |= set().union(*(value_sources(g.iter) for g in node.generators))
    return found - targets


def target_names(node: ast.expr) -> list[str]:
    """The variables an assignment target binds (``a, (b, *c)`` -> a, b, c)."""
    if isinstance(node, ast.Name):
        return [node.id]
    if isinstance(node, (ast.Tuple, ast.List)):
        return [n for e in node.elts for n in target_names(e)]
    if isinstance(node, ast.Starred):
        return target_names(node.value)
    return []


def dotted_name(node: ast.expr) -> str | None:
    """``np.random.rand`` for that chain of attributes on a name; ``.fit`` when the chain starts
    at something else (a call, a subscript); None for other callees."""
    parts: list[str] = []
    while isinstance(node, ast.Attribute):
        parts.append(node.attr)
        node = node.value
    if isinstance(node, ast.Name):
        parts.append(node.id)
    elif parts:
        parts.append("")
    else:
        return None
    return ".".join(reversed(parts))
