"""What a deployed pipeline is doing, one row per step: the table ``jup2kub status --watch``
shows; and its recent runs, one row per run with each step's state: what ``status --release``
lists and the JupyterLab panel's Runs view shows. Both sources fill them (the pipeline's Kafka:
``run.activity``; a release's step pods: ``cluster.activity``), so they live below both, with
the quantiles each one needs."""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from typing import Any


@dataclass(frozen=True)
class StepStatus:
    """One step of a pipeline, now."""

    step: str
    #: replicas ready (a release's Deployment), or live consumers in the step's group (Kafka);
    #: None when unknown
    ready: int | None
    #: replicas wanted (a release's Deployment); None on Kafka, where nothing declares it
    desired: int | None
    #: runs this step is executing (started or retrying, not yet finished)
    in_flight: int
    #: runs this step finished successfully
    done: int
    #: runs that failed for good at this step
    failed: int
    #: messages on the step's input topics its consumer group has not committed yet; None
    #: when unknown
    lag: int | None
    #: execution wall time in seconds, median and 95th percentile; None before any execution
    p50: float | None
    p95: float | None

    @property
    def replicas(self) -> str:
        """``ready/desired``, ``ready`` or ``-``."""
        if self.ready is None:
            return "-"
        return f"{self.ready}/{self.desired}" if self.desired is not None else str(self.ready)


@dataclass(frozen=True)
class RunCounts:
    """The runs the watch knows of, by how they ended."""

    submitted: int
    done: int
    failed: int

    @property
    def finished(self) -> bool:
        return self.done + self.failed >= self.submitted


@dataclass(frozen=True)
class PipelineStatus:
    """Every step's row, and the runs behind them."""

    #: where it was read, e.g. "pipeline churn on Kafka 127.0.0.1:9092"
    source: str
    steps: tuple[StepStatus, ...]
    #: None when the source cannot tell which runs were submitted
    runs: RunCounts | None
    #: what could not be read this time (e.g. a step pod's /metrics), one sentence each
    problems: tuple[str, ...] = field(default=())

    @property
    def settled(self) -> bool:
        """At least one run submitted, every one done or failed, nothing executing, no message
        left unconsumed (a watch begun before the first run waits for it)."""
        return (
            self.runs is not None
            and self.runs.submitted > 0
            and self.runs.finished
            and all(s.in_flight == 0 and not s.lag for s in self.steps)
        )

    def to_json(self) -> dict[str, Any]:
        return {
            "source": self.source,
            "steps": [asdict(s) for s in self.steps],
            "runs": asdict(self.runs) if self.runs is not None else None,
            "problems": list(self.problems),
            "settled": self.settled,
        }


@dataclass
class RunRow:
    """One run: its overall state and each step's (at least ``state``, a ``StepState`` value;
    a step that said nothing of the run yet is absent)."""

    run_id: str
    state: str
    steps: dict[str, dict[str, Any]] = field(default_factory=dict)
    #: when it was submitted (seconds since the epoch), when known
    submitted_at: float | None = None


@dataclass(frozen=True)
class RecentRuns:
    """A pipeline's recent runs, newest first."""

    #: where it was read, e.g. "pipeline churn on Kafka 127.0.0.1:9092"
    source: str
    #: the pipeline's steps, in run order (the columns)
    steps: tuple[str, ...]
    runs: tuple[RunRow, ...]
    #: what could not be read this time, one sentence each
    problems: tuple[str, ...] = field(default=())

    def to_json(self) -> dict[str, Any]:
        return {
            "source": self.source,
            "steps": list(self.steps),
            "runs": [asdict(r) for r in self.runs],
            "problems": list(self.problems),
        }


def quantile(samples: Sequence[float], q: float) -> float | None:
    """The ``q`` quantile of ``samples``, interpolated between the closest ranks (numpy's
    default); None for no samples."""
    if not samples:
        return None
    ordered = sorted(samples)
    pos = q * (len(ordered) - 1)
    low = math.floor(pos)
    high = min(low + 1, len(ordered) - 1)
    return ordered[low] + (ordered[high] - ordered[low]) * (pos - low)


def histogram_quantile(buckets: Sequence[tuple[float, float]], q: float) -> float | None:
    """The ``q`` quantile of a histogram's cumulative ``(upper bound, count)`` buckets (``+Inf``
    included), as Prometheus's ``histogram_quantile`` estimates it: linear within the bucket
    it falls in, the highest finite bound when it falls in ``+Inf``. None when empty."""
    ordered = sorted(buckets)
    if not ordered or ordered[-1][1] <= 0:
        return None
    rank = q * ordered[-1][1]
    lower, below = 0.0, 0.0
    for upper, count in ordered:
        if count >= rank:
            if math.isinf(upper):
                return lower
            if count == below:
                return upper
            return lower + (upper - lower) * (rank - below) / (count - below)
        lower, below = upper, count
    return lower
