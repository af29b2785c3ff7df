"""Run parameters, the way papermill takes them: ``-p name value`` with type inference,
``-f params.yaml``; checked against the notebook's parameters cell."""

from __future__ import annotations

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


def collect(
    given: Mapping[str, Any], files: Iterable[Path], known: Mapping[str, Any]
) -> dict[str, Any]:
    """Merge ``-f`` files (in order) then ``given`` values (``-p``, types already inferred);
    every name must be a known parameter."""
    values: dict[str, Any] = {}
    for path in files:
        try:
            data = yaml.safe_load(Path(path).read_text(encoding="utf-8"))
        except OSError as exc:
            raise InputError(
                f"cannot read parameters file ({exc.strerror})", where=str(path)
            ) from exc
        except yaml.YAMLError as exc:
            raise InputError(f"not valid YAML: {exc}", where=str(path)) from exc
        if data is None:
            continue
        if not isinstance(data, dict) or not all(isinstance(k, str) for k in data):
            raise InputError(
                "a parameters file must hold a mapping of names to values",
                where=str(path),
                hint="write it as 'name: value' lines",
            )
        values.update(data)
    values.update(given)
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
    return values
