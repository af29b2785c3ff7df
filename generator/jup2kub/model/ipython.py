"""IPython syntax: translate a cell the way IPython does before running it, and expose what the
magics and shell escapes in it read, so that analysis sees plain Python."""

from __future__ import annotations

import ast
import re
from collections.abc import Callable
from functools import lru_cache

from IPython.core.inputtransformer2 import TransformerManager

# Cell magics whose body is Python run in the user namespace.
PYTHON_CELL_MAGICS = frozenset({"time", "timeit", "capture", "prun", "debug"})
# Line magics whose argument is Python code.
PYTHON_LINE_MAGICS = frozenset({"time", "timeit", "prun", "debug"})


#: IPython's transformer, seen as typed (its ``__init__`` carries no annotations)
_new_manager: Callable[[], TransformerManager] = TransformerManager


@lru_cache(maxsize=1)
def _manager() -> TransformerManager:
    return _new_manager()


def translate(source: str) -> str:
    """Return ``source`` as the plain Python IPython would execute (magics become calls).

    Jup2Kub's own IPython extension is an editing aid, not part of the computation: a first
    line ``%%step NAME`` (a step marker, which the extension strips before IPython runs the
    cell) becomes a comment, and ``%load_ext jup2kub`` / ``%jup2kub ...`` lines ``pass``."""
    return str(_manager().transform_cell(own_magics_removed(source)))


#: ``%%step NAME``: the extension's step marker, as a cell's first line
STEP_MAGIC = re.compile(r"^%%step(?:[ \t]+(?P<name>.*?))?[ \t]*$")
_OWN_LINE_MAGIC = re.compile(r"^(?P<indent>[ \t]*)%(?:(?:re)?load_ext[ \t]+jup2kub\b|jup2kub\b).*$")


def own_magics_removed(source: str) -> str:
    """``source`` without Jup2Kub's own magics, line numbers kept."""
    lines = source.split("\n")
    if lines and STEP_MAGIC.match(lines[0]):
        lines[0] = "# " + lines[0]
    return "\n".join(_OWN_LINE_MAGIC.sub(r"\g<indent>pass", line) for line in lines)


def only_own_magics(source: str) -> bool:
    """A cell holding nothing but ``%load_ext jup2kub`` / ``%jup2kub ...`` lines (and
    comments): the editor's tool, left out of the pipeline."""
    lines = [x.strip() for x in source.splitlines() if x.strip() and not x.strip().startswith("#")]
    return bool(lines) and all(_OWN_LINE_MAGIC.match(x) for x in lines)


_BRACES = re.compile(r"(?<!\{)\{([^{}]+)\}(?!\})")
_DOLLAR = re.compile(r"(?<!\$)\$([A-Za-z_][A-Za-z0-9_]*)")


def expanded_names(command: str) -> set[str]:
    """Names that IPython's variable expansion (``{expr}`` and ``$name``) reads in a command."""
    names: set[str] = set(_DOLLAR.findall(command))
    for expr in _BRACES.findall(command):
        try:
            tree = ast.parse(expr.strip(), mode="eval")
        except SyntaxError:
            continue
        names.update(
            n.id for n in ast.walk(tree) if isinstance(n, ast.Name) and isinstance(n.ctx, ast.Load)
        )
    return names


def magic_call(node: ast.AST) -> tuple[str, list[ast.expr]] | None:
    """If ``node`` is ``get_ipython().<method>(...)``, return the method name and arguments."""
    if not isinstance(node, ast.Call) or not isinstance(node.func, ast.Attribute):
        return None
    receiver = node.func.value
    if (
        isinstance(receiver, ast.Call)
        and isinstance(receiver.func, ast.Name)
        and receiver.func.id == "get_ipython"
        and not receiver.args
    ):
        return node.func.attr, list(node.args)
    return None


def constant_str(node: ast.expr | None) -> str | None:
    if isinstance(node, ast.Constant) and isinstance(node.value, str):
        return node.value
    return None
