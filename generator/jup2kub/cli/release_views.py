"""What the cluster commands show with rich: a release's readiness while it is deployed, and
its status (pods, readiness, recent runs)."""

from __future__ import annotations

import sys
from typing import TYPE_CHECKING

from jup2kub import api

if TYPE_CHECKING:
    from rich.live import Live
    from rich.table import Table


def readiness_table(state: api.Readiness) -> Table:
    """The workloads of a release being deployed, and why their pods are not ready yet."""
    from rich.table import Table  # rich: loaded on use (start-up time)

    table = Table(box=None, pad_edge=False)
    for col in ("workload", "ready", "pods"):
        table.add_column(col)
    for w in state.workloads:
        pods = [p for p in state.pods if p.component == w.component]
        detail = ", ".join(
            f"{p.name.rsplit('-', 1)[-1]} {p.reason or p.phase}" for p in pods if not p.ready
        )
        mark = "[green]ready[/]" if w.is_ready else "[yellow]waiting[/]"
        table.add_row(f"{w.kind.lower()}/{w.name}", f"{w.ready}/{w.desired} {mark}", detail)
    return table


def live_display() -> Live | None:
    """A display on stderr updated in place, where stderr is a terminal."""
    if not sys.stderr.isatty():
        return None
    from rich.console import Console  # rich: loaded on use (start-up time)
    from rich.live import Live

    live = Live(console=Console(stderr=True), refresh_per_second=2, transient=True)
    live.start()
    return live


def print_release_status(st: api.ReleaseStatus) -> None:
    """``status --release``: the release, its pods and its recent runs, as tables."""
    from rich.console import Console  # rich: loaded on use (start-up time)
    from rich.table import Table

    # piped output keeps whole pod names and run ids (rich would cut them at 80 columns)
    console = Console(width=None if sys.stdout.isatty() else 250)
    console.print(
        f"release [bold]{st.release}[/] (namespace {st.namespace}): revision "
        f"{st.revision} {st.helm_status}, chart {st.chart}; "
        f"{st.readiness.summary()}",
        highlight=False,
    )
    pods = Table(box=None, pad_edge=False, title="pods", title_justify="left")
    for col in ("pod", "component", "phase", "ready", "restarts", "note"):
        pods.add_column(col)
    for p in st.readiness.pods:
        note = (p.reason or "") + (f": {p.message}" if p.message else "")
        pods.add_row(
            p.name, p.component, p.phase, "yes" if p.ready else "no", str(p.restarts), note
        )
    console.print(pods)
    steps = sorted({s for r in st.runs for s in r.steps} | set(st.run_errors))
    runs = Table(box=None, pad_edge=False, title="recent runs", title_justify="left")
    runs.add_column("run")
    runs.add_column("state")
    for step in steps:
        runs.add_column(step)
    for r in st.runs:
        runs.add_row(r.run_id, r.state, *[r.steps.get(s, {}).get("state", "-") for s in steps])
    console.print(runs if st.runs else "recent runs: none yet")
    for step, why in sorted(st.run_errors.items()):
        console.print(f"[yellow]runs of step {step} unknown:[/] {why}", highlight=False)
