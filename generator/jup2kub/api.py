"""The library API: every command of the CLI is one call here (as papermill's CLI is a thin layer
over ``execute_notebook``). Notebooks are read once per call; run ids are made here.

Calls that need nothing but their module's function are re-exported as they are
(``package``, ``deploy``, ``release_status``), as are the types callers handle.
"""

from __future__ import annotations

import dataclasses
import os
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from jup2kub.build import DEFAULT_BASE_IMAGE
from jup2kub.chart.options import STORAGE_MODES, ChartOptions
from jup2kub.chart.package import package_chart as package
from jup2kub.chart.write import check_output_outside, write_chart
from jup2kub.cluster.deploy import DeployResult, deploy, parse_duration
from jup2kub.cluster.kube import KubeTarget
from jup2kub.cluster.pods import fetch_run
from jup2kub.cluster.readiness import Readiness
from jup2kub.cluster.status import ReleaseStatus, release_status
from jup2kub.drawing import write_graph
from jup2kub.errors import InputError, NoCodeError, UsageError
from jup2kub.model.analysis import analyze_cell
from jup2kub.model.grouping import group_cells
from jup2kub.model.ipython import translate
from jup2kub.model.mapping import isolate_maps, plan_maps
from jup2kub.model.notebook import Notebook, load_notebook
from jup2kub.model.parameters import collect, infer_type
from jup2kub.model.pipeline import Pipeline, build_pipeline, value_label
from jup2kub.model.secrets import literal_values
from jup2kub.model.split import SPLIT_MODES, code_cells, split_notebook
from jup2kub.plan import plan_pipeline
from jup2kub.run import remote
from jup2kub.run.executor import BLOCKED, RunResult, StepRun, new_run_id, run_pipeline
from jup2kub.run.kafka import KafkaExecutor
from jup2kub.run.local import LocalExecutor
from jup2kub.run.results import write_results
from jup2kub_runtime.names import secret_parameter_env
from jup2kub_runtime.state import check_run_id

__all__ = [
    "BLOCKED",
    "SPLIT_MODES",
    "STORAGE_MODES",
    "ChartOptions",
    "DeployResult",
    "ImageBuild",
    "KubeTarget",
    "Pipeline",
    "Readiness",
    "ReleaseStatus",
    "RunResult",
    "StepRun",
    "build",
    "deploy",
    "infer_type",
    "inspect_notebook",
    "package",
    "parse_duration",
    "release_status",
    "results",
    "run",
    "run_states",
    "submit",
    "value_label",
    "write_graph",
]

Log = Callable[[str], None]


def inspect_notebook(path: str | Path, split: str = "auto", name: str | None = None) -> Pipeline:
    """Read a notebook, cut it into steps and work out the values that flow between them.

    ``name`` is the pipeline's name (default: from the notebook's file name)."""
    return _load(path, split, name)[1]


def _load(path: str | Path, split: str, name: str | None) -> tuple[Notebook, Pipeline]:
    nb = load_notebook(path)
    try:
        parts = split_notebook(nb, split)
    except NoCodeError:
        for cell in nb.code_cells:  # a syntax error (in a parameters cell) explains more
            analyze_cell(nb.path, cell.index, cell.source)
        raise
    parts = isolate_maps(nb, parts)  # a map cell is a step of its own
    analyses = [analyze_cell(nb.path, i, nb.cells[i].source) for i in sorted(code_cells(parts))]
    pipeline = build_pipeline(nb, parts, analyses, name)
    if parts.automatic and parts.mode == "cells":  # no explicit steps: group the cells
        grouped = isolate_maps(nb, group_cells(parts, pipeline))
        pipeline = build_pipeline(nb, grouped, analyses, name)
    steps = {i for s in pipeline.steps for i in s.cells}
    pipeline.maps = {i: m for i, m in plan_maps(nb, analyses).items() if i in steps}
    return nb, pipeline


def require_storable(pipeline: Pipeline) -> None:
    """Refuse a pipeline in which an unpicklable value (open file, lock, generator, ...)
    would have to cross a step boundary: it would fail at run time, after other steps ran."""
    if not pipeline.unshippable:
        return
    first = pipeline.unshippable[0]
    more = "".join(f"\n  also: {u}" for u in pipeline.unshippable[1:])
    raise InputError(
        f"{first}{more}",
        where=pipeline.notebook,
        hint=f"move the code that uses {first.name!r} into step {first.source!r} (e.g. with a "
        "step marker or tag), or create it again in the step that needs it",
    )


@dataclass(frozen=True)
class ImageBuild:
    """How ``build`` builds the step images (None there: write the chart only)."""

    base_image: str = DEFAULT_BASE_IMAGE
    platform: str | None = None
    push: bool = False
    trace: bool = False
    data_files: str = "copy"


def build(
    path: str | Path,
    out: str | Path,
    split: str = "auto",
    options: ChartOptions | None = None,
    image_build: ImageBuild | None = None,
    log: Log | None = None,
    name: str | None = None,
) -> tuple[Pipeline, Path]:
    """Build the step images (unless ``image_build`` is None) and write the Helm chart, with
    the images' tags/digests and the dependency locks, to ``out`` in one atomic step."""
    check_output_outside(Path(out), {"notebook": Path(path)})
    pipeline = inspect_notebook(path, split, name)
    require_storable(pipeline)
    plan = plan_pipeline(pipeline)
    options = options or ChartOptions()
    audit: dict[str, bytes] = {}
    if image_build is not None:
        from jup2kub.build import deps, images  # the Docker SDK loads only when images are built

        client = images.engine()
        target = images.probe_target(client, image_build.base_image, image_build.platform)
        captured = deps.capture(pipeline, target)
        for warning in captured.warnings:
            if log is not None:
                log(f"warning: {warning}")
        if image_build.trace:
            deps.trace(captured, plan, data_files=image_build.data_files)
        locks = deps.lock(captured)
        built = images.build_images(
            plan,
            captured,
            locks,
            images.ImageOptions(
                base_image=image_build.base_image,
                registry=options.image_registry,
                platform=image_build.platform,
                push=image_build.push,
            ),
            client=client,
            log=log,
        )
        options = dataclasses.replace(options, image_tags=built.tags, image_digests=built.digests)
        audit = images.build_files(captured, locks, built)
    return pipeline, write_chart(plan, Path(out), options, audit)


def run(
    path: str | Path,
    parameters: Mapping[str, Any] | None = None,
    *,
    parameter_files: Sequence[Path] = (),
    split: str = "auto",
    name: str | None = None,
    workdir: Path | None = None,
    jobs: int | None = None,
    resume: str | None = None,
    kafka: str | None = None,
    on_change: Callable[[dict[str, StepRun]], None] | None = None,
    warn: Log | None = None,
) -> RunResult:
    """Run the notebook's pipeline on this machine: one process per step, or with ``kafka``
    one runtime per step on that broker. The default WORKDIR is ``.jup2kub/PIPELINE``.
    ``warn`` gets each way the split differs from the notebook's Kale tags, before the run."""
    if resume is not None:
        _check_run_id(resume, "--resume")
    nb, pipeline = _load(path, split, name)
    for warning in pipeline.split_warnings:
        if warn is not None:
            warn(str(warning))
    require_storable(pipeline)
    params = collect(parameters or {}, parameter_files, pipeline.parameters)
    secrets = secret_environment(nb, pipeline, params)
    workdir = workdir or Path(".jup2kub") / pipeline.name
    executor = (
        KafkaExecutor(kafka, environment=secrets)
        if kafka
        else LocalExecutor(jobs, environment=secrets)
    )
    return run_pipeline(nb, pipeline, workdir, params, executor, resume=resume, on_change=on_change)


def secret_environment(
    nb: Notebook, pipeline: Pipeline, parameters: Mapping[str, Any]
) -> dict[str, str]:
    """The step processes' variables holding the secret parameters: from this environment
    (``API_KEY`` for ``api_key``), else the notebook's own value."""
    refuse_secret_overrides(pipeline, parameters)
    env: dict[str, str] = {}
    for secret in pipeline.secret_parameters:
        value = os.environ.get(secret.environment)
        if value is None:
            value = literal_values(translate(nb.cells[secret.cell].source)).get(secret.name)
        if value is not None:
            env[secret_parameter_env(secret.name)] = value
    return env


def refuse_secret_overrides(pipeline: Pipeline, parameters: Mapping[str, Any]) -> None:
    """A secret given with ``-p`` or ``-f`` is refused: run parameters are recorded (summary,
    results, Kafka messages)."""
    for secret in pipeline.secret_parameters:
        if secret.name in parameters:
            raise UsageError(
                f"parameter {secret.name!r} is a secret: a -p or -f value would be recorded "
                "with the run (its summary, results and messages)",
                hint=f"set {secret.environment} in the environment instead (jup2kub run), or "
                f"secretParameters.{secret.name} in the chart's values",
            )


def submit(
    path: str | Path,
    bootstrap: str,
    parameters: Mapping[str, Any] | None = None,
    *,
    parameter_files: Sequence[Path] = (),
    run_id: str | None = None,
    split: str = "auto",
    name: str | None = None,
) -> str:
    """Submit a run of the notebook's deployed pipeline through its Kafka; returns the run id."""
    pipeline = inspect_notebook(path, split, name)
    params = collect(parameters or {}, parameter_files, pipeline.parameters)
    refuse_secret_overrides(pipeline, params)
    run_id = run_id or new_run_id()
    _check_run_id(run_id, "--run-id")
    remote.submit_run(bootstrap, pipeline.name, run_id, params)
    return run_id


def run_states(
    path: str | Path,
    run_id: str,
    bootstrap: str,
    *,
    split: str = "auto",
    name: str | None = None,
) -> tuple[Pipeline, dict[str, Any]]:
    """The latest status message of each step of ``run_id``, from the pipeline's status topic."""
    pipeline = inspect_notebook(path, split, name)
    return pipeline, remote.run_states(bootstrap, pipeline.name, run_id)


def results(
    path: str | Path,
    run_id: str,
    *,
    state: Path | None = None,
    release: str | None = None,
    target: KubeTarget = KubeTarget(),
    output: Path | None = None,
    split: str = "auto",
) -> tuple[str, Path]:
    """Write the results notebook of ``run_id``, read from a state directory or from a
    release's step pods; returns the run's status and the notebook's path."""
    if (state is None) == (release is None):
        raise UsageError(
            "pass exactly one of --state DIR and --release NAME",
            hint="--release reads a deployed pipeline; --state a state directory",
        )
    nb, pipeline = _load(path, split, None)
    output = output or Path(f"{run_id}.ipynb")
    if release is not None:
        _check_run_id(run_id, "RUN_ID")
        source: Any = fetch_run(release, run_id, [s.name for s in pipeline.steps], target)
    else:
        source = state
    return write_results(nb, pipeline, source, run_id, output), output


def _check_run_id(run_id: str, where: str) -> None:
    try:
        check_run_id(run_id)
    except Exception as exc:
        raise UsageError(str(exc), where=where) from None
