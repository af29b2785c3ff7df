"""Command line: parses arguments, calls the library API (``jup2kub.api``), prints results.

Errors raised on purpose (``Jup2KubError``) are printed without a traceback; input and usage
errors exit with code 2, like click's own usage errors.
"""

from __future__ import annotations

import functools
import json
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

import click

from jup2kub import __version__, api
from jup2kub.drawing import write_graph
from jup2kub.errors import Jup2KubError
from jup2kub.pipeline import Pipeline
from jup2kub.split import SPLIT_MODES

F = TypeVar("F", bound=Callable[..., Any])


def _reports_errors(func: F) -> F:
    @functools.wraps(func)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        try:
            return func(*args, **kwargs)
        except Jup2KubError as exc:
            click.echo(f"error: {exc}", err=True)
            sys.exit(exc.exit_code)

    return wrapper  # type: ignore[return-value]


split_option = click.option(
    "--split",
    type=click.Choice(SPLIT_MODES),
    default="auto",
    show_default=True,
    help="How to cut the notebook into steps: Kale cell tags, '#| step:' markers, markdown "
    "headings, one step per code cell, or auto (the first of those the notebook uses).",
)


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="jup2kub")
def main() -> None:
    """Turn a Jupyter notebook into a fault-tolerant pipeline on Kubernetes."""


@main.command()
@click.argument("notebook", type=click.Path(dir_okay=False, path_type=Path))
@split_option
@click.option("--json", "as_json", is_flag=True, help="Print the step graph as JSON.")
@click.option(
    "--graph",
    type=click.Path(dir_okay=False, path_type=Path),
    help="Also draw the graph to FILE (.svg/.png with Graphviz, .dot, or .mmd for Mermaid).",
)
@_reports_errors
def inspect(notebook: Path, split: str, as_json: bool, graph: Path | None) -> None:
    """Show the steps of NOTEBOOK and the values that flow between them."""
    pipeline = api.inspect_notebook(notebook, split)
    if graph is not None:
        write_graph(pipeline, graph)
    if as_json:
        click.echo(json.dumps(pipeline.to_json(), indent=2))
    else:
        click.echo(format_pipeline(pipeline))
    for warning in pipeline.warnings:
        click.echo(f"warning: {warning}", err=True)


def _names(items: list[str] | set[str]) -> str:
    return ", ".join(sorted(items)) if items else "-"


def format_pipeline(p: Pipeline) -> str:
    """The human-readable view of ``inspect``."""
    out = [f"notebook:   {p.notebook}", f"split:      {p.split} ({len(p.steps)} steps)"]
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
        inputs = [f"{v} <- {src}" for v, src in sorted(s.inputs.items())]
        out.append(f"  inputs:     {', '.join(inputs) or '-'}")
        out.append(f"  parameters: {_names(s.parameters)}")
        readers = {
            v: [d.name for d in p.steps if d.inputs.get(v) == s.name] for v in sorted(s.outputs)
        }
        outputs = [f"{v} -> {', '.join(r)}" for v, r in readers.items()]
        out.append(f"  outputs:    {'; '.join(outputs) or '-'}")
        code = sorted({n for d in s.replay if d.kind == "code" for n in d.names})
        if code:
            out.append(f"  re-runs:    {', '.join(code)}")
        out.append(f"  after:      {_names(s.after) if s.after else '-'}")
        for up, paths in sorted(s.file_deps.items()):
            out.append(f"  files:      {', '.join(sorted(paths))} (shared with {up})")
    out.append("")
    out.append("run order (steps on one line can run in parallel):")
    for i, wave in enumerate(p.levels(), 1):
        out.append(f"  {i}. {', '.join(wave)}")
    return "\n".join(out)


if __name__ == "__main__":  # pragma: no cover
    main()
