"""The deployed pipeline's commands: ``deploy`` (install a chart and wait until it is ready),
``submit`` (start a run), ``status`` (a run, or a release) and ``results`` (a run's results
notebook)."""

from __future__ import annotations

import math
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import click

from jup2kub import api
from jup2kub.cli.options import (
    json_option,
    kafka_timeout_option,
    key_options,
    kube_options,
    kube_target,
    name_option,
    parameter_options,
    split_option,
)
from jup2kub.cli.release_views import live_display, print_release_status, readiness_table
from jup2kub.cli.reporting import echo_json, reports_errors
from jup2kub.cli.watching import watch as watch_table
from jup2kub.errors import UsageError

kafka_option = click.option(
    "--kafka",
    "bootstrap",
    metavar="BOOTSTRAP",
    required=True,
    help="The pipeline's Kafka (host:port; for a cluster, a `kubectl port-forward`).",
)


@click.command()
@click.argument("notebook", type=click.Path(dir_okay=False, path_type=Path))
@kafka_option
@kafka_timeout_option("30s")
@parameter_options
@click.option(
    "--params-file",
    type=click.Path(exists=True, dir_okay=False, path_type=Path),
    default=None,
    help="Submit one run per line of this file, each a JSON object of parameter values over "
    "those of -f, -y and -p (which give the defaults); every line is checked before any run is "
    "sent. Prints one run id per line, in the file's order.",
)
@click.option("--run-id", default=None, help="Choose the run id [default: generated].")
@split_option
@name_option
@reports_errors
def submit(
    notebook: Path,
    bootstrap: str,
    kafka_timeout: str,
    pairs: tuple[tuple[str, str], ...],
    yaml_texts: tuple[str, ...],
    files: tuple[Path, ...],
    params_file: Path | None,
    run_id: str | None,
    split: str,
    name: str | None,
) -> None:
    """Submit a run of NOTEBOOK's deployed pipeline (or one per line of --params-file);
    prints the run id."""
    if params_file is not None and run_id is not None:
        raise UsageError("--run-id names one run: not with --params-file", hint="drop --run-id")
    common: dict[str, Any] = dict(
        parameter_files=files,
        parameter_yaml=yaml_texts,
        parameter_strings=pairs,
        split=split,
        name=name,
        kafka_timeout=api.parse_duration(kafka_timeout),
    )
    if params_file is None:
        click.echo(api.submit(notebook, bootstrap, run_id=run_id, **common))
        return
    ids = api.submit_params_file(notebook, bootstrap, params_file, **common)
    click.echo("\n".join(ids))


@click.command()
@click.argument("chart", metavar="CHART")
@click.option("--release", required=True, help="Helm release name.")
@click.option(
    "--version",
    "chart_version",
    default=None,
    help="With an oci:// CHART: the chart version (or range) to install [default: newest].",
)
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
@click.option(
    "--verify",
    is_flag=True,
    help="Install only if the chart and every step image carry valid signatures by --key "
    "(cosign; and the chart's .prov, with the OpenPGP keyring beside the key or --keyring).",
)
@key_options(public=True, required=False)
@reports_errors
def deploy(
    chart: str,
    release: str,
    chart_version: str | None,
    values_files: tuple[Path, ...],
    namespace: str | None,
    kubeconfig: Path | None,
    context: str | None,
    timeout: str,
    no_wait: bool,
    verify: bool,
    key: Path | None,
    keyring: Path | None,
) -> None:
    """Install or upgrade CHART as RELEASE and wait until Kafka and every step pass their
    readiness probes. CHART is the OUT directory of `jup2kub build`, a packaged .tgz, or a
    chart in a registry: oci://HOST/PATH/NAME (pulled once, installed by its digest)."""
    check = _verification(chart, verify, key, keyring)
    seconds = api.parse_duration(timeout)
    live = live_display()

    def progress(message: str) -> None:
        if live is None:
            click.echo(message, err=True)

    def readiness(state: api.Readiness) -> None:
        if live is not None:
            live.update(readiness_table(state))

    options: dict[str, Any] = {
        "timeout": seconds,
        "wait": not no_wait,
        "on_progress": progress,
        "on_readiness": readiness,
    }
    target = kube_target(namespace, kubeconfig, context)
    try:
        if chart.startswith("oci://"):
            result = api.deploy_from_registry(
                chart,
                release,
                list(values_files),
                target,
                version=chart_version,
                verify=check,
                **options,
            )
        else:
            if chart_version is not None:
                raise UsageError(
                    "--version applies to an oci:// chart only",
                    hint="a chart directory or .tgz is installed as it is",
                )
            if verify and key is not None:
                api.verify(Path(chart), key, keyring=keyring, log=progress)
            result = api.deploy(Path(chart), release, list(values_files), target, **options)
    finally:
        if live is not None:
            live.stop()
    summary = result.readiness.summary() if result.readiness else "not waited for"
    click.echo(
        f"release {result.release} revision {result.revision} {result.status} in "
        f"namespace {result.namespace}: {summary}"
    )


def _verification(
    chart: str, verify: bool, key: Path | None, keyring: Path | None
) -> Callable[[Path, api.Reference], None] | None:
    """The check ``deploy --verify`` makes before installing; usage errors up front."""
    if not verify:
        if key is not None or keyring is not None:
            raise UsageError("--key and --keyring go with --verify", hint="add --verify")
        return None
    if key is None:
        raise UsageError(
            "--verify needs the public key to verify with",
            hint="add --key PREFIX.pub (from `jup2kub keygen`)",
        )
    if not chart.startswith("oci://") and not Path(chart).is_dir():
        raise UsageError(
            "--verify checks a chart from a registry (oci://) or a chart directory (OUT)",
            where=chart,
            hint="deploy it from the registry, or check the .tgz with `helm verify`",
        )
    return api.verify_pulled_chart(key, keyring, log=lambda line: click.echo(line, err=True))


@click.command()
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
    help="With --release: how many recent runs to show (with --watch: to wait for).",
)
@click.option(
    "--watch",
    is_flag=True,
    help="Follow the pipeline (NOTEBOOK --kafka BOOTSTRAP, or --release NAME): per step, "
    "replicas, runs in flight, done and failed, lag and execution time p50/p95, until Ctrl-C.",
)
@click.option(
    "--interval",
    type=float,
    default=None,
    metavar="SECONDS",
    help="With --watch: seconds between refreshes [default: 2].",
)
@click.option(
    "--until-done",
    is_flag=True,
    help="With --watch: stop once every submitted run is done or failed (exit 1 if one failed).",
)
@split_option
@name_option
@json_option
@reports_errors
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
    watch: bool,
    interval: float | None,
    until_done: bool,
    split: str,
    name: str | None,
    as_json: bool,
) -> None:
    """Show one run (NOTEBOOK RUN_ID --kafka BOOTSTRAP: per-step status from the status topic)
    or a release (--release NAME: pods, readiness and recent runs, through the Kubernetes API);
    with --watch, follow every run of the pipeline live.
    """
    if watch:
        if run_id is not None:
            raise UsageError(
                "--watch follows every run of the pipeline; it takes no RUN_ID",
                hint="use `jup2kub status NOTEBOOK --kafka BOOTSTRAP --watch`",
            )
        seconds = 2.0 if interval is None else interval
        if not (seconds > 0 and math.isfinite(seconds)):
            raise UsageError(
                f"--interval must be a positive number of seconds, not {interval:g}",
                hint="e.g. --interval 0.5",
            )
        if until_done and release is not None and n_runs == 0:
            raise UsageError(
                "--until-done on a release waits for its recent runs: --runs 0 leaves none",
                hint="drop --runs 0, or give how many recent runs to wait for",
            )
        try:
            source = api.watch_status(
                notebook,
                bootstrap,
                release=release,
                target=kube_target(namespace, kubeconfig, context),
                split=split,
                name=name,
                kafka_timeout=api.parse_duration(kafka_timeout),
                runs=n_runs,
            )
        except KeyboardInterrupt:  # Ctrl-C ends a watch, even one still connecting: not an error
            sys.exit(0)
        sys.exit(watch_table(source, seconds, until_done, as_json))
    for given, flag in ((interval is not None, "--interval"), (until_done, "--until-done")):
        if given:
            raise UsageError(f"{flag} goes with --watch", hint=f"add --watch, or drop {flag}")
    if release is not None:
        if notebook is not None or bootstrap is not None:
            raise UsageError(
                "--release takes no NOTEBOOK, RUN_ID or --kafka",
                hint="use `jup2kub status --release NAME [-n NAMESPACE]`",
            )
        st = api.release_status(release, kube_target(namespace, kubeconfig, context), runs=n_runs)
        if as_json:
            echo_json(st.to_json())
        else:
            print_release_status(st)
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
        echo_json(states)
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


@click.command()
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
@reports_errors
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
        target=kube_target(namespace, kubeconfig, context),
        output=output,
        split=split,
        timeout=api.parse_duration(timeout),
    )
    click.echo(f"run {run_id}: {status_text}; results notebook: {target}")
    click.echo(f"provenance (RO-Crate): {api.results_crate_path(target)}")


# ---------------------------------------------------------------------------------- catalog
