"""The chart's ``values.schema.json`` (the base schema plus one entry per step), the check that
generated values satisfy it, and the values table of the chart's README."""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from importlib import resources
from typing import Any

import jsonschema

from jup2kub_runtime.contract.config import GUARD_MODES

#: The one chart folder: Jinja2 ``*.j2`` files rendered with the pipeline's data, the schema
#: base, and everything else (``templates/``, ``.helmignore``) copied verbatim.
SKELETON = resources.files(__package__) / "skeleton"
SCHEMA_BASE = "values.schema.base.json"


def values_schema(step_names: Sequence[str]) -> dict[str, Any]:
    """The base schema with ``steps`` closed over exactly these steps."""
    schema: dict[str, Any] = json.loads((SKELETON / SCHEMA_BASE).read_text())
    steps_schema = schema["properties"]["steps"]
    steps_schema["properties"] = {
        name: {"$ref": "#/definitions/step", "description": f"Step {name}."} for name in step_names
    }
    steps_schema["required"] = list(step_names)
    for definition in ("stepDefaults", "step"):  # the runtime's own list of modes
        schema["definitions"][definition]["properties"]["guardMode"]["enum"] = list(GUARD_MODES)
    return schema


def self_check(schema: Mapping[str, Any], values: Any, name: str) -> None:
    """The generated values must satisfy the generated schema; anything else is our bug."""
    errors = sorted(jsonschema.Draft7Validator(schema).iter_errors(values), key=str)
    if errors:
        first = errors[0]
        path = ".".join(str(p) for p in first.absolute_path)
        raise RuntimeError(
            f"Jup2Kub bug: generated {name} fails its schema at {path}: {first.message}"
        )


def values_table(schema: Mapping[str, Any], values: Mapping[str, Any]) -> list[dict[str, Any]]:
    """One row per leaf value of the schema, with the default from values.yaml."""
    rows: list[dict[str, Any]] = []

    def walk(node: Mapping[str, Any], key: str, value: Any) -> None:
        node = _resolve(schema, node)
        props = node.get("properties")
        if (
            isinstance(props, Mapping)
            and props
            and node.get("additionalProperties") is False
            and isinstance(value, Mapping)
        ):
            for name, child in props.items():
                if name in value:
                    walk(child, f"{key}.{name}" if key else name, value[name])
            return
        description = str(node.get("description", "")).replace("|", "\\|")
        rows.append(
            {"key": key, "type": _type_text(node), "default": value, "description": description}
        )

    walk(schema, "", values)
    return rows


def _resolve(schema: Mapping[str, Any], node: Mapping[str, Any]) -> Mapping[str, Any]:
    ref = node.get("$ref")
    if isinstance(ref, str) and ref.startswith("#/definitions/"):
        target: Mapping[str, Any] = schema["definitions"][ref.rsplit("/", 1)[1]]
        if "description" in node:
            return {**target, "description": node["description"]}
        return target
    return node


def _type_text(node: Mapping[str, Any]) -> str:
    if "enum" in node:
        return " \\| ".join(json.dumps(v) for v in node["enum"])
    kind = node.get("type", "any")
    return " \\| ".join(kind) if isinstance(kind, list) else str(kind)
