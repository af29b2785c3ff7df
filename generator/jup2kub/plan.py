"""The deployable plan: what each step of a pipeline becomes once it runs against Kafka.

Built once from the in-memory ``Pipeline``: per step the values it moves, its Kafka wiring
(topics from ``jup2kub_runtime.contract.topics``, the runtime's own contract) and the bundle the
runtime executes (``step.json``, the runtime's ``StepSpec``). The chart, the image build and both
local executors read this plan, so none of them derives names or topics on its own.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from jup2kub.files import atomic_write_text
from jup2kub.model.pipeline import Pipeline
from jup2kub_runtime.contract import topics
from jup2kub_runtime.contract.spec import Cell, ReplayCell, StepSpec
from jup2kub_runtime.storage.cachekey import pathlike


@dataclass(frozen=True)
class StepPlan:
    """One step: the values it moves, where its runs come from and go, and what it executes."""

    name: str
    cells: tuple[int, ...]
    inputs: tuple[str, ...]
    outputs: tuple[str, ...]
    parameters: tuple[str, ...]
    after: tuple[str, ...]
    downstream: tuple[str, ...]
    input_topics: tuple[str, ...]
    output_topics: tuple[str, ...]
    consumer_group: str
    #: the step image's repository, without a registry (the chart's values add it)
    image_repository: str
    spec: StepSpec
    #: from Kale's ``limit:``, ``label:``, ``annotation:``, ``secret:`` tags: the step pods'
    #: resource limits (Kubernetes quantities by resource name), labels, annotations and
    #: environment variables from Secrets (variable, Secret, key)
    limits: tuple[tuple[str, str], ...] = ()
    labels: tuple[tuple[str, str], ...] = ()
    annotations: tuple[tuple[str, str], ...] = ()
    secrets: tuple[tuple[str, str, str], ...] = ()


@dataclass(frozen=True)
class PipelinePlan:
    """The whole pipeline, steps in notebook order."""

    name: str
    notebook: str
    notebook_sha256: str
    steps: tuple[StepPlan, ...]
    #: the step names in an order that respects every edge (notebook order where free)
    order: tuple[str, ...]
    #: the step graph as ``jup2kub inspect --json`` prints it (the chart's pipeline.json)
    graph: Mapping[str, Any]

    @property
    def runs_topic(self) -> str:
        return topics.runs_topic(self.name)

    @property
    def status_topic(self) -> str:
        return topics.status_topic(self.name)

    @property
    def dead_letter_topic(self) -> str:
        return topics.dead_letter_topic(self.name)

    def step(self, name: str) -> StepPlan:
        for s in self.steps:
            if s.name == name:
                return s
        raise KeyError(name)

    def write_bundles(self, directory: Path) -> dict[str, Path]:
        """Write ``<directory>/<step>/step.json`` for each step; returns the step directories."""
        out = {}
        for s in self.steps:
            atomic_write_text(directory / s.name / "step.json", s.spec.to_json())
            out[s.name] = directory / s.name
        return out


def plan_pipeline(pipeline: Pipeline) -> PipelinePlan:
    """The plan of ``pipeline`` (pure: nothing is written)."""
    return PipelinePlan(
        name=pipeline.name,
        notebook=pipeline.notebook,
        notebook_sha256=pipeline.notebook_sha256,
        steps=tuple(_step_plan(pipeline, s.name) for s in pipeline.steps),
        order=tuple(pipeline.topological_order()),
        graph=pipeline.to_json(),
    )


def _step_plan(pipeline: Pipeline, name: str) -> StepPlan:
    step = pipeline.step(name)
    downstream = pipeline.downstream(name)
    spec = StepSpec(
        pipeline=pipeline.name,
        step=name,
        parameters_source=pipeline.parameters_source,
        parameters=sorted(step.parameters),
        replay=[ReplayCell(d.cell, d.source) for d in step.replay],
        cells=[Cell(i, pipeline.python[i], i in pipeline.raising_cells) for i in step.cells],
        inputs=dict(sorted(step.inputs.items())),
        outputs=sorted(step.outputs),
        upstream=list(step.after),
        downstream=downstream,
        groups=step.groups,
        readonly_inputs=step.readonly_inputs,
        random_guard=step.random_guard,
        placeholders=sorted(step.placeholders),
        secret_parameters=sorted(
            {s.name for s in pipeline.secret_parameters} & set(step.parameters)
        ),
        random_seeded=step.seeded_before or step.seeded_after,
        **_cache_fields(pipeline, name),
        maps=pipeline.step_maps(step),
    )
    return StepPlan(
        name=name,
        cells=tuple(step.cells),
        inputs=tuple(sorted(step.inputs)),
        outputs=tuple(sorted(step.outputs)),
        parameters=tuple(sorted(step.parameters)),
        after=tuple(step.after),
        downstream=tuple(downstream),
        input_topics=tuple(topics.input_topics(pipeline.name, name, step.after)),
        output_topics=tuple(topics.output_topics(pipeline.name, name, downstream)),
        consumer_group=topics.consumer_group(pipeline.name, name),
        image_repository=f"{pipeline.name}-{name}",
        spec=spec,
        limits=tuple(sorted(step.pod.limits.items())),
        labels=tuple(sorted(step.pod.labels.items())),
        annotations=tuple(sorted(step.pod.annotations.items())),
        secrets=tuple((env, *ref) for env, ref in sorted(step.pod.secrets.items())),
    )


def _cache_fields(pipeline: Pipeline, name: str) -> dict[str, Any]:
    """The step cache's part of a step's spec (none when it is not cacheable): the files its
    code names, with the path-like defaults of the parameters it reads, and those it writes."""
    info = pipeline.cache.get(name)
    if info is None or not info.cacheable:
        return {}
    defaults = [pipeline.parameters.get(p) for p in pipeline.step(name).parameters]
    paths = {v for v in defaults if isinstance(v, str) and pathlike(v)}
    return {
        "cache": True,
        "cache_reads": sorted(set(info.reads) | paths),
        "cache_writes": list(info.writes),
    }
