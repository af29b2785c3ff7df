"""``export`` and ``import``: a pushed pipeline (chart and step images) carried to another
registry, e.g. an air-gapped one, in one tar file."""

from __future__ import annotations

from pathlib import Path

import click

from jup2kub import api
from jup2kub.cli.reporting import reports_errors


def _say(message: str) -> None:
    click.echo(message, err=True)


@click.command("export")
@click.argument(
    "chart_dir", metavar="OUT", type=click.Path(file_okay=False, exists=True, path_type=Path)
)
@click.argument("target", metavar="BUNDLE.tar", type=click.Path(dir_okay=False, path_type=Path))
@reports_errors
def export(chart_dir: Path, target: Path) -> None:
    """Write OUT's chart (pushed with `package --oci`) and its step images (pushed with `build
    --push`), with their SBOMs and signatures, into BUNDLE.tar: one OCI image layout."""
    entries = api.export_bundle(chart_dir, target, _say)
    images = sum(1 for e in entries if e.kind == "image")
    signatures = sum(1 for e in entries if e.kind == "signature")
    click.echo(f"wrote {target}: the chart, {images} image(s), {signatures} signature(s)")


@click.command("import")
@click.argument(
    "source", metavar="BUNDLE.tar", type=click.Path(dir_okay=False, exists=True, path_type=Path)
)
@click.option(
    "--registry",
    required=True,
    metavar="HOST[/NS]",
    help="Where to push the chart and the images (each under its repository, below NS).",
)
@click.option(
    "-o",
    "--output",
    "chart_out",
    type=click.Path(file_okay=False, path_type=Path),
    default=None,
    help="Where to write the chart, its image registry rewritten [default: ./<chart name>].",
)
@reports_errors
def import_(source: Path, registry: str, chart_out: Path | None) -> None:
    """Push BUNDLE.tar's chart and images to another registry (their digests do not change)
    and write the chart, pointing at that registry, to a directory."""
    out = chart_out or Path(source.name.removesuffix(".tar") + "-chart")
    pushed = api.import_bundle(source, registry, out, _say)
    click.echo(f"pushed {len(pushed)} artifact(s) to {registry}; the chart is in {out}")
    click.echo(f"install it with: jup2kub deploy {out} --release RELEASE")
