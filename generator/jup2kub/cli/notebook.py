"""The notebook's commands: ``inspect`` (its steps), ``build`` (its chart and images) and
``package`` (the chart as a chart repository)."""

from __future__ import annotations

import contextlib
import shlex
import sys
from pathlib import Path
from typing import Any

import click

from jup2kub import api
from jup2kub.api import Pipeline, value_label
from jup2kub.cli.options import catalog_option, name_option, split_option
from jup2kub.cli.reporting import echo_json, reports_errors, split_warnings
from jup2kub.errors import UsageError


@click.command()
@click.argument("notebook", type=click.Path(dir_okay=False, path_type=Path))
@split_option
@click.option("--json", "as_json", is_flag=True, help="Print the step graph as JSON.")
@click.option(
    "--graph",
    type=click.Path(dir_okay=False, path_type=Path),
    help="Also draw the graph to FILE (.svg/.png with Graphviz, .dot, or .mmd for Mermaid).",
)
@name_option
@reports_errors
def inspect(
    notebook: Path, split: str, as_json: bool, graph: Path | None, name: str | None
) -> None:
    """Show the steps of NOTEBOOK and the values that flow between them."""
    pipeline = api.inspect_notebook(notebook, split, name)
    if graph is not None:
        api.write_graph(pipeline, graph)
    if as_json:
        echo_json(pipeline.to_json())
    else:
        click.echo(format_pipeline(pipeline))
    split_warnings(pipeline)
    for warning in pipeline.warnings:
        click.echo(f"warning: {warning}", err=True)
    for problem in pipeline.unshippable:
        click.echo(f"warning: {problem} (run and build will refuse this)", err=True)


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
    for change in p.learned:
        out.append(f"learned:    {change} (planned for; .jup2kub/learned.json)")
    for s in p.steps:
        out.append("")
        out.extend(_step_lines(p, s.name))
    out.append("")
    out.append("run order (steps on one line can run in parallel):")
    for i, wave in enumerate(p.levels(), 1):
        out.append(f"  {i}. {', '.join(wave)}")
    return "\n".join(out)


def _step_lines(p: Pipeline, step: str) -> list[str]:
    """One step in ``inspect``'s view: its cells, maps, values, order, cache and pod."""
    s = p.step(step)
    out = [f"step {s.name}  (cells {', '.join(map(str, s.cells))})"]
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
    readers = {v: [d.name for d in p.steps if d.inputs.get(v) == s.name] for v in sorted(s.outputs)}
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
    if s.effects:
        out.append(f"  effects:    {'; '.join(map(str, s.effects))}: runs after every earlier step")
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
    return out


@click.command()
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
@reports_errors
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
    split_warnings(pipeline)
    click.echo(f"chart for {len(pipeline.steps)} steps written to {written}")
    _next_steps(pipeline.name, written, notebook, no_images, push)


def _next_steps(name: str, written: Path, notebook: Path, no_images: bool, push: bool) -> None:
    """How the chart gets installed, and what its images need first (pushing, loading)."""
    install = shlex.join(["helm", "install", name, str(written)])
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


@click.command()
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
@click.option(
    "--oci",
    metavar="oci://HOST/PATH",
    default=None,
    help="Also push the chart to this OCI registry path (as `helm push`): it becomes "
    "oci://HOST/PATH/NAME, tagged with the chart's version.",
)
@reports_errors
def package(
    chart_dir: Path, destination: Path | None, repo_index: str | None, oci: str | None
) -> None:
    """Package the chart in OUT as a .tgz and index it as a chart repository (via helm); with
    --oci, push it to a registry."""
    packaged = api.package(chart_dir, destination, repo_index, oci=oci)
    click.echo(f"packaged {packaged.tarball}")
    click.echo(f"repository index: {packaged.tarball.parent / 'index.yaml'}")
    if packaged.chart is not None:
        click.echo(f"pushed oci://{packaged.chart}")
        click.echo(
            f"install it with: helm install RELEASE oci://{packaged.chart.name} "
            f"--version {packaged.chart.tag}  (or: jup2kub deploy oci://{packaged.chart.name} "
            f"--version {packaged.chart.tag} --release RELEASE)"
        )
