"""``jup2kub status --watch``: the per-step table of ``api.watch_status``, redrawn in place on
a terminal (rich's ``Live``: the cursor goes back up over the last table), and as plain lines
elsewhere, one block each time something changed."""

from __future__ import annotations

import io
import json
import sys
import time
from typing import TYPE_CHECKING

import click

from jup2kub import api

if TYPE_CHECKING:
    from rich.console import RenderableType
    from rich.live import Live

COLUMNS = ("step", "replicas", "in flight", "done", "failed", "lag", "p50", "p95")


def seconds(value: float | None) -> str:
    """A duration as short as it stays readable: 0.042s, 3.1s, 12s, 4m05s."""
    if value is None:
        return "-"
    if value < 1:
        return f"{value:.3f}s"
    if value < 10:
        return f"{value:.1f}s"
    if value < 60:
        return f"{value:.0f}s"
    minutes, rest = divmod(round(value), 60)
    return f"{minutes}m{rest:02d}s"


def cells(row: api.StepStatus) -> tuple[str, ...]:
    return (
        row.step,
        row.replicas,
        str(row.in_flight),
        str(row.done),
        str(row.failed),
        "-" if row.lag is None else str(row.lag),
        seconds(row.p50),
        seconds(row.p95),
    )


def headline(st: api.PipelineStatus) -> str:
    runs = st.runs
    if runs is None:
        return f"{st.source}: runs unknown"
    running = runs.submitted - runs.done - runs.failed
    return (
        f"{st.source}: {runs.submitted} runs submitted, {runs.done} done, {runs.failed} "
        f"failed, {running} not finished"
    )


def table(st: api.PipelineStatus) -> RenderableType:
    from rich.console import Group  # rich: loaded on use (start-up time)
    from rich.table import Table
    from rich.text import Text

    grid = Table(box=None, pad_edge=False)
    for col in COLUMNS:
        grid.add_column(col, justify="left" if col == "step" else "right")
    for row in st.steps:
        grid.add_row(*cells(row))
    notes = [Text(f"note: {p}", style="yellow") for p in st.problems]
    return Group(Text(headline(st)), grid, *notes)


def plain(st: api.PipelineStatus) -> str:
    """The table as text: no colour, no escape, whole names."""
    from rich.console import Console  # rich: loaded on use (start-up time)

    out = io.StringIO()
    Console(file=out, width=250, force_terminal=False, no_color=True, color_system=None).print(
        table(st), highlight=False
    )
    return "\n".join(line.rstrip() for line in out.getvalue().splitlines())


def watch(source: api.StatusWatch, interval: float, until_done: bool, as_json: bool) -> int:
    """Show ``source`` every ``interval`` s until Ctrl-C (0) or, with ``until_done``, until
    every submitted run is done or failed (1 if one failed). Returns the exit code."""
    live = _live() if sys.stdout.isatty() and not as_json else None
    shown = None
    try:
        while True:
            st = source.snapshot()
            if live is not None:
                live.update(_frame(st, interval))
                live.refresh()
            else:
                text = json.dumps(st.to_json()) if as_json else plain(st)
                if text != shown:
                    shown = text
                    click.echo(text if as_json else f"{time.strftime('%H:%M:%S')}\n{text}\n")
            if until_done and st.settled:
                return 1 if st.runs is not None and st.runs.failed else 0
            time.sleep(interval)
    except KeyboardInterrupt:
        return 0
    finally:
        if live is not None:
            live.stop()
        source.close()


def _frame(st: api.PipelineStatus, interval: float) -> RenderableType:
    """What the terminal shows: the time, how to stop, the table."""
    from rich.console import Group  # rich: loaded on use (start-up time)
    from rich.text import Text

    stamp = time.strftime("%H:%M:%S")
    return Group(Text(f"{stamp}  every {interval:g}s, Ctrl-C to stop"), table(st))


def _live() -> Live:
    from rich.console import Console  # rich: loaded on use (start-up time)
    from rich.live import Live

    live = Live(console=Console(), auto_refresh=False, redirect_stderr=False)
    live.start()
    return live
