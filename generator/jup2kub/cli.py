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
import shlex
import signal
import sys
import time
import warnings
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any, TextIO, TypeVar

import click

import jup2kub.startup  # noqa: F401  (first: before nbformat is imported)
from jup2kub import api
from jup2kub.api import Pipeline, value_label
from jup2kub.errors import Jup2KubError, NotebookRepairedWarning, Terminated, UsageError
from jup2kub.version import __version__

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


def kafka_timeout_option(default: str) -> Callable[[F], F]:
    """--kafka-timeout: how long a broker that does not answer is waited for (it may be
    restarting), then an error naming its address."""
    return click.option(
        "--kafka-timeout",
        metavar="DURATION",
        default=default,
        show_default=True,
        help="How long to wait for a Kafka broker that does not answer (e.g. 90s, 5m), then "
        "an error naming its address.",
    )


def parameter_options(func: F) -> F:
    """-p NAME VALUE, -y YAML and -f FILE (each repeatable), as papermill spells them."""
    func = click.option(
        "-y",
        "--parameters-yaml",
        "yaml_texts",
        multiple=True,
        metavar="YAML",
        help="Parameters as inline YAML, e.g. -y 'n: 3' or -y '{n: 3, label: x}' (applied "
        "after -f, before -p).",
    )(func)
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
        help="Set a parameter (type inferred as papermill does: int, float, True/False/None, "
        "str; a string where the notebook's value is one). It must have the type of the "
        "parameters cell's value.",
    )(func)


catalog_option = click.option(
    "--catalog",
    default=None,
    metavar="URL",
    help="The step catalog: a SQLite file path or postgresql://USER@HOST:PORT/DB [default: "
    "$JUP2KUB_CATALOG, else $XDG_DATA_HOME/jup2kub/catalog.db].",
)


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


def _parameter_shown(p: Pipeline, name: str, value: Any) -> str:
    """``n=10``; a non-literal default as written: ``today=date.today()``."""
    written = p.parameter_expressions.get(name)
    return f"{name}={written}" if written is not None else f"{name}={value!r}"


def format_pipeline(p: Pipeline) -> str:
    """The human-readable view of ``inspect``."""
    out = [
        f"pipeline:   {p.name}",
        f"notebook:   {p.notebook}",
        f"split:      {p.split} ({len(p.steps)} steps)",
    ]
    if p.parameter_cells:
        params = ", ".join(_parameter_shown(p, k, v) for k, v in p.parameters.items()) or "-"
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
        if s.name in p.cache:
            out.append(f"  cache:      {p.cache[s.name].describe()}")
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
@catalog_option
@click.option("--no-catalog", is_flag=True, help="Do not record the steps in the step catalog.")
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
    catalog: str | None,
    no_catalog: bool,
) -> None:
    """Build NOTEBOOK's pipeline as a Helm chart in OUT (plus its step images), and record its
    steps in the step catalog."""
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
    with contextlib.ExitStack() as stack:
        store = None if no_catalog else api.open_build_catalog(catalog)
        if store is not None:
            stack.callback(store.close)
        pipeline, written = api.build(
            notebook, out, split, options, image_build, log=click.echo, name=name, catalog=store
        )
        if store is not None:
            click.echo(f"{len(pipeline.steps)} steps recorded in the catalog {store.shown}")
    _split_warnings(pipeline)
    click.echo(f"chart for {len(pipeline.steps)} steps written to {written}")
    install = shlex.join(["helm", "install", pipeline.name, str(written)])
    dev = shlex.join(["-f", str(written / "values-dev.yaml")])
    if no_images:
        _next_steps_without_images(written, notebook, install, dev)
    elif not push:
        click.echo(
            "the step images are in this machine's Docker engine only: a cluster that pulls "
            "from a registry needs them pushed (add --image-registry REGISTRY --push), a "
            "local cluster needs them loaded into its nodes (e.g. `kind load docker-image`, "
            "`minikube image load`, `e2e/cluster load-image`)"
        )
        click.echo(f"then install it with: {install} {dev}  (or: jup2kub deploy)")
    else:
        click.echo(f"install it with: {install}  (or: jup2kub deploy)")


def _next_steps_without_images(written: Path, notebook: Path, install: str, dev: str) -> None:
    """``--no-images``: the chart names step images nobody built, so installing it now would
    leave every step pod unable to pull: say what is missing and what builds it."""
    images = api.chart_images(written)
    again = [a for a in sys.argv[1:] if a != "--no-images"]
    build_cmd = shlex.join(["jup2kub", *again]) if again[:1] == ["build"] else None
    build_cmd = build_cmd or shlex.join(["jup2kub", "build", str(notebook), "-o", str(written)])
    click.echo(
        f"not built (--no-images): the step images {', '.join(images) or '-'}; the chart's "
        "steps cannot start until they exist where the cluster pulls from"
    )
    click.echo(f"build them with the local Docker engine: {build_cmd}")
    click.echo(
        "  then push them (add --image-registry REGISTRY --push) or load them into a local "
        "cluster's nodes (`kind load docker-image`, `minikube image load`, "
        "`e2e/cluster load-image`)"
    )
    click.echo(f"then install it with: {install} {dev}  (or: jup2kub deploy)")


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
    table.add_column("cell", justify="right")
    colors = {"succeeded": "green", "failed": "red", "running": "yellow", "blocked": "magenta"}
    for st in steps.values():
        seconds = st.seconds
        state = st.state.value + (" (reused)" if st.reused else "")
        table.add_row(
            st.name,
            f"[{colors.get(st.state.value, 'white')}]{state}[/]",
            "" if seconds is None else f"{seconds:.1f}s",
            "" if st.cell is None or st.state != api.RUNNING else str(st.cell),
        )
    return table


class _ProgressLines:
    """Progress where stderr is no terminal (CI logs, files): one line when a step starts and
    one when it ends, with its time; a step still running says so every ``every`` seconds
    (J2K_PROGRESS_INTERVAL, default 60) with the cell it executes, so a hung step shows."""

    def __init__(self, every: float) -> None:
        self.seen: dict[str, str] = {}
        self.every = every
        self.told: dict[str, float] = {}  # step -> elapsed seconds when last said running

    def __call__(self, steps: dict[str, api.StepRun]) -> None:
        for st in steps.values():
            state = st.state.value
            if self.seen.get(st.name) != state:
                self.seen[st.name] = state
                self._changed(st)
            elif self._due(st):
                self.told[st.name] = st.seconds or 0.0
                where = f", cell {st.cell}" if st.cell is not None else ""
                self._say(f"step {st.name}: still running ({_elapsed(st.seconds or 0)}{where})")

    def _due(self, st: api.StepRun) -> bool:
        if st.state != api.RUNNING or st.seconds is None:
            return False
        return st.seconds - self.told.get(st.name, 0.0) >= self.every

    def _changed(self, st: api.StepRun) -> None:
        if st.state == api.RUNNING:
            self.told[st.name] = 0.0
            self._say(f"step {st.name}: started")
        elif st.reused:
            self._say(f"step {st.name}: succeeded earlier (reused)")
        elif st.state in (api.DONE, api.FAILED):
            took = "" if st.seconds is None else f" in {_elapsed(st.seconds)}"
            self._say(f"step {st.name}: {st.state.value}{took}")
        elif st.state == api.BLOCKED:
            self._say(f"step {st.name}: not run")

    @staticmethod
    def _say(text: str) -> None:
        import time

        click.echo(f"{time.strftime('%H:%M:%S')} {text}", err=True)


def _elapsed(seconds: float) -> str:
    if seconds < 60:
        return f"{seconds:.1f}s"
    minutes, secs = divmod(int(seconds), 60)
    return f"{minutes}m{secs:02d}s" if minutes < 60 else f"{minutes // 60}h{minutes % 60:02d}m"


def _progress_interval() -> float:
    import os

    try:
        return max(0.0, float(os.environ.get("J2K_PROGRESS_INTERVAL", "60")))
    except ValueError:
        return 60.0


@main.command()
@click.argument("notebook", type=click.Path(dir_okay=False, path_type=Path))
@click.argument(
    "output_arg",
    metavar="[OUTPUT.ipynb]",
    required=False,
    type=click.Path(dir_okay=False, path_type=Path),
)
@click.option(
    "-o",
    "--output",
    "output",
    type=click.Path(dir_okay=False, path_type=Path),
    default=None,
    help="Also write the results notebook here (as papermill's OUTPUT; same as the second "
    "argument).",
)
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
    help="Run again as RUN_ID, reusing the steps it completed whose code, inputs, "
    "parameters and environment are unchanged (edits and new -p/-f are honoured).",
)
@click.option(
    "--no-cache",
    "no_cache",
    is_flag=True,
    help="Do not reuse or store results in the step cache: every step executes (with "
    "--resume, the run's own unchanged steps are still kept).",
)
@click.option(
    "--cache-dir",
    "cache_dir",
    type=click.Path(file_okay=False, path_type=Path),
    default=None,
    help="The step cache, shared by runs [default: WORKDIR/cache].",
)
@click.option(
    "--kafka",
    "kafka",
    metavar="BOOTSTRAP",
    default=None,
    help="Run one runtime process per step on this Kafka and submit the run through it: "
    "the cluster's data path, on this machine.",
)
@kafka_timeout_option("60s")
@click.option(
    "--timeout",
    "timeout",
    metavar="DURATION",
    default=None,
    help="End the run after this long (e.g. 90s, 15m, 2h): every step process ends, the run "
    "can be resumed; exit code 124.",
)
@click.option(
    "--log-output",
    is_flag=True,
    help="Print what the cells print as they print it, each line prefixed with its step "
    "(stderr), as papermill's --log-output does.",
)
@name_option
@_reports_errors
def run(
    notebook: Path,
    output_arg: Path | None,
    output: Path | None,
    pairs: tuple[tuple[str, str], ...],
    yaml_texts: tuple[str, ...],
    files: tuple[Path, ...],
    split: str,
    workdir: Path | None,
    jobs: int | None,
    resume: str | None,
    no_cache: bool,
    cache_dir: Path | None,
    kafka: str | None,
    kafka_timeout: str,
    timeout: str | None,
    log_output: bool,
    name: str | None,
) -> None:
    """Run NOTEBOOK's pipeline on this machine and write a results notebook (also to
    OUTPUT.ipynb when given)."""
    if output_arg is not None and output is not None and output_arg != output:
        raise UsageError("OUTPUT.ipynb and -o name two different files; give one")
    output = output or output_arg
    seconds = None if timeout is None else api.parse_duration(timeout)
    live = None
    lines = None if sys.stderr.isatty() else _ProgressLines(_progress_interval())
    latest: dict[str, api.StepRun] = {}
    if lines is None:
        from rich.console import Console
        from rich.live import Live

        # rendered at every refresh: a running step's time goes on counting
        live = Live(
            console=Console(stderr=True),
            refresh_per_second=4,
            transient=False,
            get_renderable=lambda: _progress_table(latest),
        )
        live.start()

    def show(steps: dict[str, api.StepRun]) -> None:
        latest.update(steps)
        if lines is not None:
            lines(steps)

    def printed(step: str, line: str) -> None:
        if live is not None:
            live.console.print(f"[{step}] {line}", highlight=False, markup=False)
        else:
            click.echo(f"[{step}] {line}", err=True)

    try:
        result = api.run(
            notebook,
            parameter_files=files,
            parameter_yaml=yaml_texts,
            parameter_strings=pairs,
            split=split,
            name=name,
            workdir=workdir,
            output=output,
            jobs=jobs,
            resume=resume,
            kafka=kafka,
            on_change=show,
            warn=_warn,
            kafka_timeout=api.parse_duration(kafka_timeout),
            cache=not no_cache,
            cache_dir=cache_dir,
            timeout=seconds,
            on_output=printed if log_output else None,
        )
    finally:
        if live is not None:
            live.stop()
    click.echo(f"run {result.run_id}: {'succeeded' if result.ok else 'failed'}")
    if result.output is not None:
        click.echo(f"results notebook: {result.output} (and {result.notebook})")
    else:
        click.echo(f"results notebook: {result.notebook}")
    click.echo(f"summary: {result.summary}")
    _cache_summary(result)
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
        why = "the run timed out" if result.timed_out else "upstream failed"
        if blocked:
            click.echo(f"not run ({why}): {', '.join(blocked)}", err=True)
        again = ["--workdir", str(result.workdir), "--resume", result.run_id]
        resume = shlex.join(["jup2kub", "run", str(notebook), *again])
        if result.timed_out:
            click.echo(
                f"error: run {result.run_id} exceeded its --timeout of {timeout}: every step "
                "process has ended",
                err=True,
            )
            click.echo(f"hint: `{resume}` continues it (the completed steps are kept)", err=True)
            sys.exit(124)
        click.echo(
            f"hint: fix the notebook, then `{resume}` re-runs what failed or changed (code, "
            "inputs, parameters: edits and new -p/-f are honoured), reusing the rest",
            err=True,
        )
        sys.exit(1)


def _size(n: float) -> str:
    for unit in ("B", "K", "M", "G"):
        if n < 1024:
            return f"{n:.0f}{unit}" if unit == "B" else f"{n:.1f}{unit}"
        n /= 1024
    return f"{n:.1f}T"


workdir_option = click.option(
    "--workdir",
    type=click.Path(file_okay=False, path_type=Path),
    default=None,
    help="The runs' work directory [default: every pipeline's under .jup2kub/].",
)


@main.group(invoke_without_command=True)
@workdir_option
@click.pass_context
@_reports_errors
def runs(ctx: click.Context, workdir: Path | None) -> None:
    """List the local runs (id, start, status, duration, size, steps executed/reused) and the
    step cache's size."""
    if ctx.invoked_subcommand is not None:
        return
    hk = api.housekeeping
    for wd in hk.workdirs(workdir):
        click.echo(f"{wd}:")
        click.echo(f"  {'run':34} {'started':19} {'status':10} {'time':>8} {'size':>8}  steps")
        for r in hk.list_runs(wd):
            when = time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(r.started))
            took = "-" if r.seconds is None else f"{r.seconds:.1f}s"
            use = "-" if r.executed is None else f"{r.executed} executed, {r.reused} reused"
            click.echo(
                f"  {r.run_id:34} {when:19} {r.status:10} {took:>8} {_size(r.size):>8}  {use}"
            )
        cache = hk.cache_info(wd / "cache")
        click.echo(f"  step cache: {cache.entries} entries, {_size(cache.size)} ({cache.root})")


@runs.command("rm")
@click.argument("run_ids", metavar="RUN_ID...", nargs=-1, required=True)
@workdir_option
@_reports_errors
def runs_rm(run_ids: tuple[str, ...], workdir: Path | None) -> None:
    """Remove runs (their state, results and logs; the cache keeps its entries)."""
    hk = api.housekeeping
    found = hk.workdirs(workdir)
    for run_id in run_ids:
        owner = next((wd for wd in found if (wd / "runs" / run_id).is_dir()), None)
        click.echo(f"removed {hk.remove_run(owner or (workdir or Path('.')), run_id)}")


@runs.command("gc")
@workdir_option
@click.option("--older-than", "older_than", metavar="DUR", help="e.g. 7d, 12h, 30m.")
@click.option("--max-size", "max_size", metavar="SIZE", help="e.g. 500M, 2G.")
@click.option(
    "--cache-dir",
    "cache_dir",
    type=click.Path(file_okay=False, path_type=Path),
    default=None,
    help="The step cache [default: WORKDIR/cache].",
)
@_reports_errors
def runs_gc(
    workdir: Path | None, older_than: str | None, max_size: str | None, cache_dir: Path | None
) -> None:
    """Remove runs started, and cache entries last used, longer than DUR ago; then the oldest
    of both until they take at most SIZE."""
    hk = api.housekeeping
    if older_than is None and max_size is None:
        raise UsageError("say what to collect", hint="pass --older-than DUR and/or --max-size SIZE")
    age = None if older_than is None else hk.parse_age(older_than)
    size = None if max_size is None else hk.parse_size(max_size)
    for wd in hk.workdirs(workdir):
        done = hk.collect(wd, cache_dir, older_than=age, max_size=size)
        click.echo(
            f"{wd}: removed {len(done.runs)} runs and {done.entries} cache entries, "
            f"{_size(done.freed)} freed"
        )


def _cache_summary(result: api.RunResult) -> None:
    """Which steps were reused and which executed, and why (with the step cache)."""
    if not any(st.why for st in result.steps.values()):
        return
    for st in result.steps.values():
        if st.reused:
            click.echo(f"  reused   {st.name}: {st.why}")
        elif st.state in (api.DONE, api.FAILED):
            click.echo(f"  executed {st.name}" + (f": {st.why}" if st.why else ""))


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
@kafka_timeout_option("30s")
@parameter_options
@click.option("--run-id", default=None, help="Choose the run id [default: generated].")
@split_option
@name_option
@_reports_errors
def submit(
    notebook: Path,
    bootstrap: str,
    kafka_timeout: str,
    pairs: tuple[tuple[str, str], ...],
    yaml_texts: tuple[str, ...],
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
            parameter_files=files,
            parameter_yaml=yaml_texts,
            parameter_strings=pairs,
            run_id=run_id,
            split=split,
            name=name,
            kafka_timeout=api.parse_duration(kafka_timeout),
        )
    )


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
@kafka_timeout_option("30s")
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
    kafka_timeout: str,
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
    pipeline, states = api.run_states(
        notebook,
        run_id,
        bootstrap,
        split=split,
        name=name,
        kafka_timeout=api.parse_duration(kafka_timeout),
    )
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
@click.option(
    "--timeout",
    default="60s",
    show_default=True,
    help="With --release: how long to wait for each step to have a ready pod (e.g. 90s, 5m).",
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
    timeout: str,
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
        timeout=api.parse_duration(timeout),
    )
    click.echo(f"run {run_id}: {status_text}; results notebook: {target}")


# ---------------------------------------------------------------------------------- catalog
@main.group()
def catalog() -> None:
    """The step catalog: every built or added step, searchable, for reuse in compositions."""


json_option = click.option("--json", "as_json", is_flag=True, help="Print JSON.")


def _echo_json(data: Any) -> None:
    click.echo(json.dumps(data, indent=2, ensure_ascii=False))


def _step_line(record: api.StepRecord) -> str:
    outputs = ", ".join(f"{v}: {t}" for v, t in record.outputs.items()) or "-"
    return f"{record.key}  writes {outputs}"


@catalog.command("add")
@click.argument("path", metavar="NOTEBOOK|CHART", type=click.Path(exists=True, path_type=Path))
@split_option
@name_option
@click.option(
    "--workdir",
    type=click.Path(file_okay=False, path_type=Path),
    default=None,
    help="Where local runs left their state (observed value types) [default: .jup2kub/PIPELINE].",
)
@catalog_option
@json_option
@_reports_errors
def catalog_add(
    path: Path,
    split: str,
    name: str | None,
    workdir: Path | None,
    catalog: str | None,
    as_json: bool,
) -> None:
    """Record the steps of a notebook, or of a chart written by `jup2kub build`."""
    with api.open_catalog(catalog) as store:
        records = api.catalog_add(store, path, split=split, name=name, workdir=workdir)
    if as_json:
        _echo_json([r.to_json() for r in records])
        return
    for record in records:
        click.echo(f"added {_step_line(record)}")


@catalog.command("list")
@click.option("--pipeline", default=None, help="Only this pipeline's steps.")
@catalog_option
@json_option
@_reports_errors
def catalog_list(pipeline: str | None, catalog: str | None, as_json: bool) -> None:
    """List the catalogued steps."""
    with api.open_catalog(catalog) as store:
        records = store.steps(pipeline)
    if as_json:
        _echo_json([r.to_json() for r in records])
        return
    if not records:
        click.echo(
            "no catalogued step" + (f" of pipeline {pipeline!r}" if pipeline else ""), err=True
        )
    for record in records:
        click.echo(_step_line(record))


@catalog.command("search")
@click.argument("text")
@click.option("--limit", type=click.IntRange(min=1), default=50, show_default=True)
@catalog_option
@json_option
@_reports_errors
def catalog_search(text: str, limit: int, catalog: str | None, as_json: bool) -> None:
    """Steps whose names, variables, imported packages or markdown match every word of TEXT."""
    with api.open_catalog(catalog) as store:
        found = store.search(text, limit)
    if as_json:
        _echo_json([{**r.to_json(), "matched": m} for r, m in found])
        return
    if not found:
        click.echo(f"no catalogued step matches {text!r}", err=True)
    for record, matched in found:
        click.echo(f"{_step_line(record)}  (matched {', '.join(matched)})")


@catalog.command("show")
@click.argument("step", metavar="[PIPELINE/]STEP")
@catalog_option
@json_option
@_reports_errors
def catalog_show(step: str, catalog: str | None, as_json: bool) -> None:
    """Everything the catalog knows about one step."""
    with api.open_catalog(catalog) as store:
        record = store.find(step)
    if as_json:
        _echo_json(record.to_json())
        return
    inputs = ", ".join(f"{v}: {i['type']} (from {i['from']})" for v, i in record.inputs.items())
    params = ", ".join(
        f"{p} (secret)" if i["secret"] else f"{p}={i['default']!r}"
        for p, i in record.parameters.items()
    )
    lines = [
        ("step", record.key),
        ("notebook", f"{record.notebook} (cells {', '.join(map(str, record.cells))})"),
        ("code sha256", record.code_sha256),
        ("reads", inputs or "-"),
        ("writes", ", ".join(f"{v}: {t}" for v, t in record.outputs.items()) or "-"),
        ("parameters", params or "-"),
        ("imports", ", ".join(record.imports) or "-"),
        ("image", f"{record.image} {record.digest}".strip() or "- (not built)"),
        ("recorded", f"{record.recorded_at.isoformat()} by {record.recorded_by} ({record.origin})"),
    ]
    for label, value in lines:
        click.echo(f"{label + ':':<13}{value}")


@catalog.command("remove")
@click.argument("step", metavar="[PIPELINE/]STEP")
@catalog_option
@json_option
@_reports_errors
def catalog_remove(step: str, catalog: str | None, as_json: bool) -> None:
    """Remove a step from the catalog."""
    with api.open_catalog(catalog) as store:
        record = store.remove(step)
    if as_json:
        _echo_json({"removed": record.key})
    else:
        click.echo(f"removed {record.key}")


if __name__ == "__main__":  # pragma: no cover
    main()
