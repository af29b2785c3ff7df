"""Command line: parses arguments, calls the library API (``jup2kub.api``), prints results.

Errors raised on purpose (``Jup2KubError``) are printed without a traceback; input and usage
errors exit with code 2, like click's own usage errors. What was repaired on reading a notebook
(``NotebookRepairedWarning``) is printed as one ``warning:`` line.
"""

from __future__ import annotations

import atexit
import contextlib
import functools
import gc
import json
import signal
import sys
import warnings
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any, TextIO, TypeVar

import click

from jup2kub import __version__, api
from jup2kub.api import Pipeline, value_label
from jup2kub.errors import Jup2KubError, NotebookRepairedWarning, Terminated, UsageError

F = TypeVar("F", bound=Callable[..., Any])


def _reports_errors(func: F) -> F:
    @functools.wraps(func)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        try:
            with warnings.catch_warnings(), _signals_raise():
                warnings.simplefilter("always", NotebookRepairedWarning)
                warnings.showwarning = _show_warning
                return func(*args, **kwargs)
        except Jup2KubError as exc:
            click.echo(f"error: {exc}", err=True)
            sys.exit(exc.exit_code)
        except (KeyboardInterrupt, Terminated) as exc:
            signum = exc.signum if isinstance(exc, Terminated) else signal.SIGINT
            click.echo(f"interrupted ({signal.Signals(signum).name})", err=True)
            sys.exit(128 + signum)

    return wrapper  # type: ignore[return-value]


@contextlib.contextmanager
def _signals_raise() -> Iterator[None]:
    """SIGTERM and SIGHUP raise ``Terminated`` while a command runs (as Ctrl-C raises
    KeyboardInterrupt), so that it ends its child processes and says what it left."""

    def handler(signum: int, _frame: Any) -> None:
        raise Terminated(signum)

    previous = {s: signal.signal(s, handler) for s in (signal.SIGTERM, signal.SIGHUP)}
    try:
        yield
    finally:
        for s, h in previous.items():
            signal.signal(s, h)


_python_showwarning = warnings.showwarning


def _show_warning(
    message: Warning | str,
    category: type[Warning],
    filename: str,
    lineno: int,
    file: TextIO | None = None,
    line: str | None = None,
) -> None:
    """Our own warnings as ``warning:`` lines on stderr; any other the Python way."""
    if issubclass(category, NotebookRepairedWarning):
        click.echo(f"warning: {message}", err=True)
    else:
        _python_showwarning(message, category, filename, lineno, file, line)


split_option = click.option(
    "--split",
    type=click.Choice(api.SPLIT_MODES),
    default="auto",
    show_default=True,
    help="How to cut the notebook into steps: Kale cell tags, '#| step:' markers, markdown "
    "headings, one step per code cell, or auto (the first of those the notebook uses).",
)


name_option = click.option(
    "--name",
    default=None,
    help="The pipeline's name, as given to `jup2kub build --name` [default: from the notebook "
    "file]. Topics, images and the work directory are named after it.",
)


def parameter_options(func: F) -> F:
    """-p NAME VALUE (repeatable) and -f FILE (repeatable), as papermill spells them."""
    func = click.option(
        "-f",
        "--parameters-file",
        "files",
        multiple=True,
        type=click.Path(exists=True, dir_okay=False, path_type=Path),
        help="YAML file of parameters (applied before -p).",
    )(func)
    return click.option(
        "-p",
        "--parameters",
        "pairs",
        nargs=2,
        multiple=True,
        metavar="NAME VALUE",
        help="Set a parameter (type inferred as papermill does: int, float, True/False/None, str).",
    )(func)


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="jup2kub")
def main() -> None:
    """Turn a Jupyter notebook into a fault-tolerant pipeline on Kubernetes."""
    # Nothing the command built needs collecting at exit: freezing it skips the collector's
    # walk over every object at interpreter shutdown (50-100 ms per command, measured).
    atexit.register(gc.freeze)


@main.command()
@click.argument("notebook", type=click.Path(dir_okay=False, path_type=Path))
@split_option
@click.option("--json", "as_json", is_flag=True, help="Print the step graph as JSON.")
@click.option(
    "--graph",
    type=click.Path(dir_okay=False, path_type=Path),
    help="Also draw the graph to FILE (.svg/.png with Graphviz, .dot, or .mmd for Mermaid).",
)
@name_option
@_reports_errors
def inspect(
    notebook: Path, split: str, as_json: bool, graph: Path | None, name: str | None
) -> None:
    """Show the steps of NOTEBOOK and the values that flow between them."""
    pipeline = api.inspect_notebook(notebook, split, name)
    if graph is not None:
        api.write_graph(pipeline, graph)
    if as_json:
        click.echo(json.dumps(pipeline.to_json(), indent=2))
    else:
        click.echo(format_pipeline(pipeline))
    _split_warnings(pipeline)
    for warning in pipeline.warnings:
        click.echo(f"warning: {warning}", err=True)
    for problem in pipeline.unshippable:
        click.echo(f"warning: {problem} (run and build will refuse this)", err=True)


def _warn(message: str) -> None:
    click.echo(f"warning: {message}", err=True)


def _split_warnings(pipeline: Pipeline) -> None:
    """What the split honours differently from Kale's tags, or ignores."""
    for warning in pipeline.split_warnings:
        _warn(str(warning))


def _names(items: list[str] | set[str]) -> str:
    return ", ".join(sorted(items)) if items else "-"


def format_pipeline(p: Pipeline) -> str:
    """The human-readable view of ``inspect``."""
    out = [
        f"pipeline:   {p.name}",
        f"notebook:   {p.notebook}",
        f"split:      {p.split} ({len(p.steps)} steps)",
    ]
    if p.parameter_cells:
        params = ", ".join(f"{k}={v!r}" for k, v in p.parameters.items()) or "-"
        cells = ", ".join(map(str, p.parameter_cells))
        out.append(f"parameters: {params} (cell {cells})")
    if p.prelude:
        out.append(f"prelude:    cells {', '.join(map(str, p.prelude))} (run in every step)")
    if p.skipped:
        out.append(f"skipped:    cells {', '.join(map(str, p.skipped))}")
    for s in p.steps:
        out.append("")
        out.append(f"step {s.name}  (cells {', '.join(map(str, s.cells))})")
        for why in s.grouping:
            out.append(f"  grouped:    {why}")
        for m in p.step_maps(s):
            chunk = "automatic" if m.chunk is None else str(m.chunk)
            into = m.result or ", ".join(m.accumulators)
            out.append(
                f"  map:        cell {m.cell}, line {m.line}: {m.form} over {m.iterable} -> "
                f"{into} (elements in parallel, chunk {chunk})"
            )
        inputs = [f"{value_label(v)} <- {src}" for v, src in sorted(s.inputs.items())]
        out.append(f"  inputs:     {', '.join(inputs) or '-'}")
        out.append(f"  parameters: {_names(s.parameters)}")
        readers = {
            v: [d.name for d in p.steps if d.inputs.get(v) == s.name] for v in sorted(s.outputs)
        }
        outputs = [f"{value_label(v)} -> {', '.join(r)}" for v, r in readers.items()]
        out.append(f"  outputs:    {'; '.join(outputs) or '-'}")
        code = sorted({n for d in s.replay if d.kind == "code" for n in d.names})
        if code:
            out.append(f"  re-runs:    {', '.join(code)}")
        out.append(f"  after:      {_names(s.after) if s.after else '-'}")
        if s.barrier is not None:
            cell, why = s.barrier
            out.append(
                f"  barrier:    cell {cell} {why}: runs after every earlier step, "
                "before every later one"
            )
        for up, paths in sorted(s.file_deps.items()):
            out.append(f"  files:      {', '.join(sorted(paths))} (shared with {up})")
        secrets = {env: f"secret {name}, key {key}" for env, (name, key) in s.pod.secrets.items()}
        for title, settings in (
            ("limits", s.pod.limits),
            ("labels", s.pod.labels),
            ("annotations", s.pod.annotations),
            ("secrets", secrets),
        ):
            if settings:
                shown = ", ".join(f"{k}={v}" for k, v in sorted(settings.items()))
                out.append(f"  {title + ':':<12}{shown}")
    out.append("")
    out.append("run order (steps on one line can run in parallel):")
    for i, wave in enumerate(p.levels(), 1):
        out.append(f"  {i}. {', '.join(wave)}")
    return "\n".join(out)


@main.command()
@click.argument("notebook", type=click.Path(dir_okay=False, path_type=Path))
@click.option(
    "-o",
    "--output",
    "out",
    required=True,
    type=click.Path(file_okay=False, path_type=Path),
    help="Directory for the Helm chart (an earlier build there is replaced atomically).",
)
@split_option
@click.option("--no-images", is_flag=True, help="Write the chart only; do not build step images.")
@click.option(
    "--storage",
    type=click.Choice(api.STORAGE_MODES),
    default="local",
    show_default=True,
    help="Shared state storage the chart provisions by default.",
)
@click.option(
    "--kafka-nodes",
    type=click.Choice(["1", "3"]),
    default="3",
    show_default=True,
    help="Kafka brokers (KRaft) in the default values.",
)
@click.option(
    "--replicas",
    type=click.IntRange(min=1),
    default=3,
    show_default=True,
    help="Replicas per step in the default values.",
)
@click.option(
    "--efs-file-system-id",
    default="",
    metavar="FS_ID",
    help="EFS file system for --storage efs (dynamic access points).",
)
@click.option(
    "--existing-claim",
    default="",
    metavar="PVC",
    help="PersistentVolumeClaim for --storage existingClaim.",
)
@click.option("--image-registry", default="", help="Registry prefix of the step images.")
@click.option("--chart-version", default="0.1.0", show_default=True, help="Chart version (SemVer).")
@name_option
@click.option(
    "--base-image",
    default=api.ImageBuild.base_image,
    show_default=True,
    help="Base image of the step images (needs python3, glibc).",
)
@click.option(
    "--platform", default=None, help="Image platform, e.g. linux/arm64 [default: the engine's]."
)
@click.option("--push", is_flag=True, help="Push the images and pin them by digest in the chart.")
@click.option(
    "--trace",
    is_flag=True,
    help="Also run the notebook under ReproZip to find "
    "dynamically loaded packages and data files (Linux).",
)
@click.option(
    "--data-files",
    type=click.Choice(["copy", "volume"]),
    default="copy",
    show_default=True,
    help="With --trace: copy data files into the images (large "
    "ones go to the volume anyway) or only list them for the shared volume.",
)
@_reports_errors
def build(
    notebook: Path,
    out: Path,
    split: str,
    no_images: bool,
    storage: str,
    kafka_nodes: str,
    replicas: int,
    image_registry: str,
    chart_version: str,
    name: str | None,
    efs_file_system_id: str,
    existing_claim: str,
    base_image: str,
    platform: str | None,
    push: bool,
    trace: bool,
    data_files: str,
) -> None:
    """Build NOTEBOOK's pipeline as a Helm chart in OUT (plus its step images)."""
    if no_images and (push or trace):
        raise UsageError("--push and --trace build images; drop them or --no-images")
    options = api.ChartOptions(
        storage=storage,
        kafka_nodes=int(kafka_nodes),
        replicas=replicas,
        image_registry=image_registry,
        chart_version=chart_version,
        efs_file_system_id=efs_file_system_id,
        existing_claim=existing_claim,
    )
    image_build = None
    if not no_images:
        image_build = api.ImageBuild(
            base_image=base_image,
            platform=platform,
            push=push,
            trace=trace,
            data_files=data_files,
        )
    pipeline, written = api.build(
        notebook, out, split, options, image_build, log=click.echo, name=name
    )
    _split_warnings(pipeline)
    click.echo(f"chart for {len(pipeline.steps)} steps written to {written}")
    click.echo(f"install it with: helm install mypipeline {written}")


@main.command()
@click.argument(
    "chart_dir", metavar="OUT", type=click.Path(file_okay=False, exists=True, path_type=Path)
)
@click.option(
    "--destination",
    "-d",
    type=click.Path(file_okay=False, path_type=Path),
    default=None,
    help="Where the .tgz and index.yaml go [default: current directory].",
)
@click.option(
    "--repo-index",
    "repo_index",
    metavar="URL",
    default=None,
    help="Base URL the chart repository will be served from (index.yaml urls).",
)
@_reports_errors
def package(chart_dir: Path, destination: Path | None, repo_index: str | None) -> None:
    """Package the chart in OUT as a .tgz and index it as a chart repository (via helm)."""
    tgz = api.package(chart_dir, destination, repo_index)
    click.echo(f"packaged {tgz}")
    click.echo(f"repository index: {tgz.parent / 'index.yaml'}")


def _progress_table(steps: dict[str, api.StepRun]) -> Any:
    from rich.table import Table

    table = Table(box=None, show_header=True, header_style="bold")
    table.add_column("step")
    table.add_column("state")
    table.add_column("time", justify="right")
    colors = {"succeeded": "green", "failed": "red", "running": "yellow", "blocked": "magenta"}
    for st in steps.values():
        seconds = st.seconds
        state = st.state.value + (" (reused)" if st.reused else "")
        table.add_row(
            st.name,
            f"[{colors.get(st.state.value, 'white')}]{state}[/]",
            "" if seconds is None else f"{seconds:.1f}s",
        )
    return table


@main.command()
@click.argument("notebook", type=click.Path(dir_okay=False, path_type=Path))
@parameter_options
@split_option
@click.option(
    "--workdir",
    type=click.Path(file_okay=False, path_type=Path),
    default=None,
    help="State and results go to WORKDIR/runs/RUN_ID/ [default: .jup2kub/PIPELINE]",
)
@click.option(
    "--jobs",
    "-j",
    type=click.IntRange(min=1),
    default=None,
    help="Steps run at once [default: CPU count].",
)
@click.option(
    "--resume",
    "resume",
    metavar="RUN_ID",
    default=None,
    help="Re-run only the steps of RUN_ID that did not complete.",
)
@click.option(
    "--kafka",
    "kafka",
    metavar="BOOTSTRAP",
    default=None,
    help="Run one runtime process per step on this Kafka and submit the run through it: "
    "the cluster's data path, on this machine.",
)
@name_option
@_reports_errors
def run(
    notebook: Path,
    pairs: tuple[tuple[str, str], ...],
    files: tuple[Path, ...],
    split: str,
    workdir: Path | None,
    jobs: int | None,
    resume: str | None,
    kafka: str | None,
    name: str | None,
) -> None:
    """Run NOTEBOOK's pipeline on this machine and write a results notebook."""
    live = None
    if sys.stderr.isatty():
        from rich.console import Console
        from rich.live import Live

        live = Live(console=Console(stderr=True), refresh_per_second=8, transient=False)
        live.start()

    def show(steps: dict[str, api.StepRun]) -> None:
        if live is not None:
            live.update(_progress_table(steps))

    try:
        result = api.run(
            notebook,
            _typed(pairs),
            parameter_files=files,
            split=split,
            name=name,
            workdir=workdir,
            jobs=jobs,
            resume=resume,
            kafka=kafka,
            on_change=show,
            warn=_warn,
        )
    finally:
        if live is not None:
            live.stop()
    click.echo(f"run {result.run_id}: {'succeeded' if result.ok else 'failed'}")
    click.echo(f"results notebook: {result.notebook}")
    click.echo(f"summary: {result.summary}")
    if not result.ok:
        for st in result.failed:
            err = st.error
            if err is None:
                continue
            where = f"in cell {err.cell}" if err.cell is not None else "outside its cells"
            click.echo(
                f"error: step {st.name!r} failed {where}: {err.ename}: {err.evalue}", err=True
            )
            for line in err.traceback:
                click.echo(f"  {line}", err=True)
        blocked = [s.name for s in result.steps.values() if s.state == api.BLOCKED]
        if blocked:
            click.echo(f"not run (upstream failed): {', '.join(blocked)}", err=True)
        click.echo(
            f"hint: fix the notebook, then `jup2kub run {notebook} --workdir {result.workdir} "
            f"--resume {result.run_id}` re-runs only what did not complete",
            err=True,
        )
        sys.exit(1)


kafka_option = click.option(
    "--kafka",
    "bootstrap",
    metavar="BOOTSTRAP",
    required=True,
    help="The pipeline's Kafka (host:port; for a cluster, a `kubectl port-forward`).",
)


@main.command()
@click.argument("notebook", type=click.Path(dir_okay=False, path_type=Path))
@kafka_option
@parameter_options
@click.option("--run-id", default=None, help="Choose the run id [default: generated].")
@split_option
@name_option
@_reports_errors
def submit(
    notebook: Path,
    bootstrap: str,
    pairs: tuple[tuple[str, str], ...],
    files: tuple[Path, ...],
    run_id: str | None,
    split: str,
    name: str | None,
) -> None:
    """Submit a run of NOTEBOOK's deployed pipeline; prints the run id."""
    click.echo(
        api.submit(
            notebook,
            bootstrap,
            _typed(pairs),
            parameter_files=files,
            run_id=run_id,
            split=split,
            name=name,
        )
    )


def _typed(pairs: tuple[tuple[str, str], ...]) -> dict[str, Any]:
    """``-p NAME VALUE`` pairs with their types inferred as papermill does."""
    return {key: api.infer_type(value) for key, value in pairs}


def kube_options(func: F) -> F:
    """--namespace/--kubeconfig/--context, as helm and kubectl spell them."""
    func = click.option(
        "--context",
        "context",
        default=None,
        metavar="NAME",
        help="Kube context [default: the current one].",
    )(func)
    func = click.option(
        "--kubeconfig",
        type=click.Path(dir_okay=False, exists=True, path_type=Path),
        default=None,
        help="Kubeconfig file [default: $KUBECONFIG or ~/.kube/config].",
    )(func)
    func = click.option(
        "-n", "--namespace", default=None, help="Namespace [default: the context's]."
    )(func)
    return func


def _target(namespace: str | None, kubeconfig: Path | None, context: str | None) -> api.KubeTarget:
    return api.KubeTarget(kubeconfig, context, namespace)


def _readiness_table(state: api.Readiness) -> Any:
    from rich.table import Table

    table = Table(box=None, pad_edge=False)
    for col in ("workload", "ready", "pods"):
        table.add_column(col)
    for w in state.workloads:
        pods = [p for p in state.pods if p.component == w.component]
        detail = ", ".join(
            f"{p.name.rsplit('-', 1)[-1]} {p.reason or p.phase}" for p in pods if not p.ready
        )
        mark = "[green]ready[/]" if w.is_ready else "[yellow]waiting[/]"
        table.add_row(f"{w.kind.lower()}/{w.name}", f"{w.ready}/{w.desired} {mark}", detail)
    return table


@main.command()
@click.argument("chart_dir", metavar="OUT", type=click.Path(exists=True, path_type=Path))
@click.option("--release", required=True, help="Helm release name.")
@click.option(
    "-f",
    "--values",
    "values_files",
    multiple=True,
    type=click.Path(dir_okay=False, exists=True, path_type=Path),
    help="Values file (repeatable; later files win), e.g. OUT/values-prod.yaml.",
)
@kube_options
@click.option(
    "--timeout",
    default="15m",
    show_default=True,
    help="How long helm and the readiness wait may take (e.g. 90s, 15m).",
)
@click.option("--no-wait", is_flag=True, help="Return once helm is done; skip the readiness wait.")
@_reports_errors
def deploy(
    chart_dir: Path,
    release: str,
    values_files: tuple[Path, ...],
    namespace: str | None,
    kubeconfig: Path | None,
    context: str | None,
    timeout: str,
    no_wait: bool,
) -> None:
    """Install or upgrade OUT (a chart from `jup2kub build`) as RELEASE and wait until Kafka
    and every step pass their readiness probes."""
    seconds = api.parse_duration(timeout)
    live = _live_display()

    def progress(message: str) -> None:
        if live is None:
            click.echo(message, err=True)

    def readiness(state: api.Readiness) -> None:
        if live is not None:
            live.update(_readiness_table(state))

    try:
        result = api.deploy(
            chart_dir,
            release,
            list(values_files),
            _target(namespace, kubeconfig, context),
            timeout=seconds,
            wait=not no_wait,
            on_progress=progress,
            on_readiness=readiness,
        )
    finally:
        if live is not None:
            live.stop()
    summary = result.readiness.summary() if result.readiness else "not waited for"
    click.echo(
        f"release {result.release} revision {result.revision} {result.status} in "
        f"namespace {result.namespace}: {summary}"
    )


def _live_display() -> Any:
    if not sys.stderr.isatty():
        return None
    from rich.console import Console
    from rich.live import Live

    live = Live(console=Console(stderr=True), refresh_per_second=2, transient=True)
    live.start()
    return live


def _release_status_text(st: api.ReleaseStatus) -> None:
    from rich.console import Console
    from rich.table import Table

    # piped output keeps whole pod names and run ids (rich would cut them at 80 columns)
    console = Console(width=None if sys.stdout.isatty() else 250)
    console.print(
        f"release [bold]{st.release}[/] (namespace {st.namespace}): revision "
        f"{st.revision} {st.helm_status}, chart {st.chart}; "
        f"{st.readiness.summary()}",
        highlight=False,
    )
    pods = Table(box=None, pad_edge=False, title="pods", title_justify="left")
    for col in ("pod", "component", "phase", "ready", "restarts", "note"):
        pods.add_column(col)
    for p in st.readiness.pods:
        note = (p.reason or "") + (f": {p.message}" if p.message else "")
        pods.add_row(
            p.name, p.component, p.phase, "yes" if p.ready else "no", str(p.restarts), note
        )
    console.print(pods)
    steps = sorted({s for r in st.runs for s in r.steps} | set(st.run_errors))
    runs = Table(box=None, pad_edge=False, title="recent runs", title_justify="left")
    runs.add_column("run")
    runs.add_column("state")
    for step in steps:
        runs.add_column(step)
    for r in st.runs:
        runs.add_row(r.run_id, r.state, *[r.steps.get(s, {}).get("state", "-") for s in steps])
    console.print(runs if st.runs else "recent runs: none yet")
    for step, why in sorted(st.run_errors.items()):
        console.print(f"[yellow]runs of step {step} unknown:[/] {why}", highlight=False)


@main.command()
@click.argument("notebook", required=False, type=click.Path(dir_okay=False, path_type=Path))
@click.argument("run_id", required=False)
@click.option(
    "--kafka",
    "bootstrap",
    metavar="BOOTSTRAP",
    default=None,
    help="With NOTEBOOK RUN_ID: the pipeline's Kafka (host:port).",
)
@click.option(
    "--release",
    default=None,
    help="Show a deployed release instead: pods, readiness and recent runs.",
)
@kube_options
@click.option(
    "--runs",
    "n_runs",
    type=click.IntRange(min=0),
    default=10,
    show_default=True,
    help="With --release: how many recent runs to show.",
)
@split_option
@name_option
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
@_reports_errors
def status(
    notebook: Path | None,
    run_id: str | None,
    bootstrap: str | None,
    release: str | None,
    namespace: str | None,
    kubeconfig: Path | None,
    context: str | None,
    n_runs: int,
    split: str,
    name: str | None,
    as_json: bool,
) -> None:
    """Show one run (NOTEBOOK RUN_ID --kafka BOOTSTRAP: per-step status from the status topic)
    or a release (--release NAME: pods, readiness and recent runs, through the Kubernetes API).
    """
    if release is not None:
        if notebook is not None or bootstrap is not None:
            raise UsageError(
                "--release takes no NOTEBOOK, RUN_ID or --kafka",
                hint="use `jup2kub status --release NAME [-n NAMESPACE]`",
            )
        st = api.release_status(release, _target(namespace, kubeconfig, context), runs=n_runs)
        if as_json:
            click.echo(json.dumps(st.to_json(), indent=2))
        else:
            _release_status_text(st)
        return
    if notebook is None or run_id is None or bootstrap is None:
        raise UsageError(
            "status needs NOTEBOOK RUN_ID --kafka BOOTSTRAP, or --release NAME",
            hint="e.g. `jup2kub status nb.ipynb RUN_ID --kafka host:9092`",
        )
    pipeline, states = api.run_states(notebook, run_id, bootstrap, split=split, name=name)
    if as_json:
        click.echo(json.dumps(states, indent=2))
        return
    for step in pipeline.steps:
        msg = states.get(step.name)
        if msg is None:
            click.echo(f"{step.name:<30} waiting")
            continue
        line = f"{step.name:<30} {msg.get('state')} (attempt {msg.get('attempt')}, {msg.get('at')})"
        error = msg.get("error")
        if isinstance(error, dict):
            line += f": {error.get('ename')}: {error.get('evalue')} (cell {error.get('cell')})"
        click.echo(line)


@main.command()
@click.argument("notebook", type=click.Path(dir_okay=False, path_type=Path))
@click.argument("run_id")
@click.option(
    "--state",
    "state",
    default=None,
    type=click.Path(file_okay=False, exists=True, path_type=Path),
    help="The pipeline's state directory (the volume, mounted or copied here).",
)
@click.option(
    "--release",
    default=None,
    help="Or: read the run from this release's step pods (Kubernetes API).",
)
@kube_options
@click.option(
    "-o",
    "--output",
    "output",
    type=click.Path(dir_okay=False, path_type=Path),
    default=None,
    help="Where to write the notebook [default: RUN_ID.ipynb].",
)
@split_option
@_reports_errors
def results(
    notebook: Path,
    run_id: str,
    state: Path | None,
    release: str | None,
    namespace: str | None,
    kubeconfig: Path | None,
    context: str | None,
    output: Path | None,
    split: str,
) -> None:
    """Assemble the results notebook of RUN_ID from the pipeline's state volume (--state) or
    from a deployed release (--release, through the API server: no volume access needed)."""
    status_text, target = api.results(
        notebook,
        run_id,
        state=state,
        release=release,
        target=_target(namespace, kubeconfig, context),
        output=output,
        split=split,
    )
    click.echo(f"run {run_id}: {status_text}; results notebook: {target}")


if __name__ == "__main__":  # pragma: no cover
    main()
