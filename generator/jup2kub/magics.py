"""Jup2Kub inside Jupyter: ``%load_ext jup2kub``.

- ``%jup2kub inspect [NOTEBOOK] [--split MODE]``: the steps and the DAG (SVG) inline, for the
  notebook being edited (found through the kernel's session) or a saved file.
- ``%jup2kub run [NOTEBOOK] [-o OUT] [-p NAME VALUE] [-y YAML] ...``: runs the notebook as
  saved, as a pipeline, with live per-step progress in the cell and a link to the results.
- ``%jup2kub build|deploy|status|... ARGS``: the command line's commands, output in the cell.
- ``%%step NAME`` as a cell's first line: a step marker, read by the analysis exactly as
  ``#| step: NAME``; the extension strips it before IPython runs the cell.

Arguments are parsed by the command line's own commands (``jup2kub.cli``), so each magic takes
what the command takes.
"""

from __future__ import annotations

import html
import os
import shlex
import sys
import time
from pathlib import Path
from typing import Any

import click
from IPython.core.magic import Magics, magics_class

from jup2kub import api
from jup2kub.cli import main as cli_main
from jup2kub.cli.notebook import inspect as inspect_command
from jup2kub.cli.running import run as run_command
from jup2kub.errors import Jup2KubError, UsageError
from jup2kub.ipython_api import (
    HtmlArea,
    cell_magic_named,
    line_magic_named,
    run_cell,
    show_file_link,
    show_html,
    show_svg,
)
from jup2kub.model.ipython import STEP_MAGIC

#: where jupyter_server tells the kernel which notebook it runs (since jupyter_server 2)
SESSION_ENV = "JPY_SESSION_NAME"

#: the commands whose first argument is a notebook, which the magics fill in when left out
NOTEBOOK_COMMANDS = ("inspect", "run", "build", "submit")


def load_ipython_extension(ipython: Any) -> None:
    """``%load_ext jup2kub``: the magics, and ``%%step`` stripped before a cell runs."""
    ipython.register_magics(Jup2KubMagics)
    if strip_step_magic not in ipython.input_transformers_cleanup:
        ipython.input_transformers_cleanup.append(strip_step_magic)


def unload_ipython_extension(ipython: Any) -> None:
    if strip_step_magic in ipython.input_transformers_cleanup:
        ipython.input_transformers_cleanup.remove(strip_step_magic)


def strip_step_magic(lines: list[str]) -> list[str]:
    """A first line ``%%step NAME`` becomes a comment: the cell then runs as the plain Python
    it is (its last expression shown), exactly as the pipeline's step runs it."""
    if lines and STEP_MAGIC.match(lines[0].rstrip("\n")):
        return ["# " + lines[0], *lines[1:]]
    return lines


def current_notebook(user_ns: dict[str, Any]) -> Path | None:
    """The notebook this kernel runs: ``__session__`` (ipykernel, from the front end) or
    JPY_SESSION_NAME (jupyter_server), when it names an existing .ipynb file."""
    for candidate in (user_ns.get("__session__"), os.environ.get(SESSION_ENV)):
        if isinstance(candidate, str) and candidate.endswith(".ipynb"):
            path = Path(candidate)
            if path.is_file():
                return path
    return None


@magics_class
class Jup2KubMagics(Magics):
    @line_magic_named("jup2kub")
    def jup2kub(self, line: str) -> None:
        """%jup2kub inspect|run|build|deploy|status|submit|results [ARGS]: see `jup2kub --help`."""
        try:
            args = shlex.split(line)
        except ValueError as exc:
            _error(f"cannot read the arguments: {exc}")
            return
        try:
            self._dispatch(args)
        except Jup2KubError as exc:
            _error(str(exc))
        except click.exceptions.Exit:
            pass
        except click.ClickException as exc:
            _error(exc.format_message())

    @cell_magic_named("step")
    def step(self, line: str, cell: str) -> None:
        """%%step NAME: the cell is step NAME's first cell (as ``#| step: NAME``). Reached only
        when the cell's first line was not stripped (the extension strips it): run the body."""
        assert self.shell is not None
        run_cell(self.shell, cell)

    def _dispatch(self, args: list[str]) -> None:
        if not args or args[0] in ("-h", "--help", "help"):
            _show_text(cli_main.get_help(click.Context(cli_main, info_name="%jup2kub")))
            return
        command, rest = args[0], args[1:]
        if command in NOTEBOOK_COMMANDS:
            rest = self._with_notebook(command, rest)
        if command == "inspect":
            self._inspect(rest)
        elif command == "run":
            self._run(rest)
        else:
            self._command([command, *rest])

    def _with_notebook(self, command: str, rest: list[str]) -> list[str]:
        if rest and rest[0].endswith(".ipynb") and not rest[0].startswith("-"):
            return rest
        if any(a in ("-h", "--help") for a in rest):
            return ["-", *rest]
        assert self.shell is not None
        path = current_notebook(self.shell.user_ns)
        if path is None:
            raise UsageError(
                "which notebook? this kernel was not told the notebook it runs",
                hint=f"save the notebook and name it: %jup2kub {command} NOTEBOOK.ipynb ...",
            )
        return [str(path), *rest]

    def _inspect(self, args: list[str]) -> None:
        params = _parse(inspect_command, "inspect", args)
        pipeline = api.inspect_notebook(params["notebook"], params["split"], params["name"])
        show_html(steps_html(pipeline))
        svg = api.graph_svg(pipeline)
        if svg is not None:
            show_svg(svg)
        else:
            _show_text("(install Graphviz for the DAG picture)\n" + api.to_mermaid(pipeline))
        for warning in [*pipeline.split_warnings, *pipeline.warnings, *pipeline.unshippable]:
            _show_text(f"warning: {warning}")

    def _run(self, args: list[str]) -> None:
        params = _parse(run_command, "run", args)
        output = params["output"] or params["output_arg"]
        progress = _Progress(HtmlArea("starting..."))
        timeout = params["timeout"]
        result = api.run(
            params["notebook"],
            parameter_files=params["files"],
            parameter_yaml=params["yaml_texts"],
            parameter_strings=params["pairs"],
            split=params["split"],
            name=params["name"],
            workdir=params["workdir"],
            output=output,
            jobs=params["jobs"],
            resume=params["resume"],
            kafka=params["kafka"],
            on_change=progress.update,
            warn=lambda w: _show_text(f"warning: {w}"),
            timeout=None if timeout is None else api.parse_duration(timeout),
        )
        progress.update(result.steps, force=True)
        state = "succeeded" if result.ok else "failed"
        notebook = result.output or result.notebook
        show_html(f"<b>run {html.escape(result.run_id)}: {state}</b>; results notebook:")
        show_file_link(_relative(notebook))
        for st in result.failed:
            if st.error is not None:
                where = f"cell {st.error.cell}" if st.error.cell is not None else "its setup"
                _error(f"step {st.name!r} failed in {where}: {st.error.ename}: {st.error.evalue}")

    def _command(self, args: list[str]) -> None:
        """Any other command, as the command line runs it, its output in the cell."""
        try:
            cli_main.main(args, prog_name="%jup2kub", standalone_mode=False)
        except SystemExit as exc:  # the command's own error exit: its message is printed
            if exc.code not in (0, None):
                _error(f"exit code {exc.code}")


def _parse(command: click.Command, name: str, args: list[str]) -> dict[str, Any]:
    with command.make_context(f"%jup2kub {name}", list(args)) as ctx:
        return dict(ctx.params)


class _Progress:
    """The run's steps as a table in the cell, updated in place (at most 4 times a second)."""

    def __init__(self, area: HtmlArea) -> None:
        self.area = area
        self.shown = 0.0

    def update(self, steps: dict[str, api.StepRun], force: bool = False) -> None:
        now = time.monotonic()
        if not force and now - self.shown < 0.25:
            return
        self.shown = now
        self.area.update(progress_html(steps))


_COLORS = {"succeeded": "green", "failed": "red", "running": "#b58900", "blocked": "purple"}


def progress_html(steps: dict[str, api.StepRun]) -> str:
    rows = []
    for st in steps.values():
        state = st.state.value + (" (reused)" if st.reused else "")
        seconds = "" if st.seconds is None else f"{st.seconds:.1f}s"
        cell = "" if st.cell is None or st.state != api.RUNNING else str(st.cell)
        color = _COLORS.get(st.state.value, "gray")
        rows.append(
            f"<tr><td>{html.escape(st.name)}</td><td style='color:{color}'>{state}</td>"
            f"<td>{seconds}</td><td>{cell}</td></tr>"
        )
    head = "<tr><th>step</th><th>state</th><th>time</th><th>cell</th></tr>"
    return f"<table class='jup2kub-progress'>{head}{''.join(rows)}</table>"


def steps_html(p: api.Pipeline) -> str:
    """The steps of ``inspect`` as a table: cells, inputs (with their step), outputs, after."""
    rows = []
    for s in p.steps:
        inputs = ", ".join(
            f"{api.value_label(v)} &larr; {src}" for v, src in sorted(s.inputs.items())
        )
        outputs = ", ".join(api.value_label(v) for v in sorted(s.outputs))
        cells = ", ".join(map(str, s.cells))
        rows.append(
            "<tr>"
            + "".join(
                f"<td>{html.escape(x) if i != 2 else x}</td>"
                for i, x in enumerate(
                    [s.name, cells, inputs or "-", outputs or "-", ", ".join(s.after) or "-"]
                )
            )
            + "</tr>"
        )
    head = "".join(f"<th>{h}</th>" for h in ("step", "cells", "inputs", "outputs", "after"))
    title = (
        f"<p><b>{html.escape(p.name)}</b>: {len(p.steps)} steps ({html.escape(p.split)}), "
        f"run order: {' &rarr; '.join(' | '.join(w) for w in p.levels())}</p>"
    )
    return f"{title}<table class='jup2kub-steps'><tr>{head}</tr>{''.join(rows)}</table>"


def _relative(path: Path) -> str:
    """A path the front end can open: relative to the kernel's directory where possible."""
    try:
        return os.path.relpath(path)
    except ValueError:
        return str(path)


def _show_text(text: str) -> None:
    print(text)


def _error(text: str) -> None:
    print(f"error: {text}", file=sys.stderr)
