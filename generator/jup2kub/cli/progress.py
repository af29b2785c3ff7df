"""A local run's progress on stderr: a live table of its steps on a terminal, else one line
per step's start and end (and a reminder while one runs long)."""

from __future__ import annotations

import os
import sys
import time
from typing import TYPE_CHECKING

import click

from jup2kub import api

if TYPE_CHECKING:
    from rich.live import Live
    from rich.table import Table


class RunProgress:
    """What ``jup2kub run`` shows while it runs: ``show`` the steps' states as they change,
    ``printed`` a cell's output line (with --log-output), ``stop`` at the end."""

    def __init__(self) -> None:
        self.latest: dict[str, api.StepRun] = {}
        self.lines = None if sys.stderr.isatty() else _ProgressLines(_progress_interval())
        self.live: Live | None = None
        if self.lines is None:
            from rich.console import Console  # rich: loaded only where a terminal shows it
            from rich.live import Live

            # rendered at every refresh: a running step's time goes on counting
            self.live = Live(
                console=Console(stderr=True),
                refresh_per_second=4,
                transient=False,
                get_renderable=lambda: _progress_table(self.latest),
            )
            self.live.start()

    def show(self, steps: dict[str, api.StepRun]) -> None:
        self.latest.update(steps)
        if self.lines is not None:
            self.lines(steps)

    def printed(self, step: str, line: str) -> None:
        if self.live is not None:
            self.live.console.print(f"[{step}] {line}", highlight=False, markup=False)
        else:
            click.echo(f"[{step}] {line}", err=True)

    def stop(self) -> None:
        if self.live is not None:
            self.live.stop()


def _progress_table(steps: dict[str, api.StepRun]) -> Table:
    from rich.table import Table  # rich: loaded only where a terminal shows the table

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
        click.echo(f"{time.strftime('%H:%M:%S')} {text}", err=True)


def _elapsed(seconds: float) -> str:
    if seconds < 60:
        return f"{seconds:.1f}s"
    minutes, secs = divmod(int(seconds), 60)
    return f"{minutes}m{secs:02d}s" if minutes < 60 else f"{minutes // 60}h{minutes % 60:02d}m"


def _progress_interval() -> float:
    try:
        return max(0.0, float(os.environ.get("J2K_PROGRESS_INTERVAL", "60")))
    except ValueError:
        return 60.0
