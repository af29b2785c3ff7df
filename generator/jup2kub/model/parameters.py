"""Run parameters, the way papermill takes them: ``-p name value`` with type inference,
``-f params.yaml``; checked against the notebook's parameters cell, whose defaults (and
non-literal expressions) are read here too."""

from __future__ import annotations

import ast
import json
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

import yaml

from jup2kub.errors import InputError


def infer_type(value: str) -> Any:
    """papermill's rule: True/False/None, then int, then float, else the string itself."""
    if value in ("True", "False"):
        return value == "True"
    if value == "None":
        return None
    for convert in (int, float):
        try:
            return convert(value)
        except ValueError:
            pass
    return value


def infer_for(value: str, default: Any) -> Any:
    """A ``-p`` string for a parameter whose notebook value is ``default``: kept a string when
    the notebook's value is one (``-p label 007`` stays ``'007'``), else papermill's rule."""
    if isinstance(default, str):
        return value
    return infer_type(value)


def collect(
    given: Mapping[str, Any],
    files: Iterable[Path],
    known: Mapping[str, Any],
    *,
    yaml_texts: Iterable[str] = (),
    strings: Iterable[tuple[str, str]] = (),
    expressions: Mapping[str, str] | None = None,
) -> dict[str, Any]:
    """Merge, as papermill does, ``-f`` files (in order), then ``-y`` YAML texts, then
    ``given`` values (types already inferred) and ``strings`` (``-p`` pairs, inferred here
    against the notebook's values); every name must be a known parameter, and a value must
    have the type of the parameter cell's literal (``expressions``: the non-literal ones)."""
    values: dict[str, Any] = {}
    for path in files:
        try:
            text = Path(path).read_text(encoding="utf-8")
        except OSError as exc:
            raise InputError(
                f"cannot read parameters file ({exc.strerror})", where=str(path)
            ) from exc
        values.update(_yaml_mapping(text, str(path)))
    for text in yaml_texts:
        values.update(_yaml_mapping(text, "-y"))
    values.update(given)
    values.update({k: infer_for(v, known.get(k)) for k, v in strings})
    unknown = sorted(set(values) - set(known))
    if unknown:
        raise InputError(
            f"unknown parameter{'s' if len(unknown) > 1 else ''}: {', '.join(unknown)}",
            hint=(
                "the notebook's parameters cell defines: " + ", ".join(sorted(known))
                if known
                else "the notebook has no parameters cell; tag the cell holding its "
                "parameters 'parameters'"
            ),
        )
    for name, value in values.items():
        try:
            json.dumps(value, allow_nan=False)
        except (TypeError, ValueError) as exc:
            raise InputError(
                f"parameter {name!r} has a value that is not plain data ({exc})",
                hint="use numbers, strings, booleans, null, lists and mappings",
            ) from exc
        if name not in (expressions or {}):
            check_type(name, value, known.get(name))
    return values


def _yaml_mapping(text: str, where: str) -> dict[str, Any]:
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        raise InputError(f"not valid YAML: {exc}", where=where) from exc
    if data is None:
        return {}
    if not isinstance(data, dict) or not all(isinstance(k, str) for k in data):
        raise InputError(
            "parameters must be a mapping of names to values",
            where=where,
            hint="write it as 'name: value' lines, or -y '{name: value, other: 2}'",
        )
    return data


def _kind(value: Any) -> str:
    """The type family a run's value must share with the notebook's literal."""
    if isinstance(value, bool):
        return "bool"
    if isinstance(value, (int, float)):
        return "int" if isinstance(value, int) else "float"
    if isinstance(value, (list, tuple)):
        return "list"
    return type(value).__name__


def check_type(name: str, value: Any, default: Any) -> None:
    """A value of another type than the notebook's literal would fail inside a cell, after
    other steps ran (or worse, compute something else): refused up front, naming it. None on
    either side is accepted, and an int where the notebook has a float."""
    if default is None or value is None:
        return
    want, got = _kind(default), _kind(value)
    if want == got or (want == "float" and got == "int"):
        return
    raise InputError(
        f"parameter {name!r} must be {want}, like the notebook's value {default!r}; "
        f"got {got} {value!r}",
        hint=f"pass a value of type {want} (e.g. {_example(name, default)}), or change the "
        "parameters cell's value if the type is meant to change",
    )


def _example(name: str, default: Any) -> str:
    if isinstance(default, (list, tuple, dict, str)):
        return f"-y '{name}: {json.dumps(default)}'"
    return f"-p {name} {default}"


def _literal(node: ast.expr | None) -> Any:
    if node is None:
        return None
    try:
        value = ast.literal_eval(node)
    except (ValueError, TypeError, SyntaxError, MemoryError, RecursionError):
        return None
    return value if _json_safe(value) else None


def _json_safe(value: Any) -> bool:
    if value is None or isinstance(value, (bool, int, float, str)):
        return True
    if isinstance(value, (list, tuple)):
        return all(_json_safe(v) for v in value)
    if isinstance(value, dict):
        return all(isinstance(k, str) and _json_safe(v) for k, v in value.items())
    return False


def parameter_defaults(source: str) -> dict[str, Any]:
    """Names a parameters cell assigns, with their default when it is a literal."""
    defaults: dict[str, Any] = {}
    try:
        tree = ast.parse(source)
    except SyntaxError:
        return defaults
    for node in tree.body:
        if isinstance(node, ast.Assign):
            for target in node.targets:
                if isinstance(target, ast.Name):
                    defaults[target.id] = _literal(node.value)
                elif isinstance(target, (ast.Tuple, ast.List)):
                    for elt in target.elts:
                        if isinstance(elt, ast.Name):
                            defaults[elt.id] = None
        elif isinstance(node, ast.AnnAssign) and isinstance(node.target, ast.Name):
            defaults[node.target.id] = _literal(node.value)
    return defaults


def parameter_expressions(source: str) -> dict[str, str]:
    """Names a parameters cell assigns a non-literal to (``today = date.today()``), with the
    expression as written: what ``inspect`` shows instead of None."""
    try:
        tree = ast.parse(source)
    except SyntaxError:
        return {}
    out: dict[str, str] = {}
    for node in tree.body:
        if isinstance(node, ast.Assign):
            names = [t.id for t in node.targets if isinstance(t, ast.Name)]
        elif isinstance(node, ast.AnnAssign) and isinstance(node.target, ast.Name):
            names = [node.target.id]
        else:
            continue
        value = node.value
        for name in names:
            out.pop(name, None)  # the last assignment wins
            if value is not None and _literal(value) is None and not _is_none(value):
                out[name] = ast.get_source_segment(source, value) or ast.unparse(value)
    return out


def _is_none(node: ast.expr) -> bool:
    return isinstance(node, ast.Constant) and node.value is None
