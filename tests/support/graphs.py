"""Pipeline plans for chart tests, from step graphs written as ``jup2kub inspect --json`` prints
them (name, cells, inputs, outputs, parameters, after per step): the chart renders from a plan,
and these graphs describe shapes no corpus notebook has."""

from __future__ import annotations

import hashlib
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from jup2kub.model.names import pipeline_name_for
from jup2kub.model.pipeline import Pipeline, Step
from jup2kub.plan import PipelinePlan, plan_pipeline


def plan_of(graph: Mapping[str, Any], notebook: Path, name: str | None = None) -> PipelinePlan:
    """The plan of ``graph``, as if made from ``notebook`` (its hash becomes the chart's)."""
    steps = [_step(raw) for raw in graph["steps"]]
    pipeline = Pipeline(
        name=name or pipeline_name_for(notebook),
        notebook=str(graph.get("notebook", notebook)),
        split=str(graph.get("split", "auto")),
        parameters=dict(graph.get("parameters", {})),
        parameter_cells=[],
        steps=steps,
        prelude=[],
        skipped=[],
        python={cell: "pass\n" for s in steps for cell in s.cells},
        notebook_sha256=hashlib.sha256(notebook.read_bytes()).hexdigest(),
    )
    return plan_pipeline(pipeline)


def _step(raw: Mapping[str, Any]) -> Step:
    after = list(raw.get("after", []))
    return Step(
        name=raw["name"],
        source_name=raw["name"],
        cells=list(raw["cells"]),
        inputs={v: after[0] for v in raw.get("inputs", [])} if after else {},
        parameters=set(raw.get("parameters", [])),
        outputs=set(raw.get("outputs", [])),
        after=after,
    )
