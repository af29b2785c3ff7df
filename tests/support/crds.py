"""Validating custom resources the chart renders (KEDA's, the Prometheus Operator's) against
their published CRDs, strictly: a field the schema does not define fails too (a structural
schema prunes unknown fields silently on a cluster, so a typo would just be ignored)."""

from __future__ import annotations

import functools
import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import jsonschema
import yaml


def strict(schema: Any) -> Any:
    """The schema with ``additionalProperties: false`` wherever it lists properties (but at the
    top, whose metadata Kubernetes checks itself, and where it preserves unknown fields)."""
    if isinstance(schema, list):
        return [strict(s) for s in schema]
    if not isinstance(schema, dict):
        return schema
    out = {k: strict(v) for k, v in schema.items()}
    if (
        "properties" in out
        and "additionalProperties" not in out
        and not out.get("x-kubernetes-preserve-unknown-fields")
        and set(out["properties"]) != {"apiVersion", "kind", "metadata", "spec", "status"}
    ):
        out["additionalProperties"] = False
    return out


@functools.cache
def crd_schema(env: str, version: str) -> dict[str, Any]:
    """The strict openAPIV3Schema of ``version`` of the CRD at the path in environment variable
    ``env`` (set by the tests/setup.d script that fetched it)."""
    path = os.environ.get(env)
    assert path and Path(path).is_file(), f"a tests/setup.d script provides {env}"
    crd = yaml.safe_load(Path(path).read_text())
    [found] = [v for v in crd["spec"]["versions"] if v["name"] == version]
    schema: dict[str, Any] = strict(found["schema"]["openAPIV3Schema"])
    return schema


def validate(env: str, version: str, obj: Mapping[str, Any]) -> None:
    jsonschema.Draft7Validator(crd_schema(env, version)).validate(dict(obj))
