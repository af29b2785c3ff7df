"""``jup2kub runs``: the local runs and the step cache, listed and collected."""

from __future__ import annotations

import time
from pathlib import Path

import click

from jup2kub import api
from jup2kub.cli.reporting import reports_errors
from jup2kub.errors import UsageError


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


@click.group(invoke_without_command=True)
@workdir_option
@click.pass_context
@reports_errors
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
@reports_errors
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
@reports_errors
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


@runs.command("export")
@click.argument("run_id", metavar="RUN_ID")
@click.argument("target", metavar="CRATE.zip", type=click.Path(path_type=Path))
@workdir_option
@reports_errors
def runs_export(run_id: str, target: Path, workdir: Path | None) -> None:
    """Pack RUN_ID's RO-Crate (its ro-crate-metadata.json, the notebook, the results notebook,
    the summary and every stored value) into one RO-Crate zip."""
    path, count = api.export_run(run_id, target, workdir)
    click.echo(f"wrote {path}: the RO-Crate of run {run_id} with {count} files")
