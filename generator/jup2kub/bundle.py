"""Step bundles: what each step image (or local process) executes, as ``step.json`` files in
the runtime's own schema (``jup2kub_runtime.spec``), so generator and runtime cannot drift."""

from __future__ import annotations

from pathlib import Path

from jup2kub import chart
from jup2kub.files import atomic_write_text
from jup2kub.pipeline import Pipeline
from jup2kub_runtime.spec import Cell, ReplayCell, StepSpec


def pipeline_name(pipeline: Pipeline) -> str:
    """The pipeline's name, the same the chart uses for its topics and objects."""
    return chart.pipeline_name(Path(pipeline.notebook))


def step_specs(pipeline: Pipeline, name: str | None = None) -> list[StepSpec]:
    """One spec per step, in notebook order."""
    name = name or pipeline_name(pipeline)
    specs = []
    for step in pipeline.steps:
        specs.append(
            StepSpec(
                pipeline=name,
                step=step.name,
                parameters_source=pipeline.parameters_source,
                parameters=sorted(step.parameters),
                replay=[ReplayCell(d.cell, d.source) for d in step.replay],
                cells=[Cell(i, pipeline.python[i]) for i in step.cells],
                inputs=dict(sorted(step.inputs.items())),
                outputs=sorted(step.outputs),
                upstream=list(step.after),
                downstream=pipeline.downstream(step.name),
            )
        )
    return specs


def write_bundles(specs: list[StepSpec], directory: Path) -> dict[str, Path]:
    """Write ``<directory>/<step>/step.json`` for each spec; returns the step directories."""
    out = {}
    for spec in specs:
        step_dir = directory / spec.step
        atomic_write_text(step_dir / "step.json", spec.to_json())
        out[spec.step] = step_dir
    return out
