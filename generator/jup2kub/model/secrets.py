"""Secret parameters: credentials written into a notebook's parameters cell.

A parameters cell is copied into every step's code (the chart's ``pipeline.json``, the images,
the results notebook), so a literal ``api_key = "sk-..."`` would travel with all of them. A
parameter is secret when its name says so (``password``, ``api_key``, ``token``...) and its
default is a string, or when its default looks like a credential whatever its name. Its
literal is replaced by ``None`` in everything Jup2Kub writes; at run time the value comes from
the environment (``jup2kub run``: ``NAME`` upper-cased, else the notebook's own value, never
written down) or from a Kubernetes Secret (the chart's ``secretParameters``), and reaches the
step process as ``jup2kub_runtime.contract.valid_names.secret_parameter_env(name)``.
"""

from __future__ import annotations

import ast
import re
from dataclasses import dataclass

#: names that say "credential" (as a word of a snake_case or camelCase name)
_SECRET_NAME = re.compile(
    r"(^|_)(password|passwd|pwd|secret|token|api_?key|apikey|access_?key|secret_?key|"
    r"private_?key|credentials?|auth)(_|$)",
    re.IGNORECASE,
)
#: values that are credentials whatever they are called
_SECRET_VALUE = re.compile(
    r"^(sk-[A-Za-z0-9_-]{16,}|(ghp|gho|ghu|ghs|github_pat)_[A-Za-z0-9_]{20,}|AKIA[0-9A-Z]{16}|"
    r"xox[abprs]-[A-Za-z0-9-]{10,}|AIza[0-9A-Za-z_-]{35}|hf_[A-Za-z0-9]{30,}|"
    r"eyJ[A-Za-z0-9_-]{10,}\.[A-Za-z0-9_-]{10,}\.[A-Za-z0-9_-]*)$"
    r"|-----BEGIN [A-Z ]*PRIVATE KEY-----"
)


@dataclass(frozen=True)
class SecretParameter:
    name: str
    cell: int
    why: str  # "its name" | "its value"

    @property
    def environment(self) -> str:
        """The variable ``jup2kub run`` reads the value from."""
        return self.name.upper()

    def warning(self) -> str:
        return (
            f"parameter {self.name!r} looks like a secret ({self.why}): its value in the "
            "notebook is left out of the chart, the images and the results; at run time it "
            f"comes from the environment ({self.environment}, else the notebook's value) for "
            f"jup2kub run, and from a Kubernetes Secret (values: "
            f"secretParameters.{self.name}.secret) on the cluster"
        )


def find_secrets(cell: int, source: str) -> list[SecretParameter]:
    """The secret parameters a parameters cell assigns (in order)."""
    found: dict[str, SecretParameter] = {}
    for name, value in _string_assignments(source):
        if _SECRET_VALUE.search(value):
            found[name] = SecretParameter(name, cell, "its value")
        elif _SECRET_NAME.search(_snake(name)) and name not in found:
            found[name] = SecretParameter(name, cell, "its name")
    return list(found.values())


def redact(source: str, names: set[str]) -> str:
    """``source`` with the string literal assigned to each of ``names`` replaced by None."""
    try:
        tree = ast.parse(source)
    except SyntaxError:
        return source
    lines = source.splitlines(keepends=True)
    spans = []
    for node in tree.body:
        target, value = _assignment(node)
        if target in names and isinstance(value, ast.Constant) and isinstance(value.value, str):
            spans.append(value)
    for value in sorted(spans, key=lambda v: (v.lineno, v.col_offset), reverse=True):
        assert value.end_lineno is not None and value.end_col_offset is not None
        first, last = value.lineno - 1, value.end_lineno - 1
        head = lines[first].encode()[: value.col_offset].decode()
        tail = lines[last].encode()[value.end_col_offset :].decode()
        lines[first : last + 1] = [head + "None" + tail]
    return "".join(lines)


def literal_values(source: str) -> dict[str, str]:
    """The string literals a parameters cell assigns, by name (the last one wins)."""
    return dict(_string_assignments(source))


def _string_assignments(source: str) -> list[tuple[str, str]]:
    try:
        tree = ast.parse(source)
    except SyntaxError:
        return []
    out = []
    for node in tree.body:
        target, value = _assignment(node)
        if target is not None and isinstance(value, ast.Constant) and isinstance(value.value, str):
            out.append((target, value.value))
    return out


def _assignment(node: ast.stmt) -> tuple[str | None, ast.expr | None]:
    if isinstance(node, ast.Assign) and len(node.targets) == 1:
        target = node.targets[0]
        return (target.id if isinstance(target, ast.Name) else None), node.value
    if isinstance(node, ast.AnnAssign) and isinstance(node.target, ast.Name):
        return node.target.id, node.value
    return None, None


def _snake(name: str) -> str:
    """``apiKey`` -> ``api_Key``: camelCase words become snake_case words."""
    return re.sub(r"(?<=[a-z0-9])(?=[A-Z])", "_", name)
