"""``jup2kub catalog``: the step catalog's records, added, listed, searched, shown, removed.

Every subcommand opens the catalog, asks it one thing and prints the answer as text or, with
``--json``, as JSON: ``catalog_query`` does all but the asking.
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import click

from jup2kub import api
from jup2kub.cli.options import catalog_option, json_option, name_option, split_option
from jup2kub.cli.reporting import echo_json, reports_errors


@dataclass
class Answer:
    """What a catalog subcommand prints: ``data`` with --json, else ``note`` (on stderr, when
    there is nothing to show) and ``lines``."""

    data: Any
    lines: list[str] = field(default_factory=list)
    note: str | None = None

    def echo(self, as_json: bool) -> None:
        if as_json:
            echo_json(self.data, ensure_ascii=False)
            return
        if self.note is not None:
            click.echo(self.note, err=True)
        for line in self.lines:
            click.echo(line)


def catalog_query(ask: Callable[..., Answer]) -> Callable[..., None]:
    """A subcommand from ``ask(store, **its own options)``: adds --catalog and --json, opens the
    catalog for the question and prints the answer (errors reported as every command's)."""

    @functools.wraps(ask)
    def command(catalog: str | None, as_json: bool, **options: Any) -> None:
        with api.open_catalog(catalog) as store:
            answer = ask(store, **options)
        answer.echo(as_json)

    return catalog_option(json_option(reports_errors(command)))


@click.group()
def catalog() -> None:
    """The step catalog: every built or added step, searchable, for reuse in compositions."""


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
@catalog_query
def catalog_add(
    store: api.Catalog, path: Path, split: str, name: str | None, workdir: Path | None
) -> Answer:
    """Record the steps of a notebook, or of a chart written by `jup2kub build`."""
    records = api.catalog_add(store, path, split=split, name=name, workdir=workdir)
    return Answer([r.to_json() for r in records], [f"added {_step_line(r)}" for r in records])


@catalog.command("list")
@click.option("--pipeline", default=None, help="Only this pipeline's steps.")
@catalog_query
def catalog_list(store: api.Catalog, pipeline: str | None) -> Answer:
    """List the catalogued steps."""
    records = store.steps(pipeline)
    of = f" of pipeline {pipeline!r}" if pipeline else ""
    return Answer(
        [r.to_json() for r in records],
        [_step_line(r) for r in records],
        None if records else f"no catalogued step{of}",
    )


@catalog.command("search")
@click.argument("text")
@click.option("--limit", type=click.IntRange(min=1), default=50, show_default=True)
@catalog_query
def catalog_search(store: api.Catalog, text: str, limit: int) -> Answer:
    """Steps whose names, variables, imported packages or markdown match every word of TEXT."""
    found = store.search(text, limit)
    return Answer(
        [{**r.to_json(), "matched": m} for r, m in found],
        [f"{_step_line(r)}  (matched {', '.join(m)})" for r, m in found],
        None if found else f"no catalogued step matches {text!r}",
    )


@catalog.command("show")
@click.argument("step", metavar="[PIPELINE/]STEP")
@catalog_query
def catalog_show(store: api.Catalog, step: str) -> Answer:
    """Everything the catalog knows about one step."""
    record = store.find(step)
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
        ("sbom", _sbom_line(record.sbom)),
    ]
    text = [f"{label + ':':<13}{value}" for label, value in lines]
    packages = record.sbom.get("packages") or []
    text += [f"{'':<13}{p['name']} {p['version']}  {p['purl']}" for p in packages]
    return Answer(record.to_json(), text)


def _sbom_line(sbom: dict[str, Any]) -> str:
    """The SBOM's package count, digest and referrer (its packages follow, one a line)."""
    if not sbom:
        return "- (no image built)"
    where = f"attached as {sbom['attached']}" if sbom.get("attached") else "not pushed"
    count = len(sbom.get("packages") or [])
    return f"{count} packages, CycloneDX sha256:{sbom.get('sha256', '')} ({where})"


@catalog.command("remove")
@click.argument("step", metavar="[PIPELINE/]STEP")
@catalog_query
def catalog_remove(store: api.Catalog, step: str) -> Answer:
    """Remove a step from the catalog."""
    record = store.remove(step)
    return Answer({"removed": record.key}, [f"removed {record.key}"])
