"""The library API: every command of the CLI is one call here (as papermill's CLI is a thin layer
over ``execute_notebook``). Notebooks are read once per call; run ids are made here.

Calls that need nothing but their module's function are re-exported as they are
(``deploy``, ``release_status``), as are the types callers handle.
"""

from __future__ import annotations

import contextlib
import dataclasses
import os
import signal
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol

from jup2kub.activity import PipelineStatus, RecentRuns, RunCounts, RunRow, StepStatus
from jup2kub.build import DEFAULT_BASE_IMAGE
from jup2kub.catalog.charts import read_chart
from jup2kub.catalog.lookup import composition_catalog
from jup2kub.catalog.records import BuildFacts, observed_types, sbom_summary, step_records
from jup2kub.catalog.records import StepRecord as StepRecord
from jup2kub.chart.options import STORAGE_MODES, ChartOptions
from jup2kub.cluster.kube import KubeTarget
from jup2kub.cluster.pods import fetch_run
from jup2kub.cluster.readiness import Readiness
from jup2kub.drawing import svg as graph_svg
from jup2kub.drawing import to_mermaid, write_graph
from jup2kub.durations import parse_duration
from jup2kub.errors import (
    InputError,
    Jup2KubError,
    RunInterrupted,
    RunStorageError,
    UsageError,
)
from jup2kub.files import writable
from jup2kub.model.ipython import translate
from jup2kub.model.learned import Learned, read_learned
from jup2kub.model.load import SPLIT_MODES, load
from jup2kub.model.notebook import Notebook
from jup2kub.model.parameters import infer_type
from jup2kub.model.pipeline import Pipeline, value_label
from jup2kub.model.secrets import literal_values
from jup2kub.oci.references import Reference as Reference
from jup2kub.plan import plan_pipeline
from jup2kub.provenance.crate import METADATA as CRATE_METADATA
from jup2kub.provenance.export import export_crate
from jup2kub.provenance.facts import Image
from jup2kub.provenance.local import LocalRun, write_local_crate
from jup2kub.provenance.remote import ReadRun, crate_dir, write_results_crate
from jup2kub.run import housekeeping, recovery, remote
from jup2kub.run.executor import (
    BLOCKED,
    DONE,
    FAILED,
    RUNNING,
    RunResult,
    StepRun,
    new_run_id,
    run_pipeline,
)
from jup2kub.run.local import LocalExecutor
from jup2kub.run.results import copy_results, redacted_notebook, write_results
from jup2kub.run.reuse import RunCache
from jup2kub.run.submitting import PipelineCache, params_file_runs, run_parameters
from jup2kub.run.submitting import refuse_secret_overrides as refuse_secret_overrides
from jup2kub.sharing import (
    SIGNING_PASSWORD_ENV,
    Packaged,
    deploy_from_registry,
    export_bundle,
    import_bundle,
    keygen,
    package,
    sign,
    verify,
    verify_pulled_chart,
)
from jup2kub_runtime.contract.errors import StepRuntimeError
from jup2kub_runtime.contract.valid_names import check_run_id, secret_parameter_env
from jup2kub_runtime.storage.state_store import StateStore
from jup2kub_runtime.storage.stepcache import CACHE_ENV, DEFAULT_DIRNAME, CacheStore

if TYPE_CHECKING:  # modules that load when used (the catalog's database layer, kafka, asyncio)
    from jup2kub.catalog.lite import LiteCatalog
    from jup2kub.catalog.store import Catalog as Catalog
    from jup2kub.cluster.deploy import DeployResult as DeployResult
    from jup2kub.cluster.deploy import deploy as deploy
    from jup2kub.cluster.status import ReleaseStatus as ReleaseStatus
    from jup2kub.cluster.status import release_status as release_status
    from jup2kub.run.kafka import KafkaExecutor

#: re-exported names whose modules load on first use: every command pays for its own imports
#: only (``deploy`` and ``release_status`` bring asyncio; a local run needs neither)
_LAZY = {
    "deploy": "jup2kub.cluster.deploy",
    "DeployResult": "jup2kub.cluster.deploy",
    "release_status": "jup2kub.cluster.status",
    "ReleaseStatus": "jup2kub.cluster.status",
}


def _kafka_executor() -> type[KafkaExecutor]:
    from jup2kub.run.kafka import KafkaExecutor  # kafka-python: for --kafka only

    return KafkaExecutor


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        import importlib

        return getattr(importlib.import_module(_LAZY[name]), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


__all__ = [
    "BLOCKED",
    "DONE",
    "FAILED",
    "RUNNING",
    "SIGNING_PASSWORD_ENV",
    "SPLIT_MODES",
    "STORAGE_MODES",
    "ChartOptions",
    "DeployResult",
    "ImageBuild",
    "KubeTarget",
    "Packaged",
    "Pipeline",
    "PipelineStatus",
    "Readiness",
    "RecentRuns",
    "ReleaseStatus",
    "RunCounts",
    "RunResult",
    "RunRow",
    "StatusWatch",
    "StepRun",
    "StepStatus",
    "build",
    "catalog_add",
    "deploy",
    "deploy_from_registry",
    "export_bundle",
    "export_run",
    "graph_svg",
    "housekeeping",
    "import_bundle",
    "infer_type",
    "inspect_notebook",
    "keygen",
    "open_build_catalog",
    "open_catalog",
    "package",
    "parse_duration",
    "release_status",
    "results",
    "results_crate_path",
    "run",
    "run_states",
    "sign",
    "submit",
    "submit_params_file",
    "to_mermaid",
    "value_label",
    "verify",
    "verify_pulled_chart",
    "watch_status",
    "write_graph",
]

Log = Callable[[str], None]

#: the notebooks' pipelines ``submit`` sends runs of, read once per version of the file
_SUBMITTED = PipelineCache()


def inspect_notebook(path: str | Path, split: str = "auto", name: str | None = None) -> Pipeline:
    """Read a notebook, cut it into steps and work out the values that flow between them.

    ``name`` is the pipeline's name (default: from the notebook's file name)."""
    return _load(path, split, name)[1]


def _load(
    path: str | Path,
    split: str,
    name: str | None,
    catalog: Catalog | LiteCatalog | None = None,
    learned: Learned | None = None,
) -> tuple[Notebook, Pipeline]:
    """``catalog``: where a composition's catalogued steps and types are looked up (default:
    the default catalog, if there is one); ``learned``: what runs saw the cells do that the
    analysis cannot (default: what runs from this directory recorded)."""
    learned = read_learned() if learned is None else learned
    with composition_catalog(catalog) as steps:
        return load(path, split, name, steps, learned)


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
    catalog: Catalog | LiteCatalog | None = None,
) -> tuple[Pipeline, Path]:
    """Build the step images (unless ``image_build`` is None) and write the Helm chart, with
    the images' tags/digests and the dependency locks, to ``out`` in one atomic step; then
    record the steps in ``catalog`` (when given)."""
    from jup2kub.chart.render import code_files  # jinja2: builds only
    from jup2kub.chart.write import check_output_outside, write_chart  # jinja2 too

    check_output_outside(Path(out), {"notebook": Path(path)})
    nb, pipeline = _load(path, split, name, catalog)
    require_storable(pipeline)
    plan = plan_pipeline(pipeline)
    options = options or ChartOptions()
    audit: dict[str, bytes] = {}
    facts = BuildFacts()
    if image_build is not None:
        # the Docker SDK and CycloneDX load only when images are built
        from jup2kub.build import deps, images, sbom

        code_files(plan)  # a code bundle too big for the chart: refused before the images
        if image_build.push:
            sbom.check_attach()  # refused before anything is pushed

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
            catalogued=catalog.images_with_tag if catalog is not None else None,
        )
        options = dataclasses.replace(
            options,
            image_tags=built.tags,
            image_digests=built.digests,
            image_repositories=built.repositories,
        )
        boms = sbom.for_build(client, built, locks, attach=image_build.push, log=log)
        audit = {**images.build_files(captured, locks, built), **sbom.sbom_files(boms)}
        facts = BuildFacts(
            locks=dict(locks.steps),
            images={s: i.reference for s, i in built.images.items()},
            digests={s: i.digest or i.image_id for s, i in built.images.items()},
            sboms={s: sbom_summary(b.data, b.attached) for s, b in boms.items()},
        )
    written = write_chart(plan, Path(out), options, audit)
    if catalog is not None:
        types = observed_types(Path(".jup2kub") / pipeline.name, [s.name for s in pipeline.steps])
        catalog.add(step_records(nb, pipeline, origin="build", build=facts, types=types))
    return pipeline, written


def chart_images(chart: Path) -> list[str]:
    """The step images a built chart names (``repository:tag``, with its registry), read from
    its values.yaml: what ``build --no-images`` left to build."""
    import yaml

    try:
        values = yaml.safe_load((Path(chart) / "values.yaml").read_text(encoding="utf-8"))
    except (OSError, yaml.YAMLError):
        return []
    registry = str((values.get("image") or {}).get("registry") or "")
    names = []
    for step in (values.get("steps") or {}).values():
        image = (step or {}).get("image") or {}
        ref = f"{image.get('repository')}:{image.get('tag')}"
        names.append(f"{registry.rstrip('/')}/{ref}" if registry else ref)
    return names


def run(
    path: str | Path,
    parameters: Mapping[str, Any] | None = None,
    *,
    parameter_files: Sequence[Path] = (),
    parameter_yaml: Sequence[str] = (),
    parameter_strings: Sequence[tuple[str, str]] = (),
    split: str = "auto",
    name: str | None = None,
    workdir: Path | None = None,
    output: Path | None = None,
    jobs: int | None = None,
    resume: str | None = None,
    kafka: str | None = None,
    on_change: Callable[[dict[str, StepRun]], None] | None = None,
    warn: Log | None = None,
    kafka_timeout: float = 60,
    cache: bool = True,
    cache_dir: Path | None = None,
    timeout: float | None = None,
    on_output: Callable[[str, str], None] | None = None,
) -> RunResult:
    """Run the notebook's pipeline on this machine: one process per step, or with ``kafka``
    one runtime per step on that broker. The default WORKDIR is ``.jup2kub/PIPELINE``.
    ``warn`` gets each way the split differs from the notebook's Kale tags, before the run.
    ``kafka_timeout``: how long the broker may take to answer before the run is an error.

    Steps whose cache key is unchanged are reused from ``cache_dir`` (default WORKDIR/cache;
    ``cache`` False: every step executes); not with ``kafka``.

    ``parameter_yaml`` (``-y``) and ``parameter_strings`` (``-p`` pairs, typed against the
    notebook's values) add to ``parameters``; ``output`` also gets the results notebook.
    ``timeout`` bounds the run (seconds: its running steps are killed, it can be resumed);
    ``on_output`` gets each line the cells print (step, line), as they print it (both in
    either mode). The run's RO-Crate is written in its directory (``RunResult.crate``), also
    when it failed."""
    if resume is not None:
        _check_run_id(resume, "--resume")
    if output is not None:
        _check_output_file(Path(output), Path(path))
    nb, pipeline = _load(path, split, name)
    for warning in pipeline.split_warnings:
        if warn is not None:
            warn(str(warning))
    require_storable(pipeline)
    params = run_parameters(
        pipeline, parameters, parameter_files, parameter_yaml, parameter_strings
    )
    secrets = secret_environment(nb, pipeline, params)
    workdir = workdir or Path(".jup2kub") / pipeline.name
    if kafka and cache_dir is not None:
        raise UsageError(
            "--cache-dir works with the embedded mode only",
            hint="with --kafka the runtimes keep the step cache in WORKDIR/cache (the state "
            "volume's cache/ on a cluster)",
        )
    store = CacheStore(cache_dir or workdir / DEFAULT_DIRNAME) if cache and not kafka else None

    def attempt(
        nb: Notebook, pipeline: Pipeline, resume: str | None, recovered: list[dict[str, Any]]
    ) -> RunResult:
        executor = (
            _kafka_executor()(
                kafka,
                environment={**secrets, **({} if cache else {CACHE_ENV: "off"})},
                connect_timeout=kafka_timeout,
                limit=timeout,
                on_output=on_output,
            )
            if kafka
            else LocalExecutor(jobs, environment=secrets, timeout=timeout, on_output=on_output)
        )
        reuse = None if kafka else RunCache(store, resumed=resume is not None)
        return run_pipeline(
            nb,
            pipeline,
            workdir,
            params,
            executor,
            resume=resume,
            on_change=on_change,
            cache=reuse,
            recovered=recovered,
        )

    started = datetime.now(timezone.utc)
    try:
        result = attempt(nb, pipeline, resume, [])
        result = _recover(
            result,
            nb,
            pipeline,
            attempt,
            lambda learned: _load(path, split, name, None, learned),
            resumable=not kafka,
            warn=warn,
        )
    except RunInterrupted as exc:
        _interrupted_crate(exc, nb, pipeline, started)
        raise
    result.crate = _run_crate(result, nb, pipeline, started)
    if output is not None:
        result.output = copy_results(result.notebook, Path(output))
    return result


def _effective_parameters(pipeline: Pipeline, given: Mapping[str, Any]) -> dict[str, Any]:
    """Every parameter's value in the run: the notebook's own (an expression as written)
    unless given; secrets are left out (they are named, never valued)."""
    secret = {s.name for s in pipeline.secret_parameters}
    values = {**pipeline.parameters, **pipeline.parameter_expressions, **given}
    return {k: v for k, v in values.items() if k not in secret}


def _interrupted_crate(
    exc: RunInterrupted, nb: Notebook, pipeline: Pipeline, started: datetime
) -> None:
    """An interrupted run's crate: failed, saying so, with what its steps had done (a crate
    that cannot be written must not hide the interruption)."""
    with contextlib.suppress(OSError, ValueError, Jup2KubError, StepRuntimeError):
        store = StateStore(Path(exc.workdir))
        given = dict((store.run_info(exc.run_id) or {}).get("parameters") or {})
        facts = LocalRun(
            run_id=exc.run_id,
            pipeline=pipeline.name,
            notebook=Path(nb.path),
            notebook_copy=_notebook_copy(nb, pipeline),
            steps=[s.name for s in pipeline.steps],
            parameters=_effective_parameters(pipeline, given),
            secrets={s.name: s.environment for s in pipeline.secret_parameters},
            reused=frozenset(),
            start=started,
            end=datetime.now(timezone.utc),
            error=f"interrupted by {signal.Signals(exc.signum).name}",
        )
        write_local_crate(store, facts)


def _notebook_copy(nb: Notebook, pipeline: Pipeline) -> bytes:
    """The notebook as a run's crate keeps it: the file itself, or, when it has secret
    parameters, the notebook without their literals (the crate then names the file's hash)."""
    if not pipeline.secret_parameters:
        return Path(nb.path).read_bytes()
    return redacted_notebook(nb.node, pipeline).encode("utf-8")


def _run_crate(result: RunResult, nb: Notebook, pipeline: Pipeline, started: datetime) -> Path:
    """The run's RO-Crate, in its own directory: written for a failed run too (saying so),
    so that every results notebook has its provenance beside it."""
    failed = "; ".join(
        f"step {st.name!r}: {st.error.ename}: {st.error.evalue}" if st.error else st.name
        for st in result.failed
    )
    facts = LocalRun(
        run_id=result.run_id,
        pipeline=pipeline.name,
        notebook=Path(nb.path),
        notebook_copy=_notebook_copy(nb, pipeline),
        steps=list(result.steps),
        parameters=_effective_parameters(pipeline, result.parameters),
        secrets={s.name: s.environment for s in pipeline.secret_parameters},
        reused=frozenset(n for n, st in result.steps.items() if st.reused),
        start=started,
        end=datetime.now(timezone.utc),
        error=failed or ("timed out" if result.timed_out else None),
        written={s.name: s.written_files for s in pipeline.steps},
    )
    try:
        return write_local_crate(StateStore(result.workdir), facts)
    except OSError as exc:
        raise RunStorageError(
            f"cannot write the RO-Crate of run {result.run_id!r} ({exc.strerror or exc})",
            where=str(result.workdir),
            hint=f"its results notebook is at {result.notebook}",
        ) from exc


def _recover(
    result: RunResult,
    nb: Notebook,
    pipeline: Pipeline,
    attempt: Callable[[Notebook, Pipeline, str | None, list[dict[str, Any]]], RunResult],
    reload: Callable[[Learned], tuple[Notebook, Pipeline]],
    *,
    resumable: bool,
    warn: Log | None,
) -> RunResult:
    """Go on from failures the guard caught (``run.recovery``), re-planned each time as if the
    analysis had seen the change; ``result`` when there is none, or when going on could differ
    from the notebook (its ``unrecovered`` says why)."""
    records: list[dict[str, Any]] = []
    for _ in range(recovery.MAX_REPLANS):
        if result.ok or result.timed_out:
            break
        step = recovery.replan(result, nb, pipeline, reload, resumable=resumable, warn=warn)
        if step is None:
            break
        if step.refused is not None:
            result.unrecovered = step.refused
            break
        for line in step.warnings:
            if warn is not None:
                warn(line)
        records += step.records
        nb, pipeline = step.nb, step.pipeline
        result = attempt(nb, pipeline, result.run_id if resumable else None, records)
    return result


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


def submit(
    path: str | Path,
    bootstrap: str,
    parameters: Mapping[str, Any] | None = None,
    *,
    parameter_files: Sequence[Path] = (),
    parameter_yaml: Sequence[str] = (),
    parameter_strings: Sequence[tuple[str, str]] = (),
    run_id: str | None = None,
    split: str = "auto",
    name: str | None = None,
    kafka_timeout: float = remote.CONNECT_TIMEOUT,
) -> str:
    """Submit a run of the notebook's deployed pipeline through its Kafka (waiting up to
    ``kafka_timeout`` s for it to answer), acknowledged before this returns its run id.
    Thread-safe and cheap per run: one producer per process, the notebook read once per version."""
    pipeline = _SUBMITTED.get(path, split, name, inspect_notebook)
    params = run_parameters(
        pipeline, parameters, parameter_files, parameter_yaml, parameter_strings
    )
    run_id = run_id or new_run_id()
    _check_run_id(run_id, "--run-id")
    remote.submit_run(bootstrap, pipeline.name, run_id, params, connect_timeout=kafka_timeout)
    return run_id


def submit_params_file(
    path: str | Path,
    bootstrap: str,
    params_file: Path,
    *,
    parameter_files: Sequence[Path] = (),
    parameter_yaml: Sequence[str] = (),
    parameter_strings: Sequence[tuple[str, str]] = (),
    split: str = "auto",
    name: str | None = None,
    kafka_timeout: float = remote.CONNECT_TIMEOUT,
) -> list[str]:
    """Submit one run per line of ``params_file`` (a JSON object of parameter values, over
    those of the other parameter arguments), every line checked before any is sent, all sent
    with one producer and each acknowledged: their run ids, in the file's order."""
    pipeline = _SUBMITTED.get(path, split, name, inspect_notebook)
    base = run_parameters(pipeline, None, parameter_files, parameter_yaml, parameter_strings)
    runs = [(new_run_id(), p) for p in params_file_runs(pipeline, params_file, base)]
    remote.submit_runs(bootstrap, pipeline.name, runs, connect_timeout=kafka_timeout)
    return [run_id for run_id, _ in runs]


def run_states(
    path: str | Path,
    run_id: str,
    bootstrap: str,
    *,
    split: str = "auto",
    name: str | None = None,
    kafka_timeout: float = remote.CONNECT_TIMEOUT,
) -> tuple[Pipeline, dict[str, Any]]:
    """The latest status message of each step of ``run_id``, from the pipeline's status topic."""
    pipeline = inspect_notebook(path, split, name)
    states = remote.run_states(bootstrap, pipeline.name, run_id, connect_timeout=kafka_timeout)
    return pipeline, states


class StatusWatch(Protocol):
    """A pipeline followed live: ``snapshot()`` reads what it does now (one row per step),
    ``recent_runs(n)`` its ``n`` newest runs (each step's state in each); ``close()`` lets go
    of its connections."""

    def snapshot(self) -> PipelineStatus: ...

    def recent_runs(self, limit: int) -> RecentRuns: ...

    def close(self) -> None: ...


def watch_status(
    path: str | Path | None = None,
    bootstrap: str | None = None,
    *,
    release: str | None = None,
    target: KubeTarget = KubeTarget(),
    split: str = "auto",
    name: str | None = None,
    kafka_timeout: float = remote.CONNECT_TIMEOUT,
    runs: int = 10,
) -> StatusWatch:
    """Follow a deployed pipeline, step by step: the notebook's pipeline on its Kafka
    (``path`` and ``bootstrap``: ``run.activity`` says what is read there), or a release
    through the Kubernetes API (``release``; ``cluster.activity``; ``runs``: how many recent
    runs it considers)."""
    if release is not None:
        if path is not None or bootstrap is not None:
            raise UsageError(
                "--release takes no NOTEBOOK, RUN_ID or --kafka",
                hint="use `jup2kub status --release NAME --watch [-n NAMESPACE]`",
            )
        from jup2kub.cluster.activity import ReleaseActivity  # the Kubernetes client: on use

        return ReleaseActivity(release, target, runs)
    if path is None or bootstrap is None:
        raise UsageError(
            "--watch needs NOTEBOOK --kafka BOOTSTRAP, or --release NAME",
            hint="e.g. `jup2kub status nb.ipynb --kafka host:9092 --watch`",
        )
    from jup2kub.run.activity import KafkaActivity  # kafka-python: for --kafka only

    plan = plan_pipeline(inspect_notebook(path, split, name))
    return KafkaActivity(bootstrap, plan, kafka_timeout)


def results(
    path: str | Path,
    run_id: str,
    *,
    state: Path | None = None,
    release: str | None = None,
    target: KubeTarget = KubeTarget(),
    output: Path | None = None,
    split: str = "auto",
    timeout: float = 60.0,
    crate: bool = True,
) -> tuple[str, Path]:
    """Write the results notebook of ``run_id``, read from a state directory or from a
    release's step pods (waiting up to ``timeout`` s for each step to have a ready pod), and
    (``crate``) the run's RO-Crate in ``OUTPUT-crate/`` beside it (``results_crate_path``);
    returns the run's status and the notebook's path."""
    if (state is None) == (release is None):
        raise UsageError(
            "pass exactly one of --state DIR and --release NAME",
            hint="--release reads a deployed pipeline; --state a state directory",
        )
    nb, pipeline = _load(path, split, None)
    output = output or Path(f"{run_id}.ipynb")
    if release is not None:
        _check_run_id(run_id, "RUN_ID")
        source: Any = fetch_run(release, run_id, [s.name for s in pipeline.steps], target, timeout)
    else:
        source = state
    status = write_results(nb, pipeline, source, run_id, output)
    if crate:
        store = StateStore(source) if isinstance(source, Path) else source
        _results_crate(store, nb, pipeline, run_id, output)
    return status, output


def results_crate_path(output: Path) -> Path:
    """Where ``results`` wrote the RO-Crate of the results notebook ``output``."""
    return crate_dir(Path(output)) / CRATE_METADATA


def _results_crate(
    source: Any, nb: Notebook, pipeline: Pipeline, run_id: str, output: Path
) -> Path:
    """The run's RO-Crate, in ``OUTPUT-crate/`` beside the results notebook."""
    given = dict((source.run_info(run_id) or {}).get("parameters") or {})
    parameters = _effective_parameters(pipeline, given)
    images = {s: Image(ref, digest) for s, (ref, digest) in getattr(source, "images", {}).items()}
    read = ReadRun(
        run_id,
        pipeline.name,
        Path(nb.path),
        _notebook_copy(nb, pipeline),
        output,
        [s.name for s in pipeline.steps],
        parameters,
        {s.name: s.environment for s in pipeline.secret_parameters},
        images,
    )
    with writable("the run's RO-Crate", crate_dir(output), "pass -o in a writable directory"):
        return write_results_crate(source, read)


def _check_output_file(output: Path, notebook: Path) -> None:
    """The results notebook may go anywhere but over the notebook itself or a directory."""
    if output.is_dir():
        raise UsageError(
            "the results notebook's path is a directory", where=str(output), hint="name a file"
        )
    if output.exists() and notebook.exists() and output.resolve() == notebook.resolve():
        raise UsageError(
            "the results notebook would replace the notebook being run",
            where=str(output),
            hint="name another file, e.g. out.ipynb",
        )


def _check_run_id(run_id: str, where: str) -> None:
    try:
        check_run_id(run_id)
    except Exception as exc:
        raise UsageError(str(exc), where=where) from None


def catalog_add(
    catalog: Catalog,
    path: str | Path,
    *,
    split: str = "auto",
    name: str | None = None,
    workdir: Path | None = None,
) -> list[StepRecord]:
    """Record the steps of a notebook, or of a chart written by ``build`` (with its locks and
    images), in ``catalog``; types come from the newest local run under ``workdir`` (default
    ``.jup2kub/PIPELINE``)."""
    path = Path(path)
    build_facts = BuildFacts()
    origin = "notebook"
    if path.is_dir():
        chart = read_chart(path)
        nb, pipeline = _load(chart.notebook, split, name or chart.pipeline)
        if split == "auto" and chart.split != pipeline.split:
            nb, pipeline = _load(chart.notebook, chart.split, name or chart.pipeline)
        build_facts, origin = chart.build, "chart"
    else:
        nb, pipeline = _load(path, split, name, catalog)
    types = observed_types(
        workdir or Path(".jup2kub") / pipeline.name, [s.name for s in pipeline.steps]
    )
    records = step_records(nb, pipeline, origin=origin, build=build_facts, types=types)
    catalog.add(records)
    return records


def open_catalog(location: str | None = None) -> Catalog:
    """The step catalog at ``location`` (a SQLite path or database URL; default:
    ``$JUP2KUB_CATALOG``, else the user's data directory), its schema brought up to date."""
    from jup2kub.catalog.store import Catalog  # SQLAlchemy: only when a catalog is opened

    return Catalog(location)


def open_build_catalog(location: str | None = None) -> Catalog | LiteCatalog:
    """The catalog ``build`` records in: a current SQLite catalog through ``sqlite3`` alone
    (SQLAlchemy's import is most of what recording costs), anything else as ``open_catalog``."""
    from jup2kub.catalog.lite import LiteCatalog  # sqlite3: only for a build that records

    return LiteCatalog.open(location) or open_catalog(location)


def export_run(run_id: str, target: Path, workdir: Path | None = None) -> tuple[Path, int]:
    """Pack local run ``run_id``'s RO-Crate with its files into the zip ``target`` (found in
    ``workdir``, default: every pipeline's under ``.jup2kub``); returns it and its file count."""
    _check_run_id(run_id, "RUN_ID")
    found = [wd for wd in housekeeping.workdirs(workdir) if (wd / "runs" / run_id).is_dir()]
    if not found:
        raise InputError(
            f"there is no run {run_id!r}",
            where=str(workdir or Path(".jup2kub")),
            hint="list the runs with `jup2kub runs` (pass the run's --workdir if it had one)",
        )
    return export_crate(found[0] / "runs" / run_id, Path(target))
