"""``jup2kub run``: the pipeline on this machine, its progress shown as it runs."""

from __future__ import annotations

import shlex
import sys
from pathlib import Path
from typing import NoReturn

import click

from jup2kub import api
from jup2kub.cli.options import kafka_timeout_option, name_option, parameter_options, split_option
from jup2kub.cli.progress import RunProgress
from jup2kub.cli.reporting import reports_errors, warn
from jup2kub.errors import UsageError


@click.command()
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
@reports_errors
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
    progress = RunProgress()
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
            on_change=progress.show,
            warn=warn,
            kafka_timeout=api.parse_duration(kafka_timeout),
            cache=not no_cache,
            cache_dir=cache_dir,
            timeout=seconds,
            on_output=progress.printed if log_output else None,
        )
    finally:
        progress.stop()
    click.echo(f"run {result.run_id}: {'succeeded' if result.ok else 'failed'}")
    if result.output is not None:
        click.echo(f"results notebook: {result.output} (and {result.notebook})")
    else:
        click.echo(f"results notebook: {result.notebook}")
    click.echo(f"summary: {result.summary}")
    if result.crate is not None:
        click.echo(f"provenance (RO-Crate): {result.crate}")
    _cache_summary(result)
    if not result.ok:
        _report_failure(result, notebook, timeout)


def _cache_summary(result: api.RunResult) -> None:
    """Which steps were reused and which executed, and why (with the step cache)."""
    if not any(st.why for st in result.steps.values()):
        return
    for st in result.steps.values():
        if st.reused:
            click.echo(f"  reused   {st.name}: {st.why}")
        elif st.state in (api.DONE, api.FAILED):
            click.echo(f"  executed {st.name}" + (f": {st.why}" if st.why else ""))


def _report_failure(result: api.RunResult, notebook: Path, timeout: str | None) -> NoReturn:
    """What failed (each step's error and traceback), what did not run, and how to resume;
    then the exit code: 124 when the run timed out, else 1."""
    for st in result.failed:
        err = st.error
        if err is None:
            continue
        where = f"in cell {err.cell}" if err.cell is not None else "outside its cells"
        click.echo(f"error: step {st.name!r} failed {where}: {err.ename}: {err.evalue}", err=True)
        for line in err.traceback:
            click.echo(f"  {line}", err=True)
    if result.unrecovered is not None:
        click.echo(f"error: the run could not go on from this: {result.unrecovered}", err=True)
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
