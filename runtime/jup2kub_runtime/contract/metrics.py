"""The metrics every step process exports at ``/metrics``: names, types, labels, buckets.

They are a contract for dashboards and alert rules, so they live here, in one place: the
runtime registers them from these definitions and the chart's README lists them from them. A
published name keeps its meaning; a new meaning gets a new name.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import Enum

#: the labels of every family: which pipeline and which of its steps
LABELS = ("pipeline", "step")


class ExecutionOutcome(str, Enum):
    """What the handling of one message came to (the ``outcome`` label's values)."""

    #: executed now, results stored
    SUCCEEDED = "succeeded"
    #: an execution failed and another one follows after a backoff
    RETRIED = "retried"
    #: the run failed for good at this step: reported failed, its message dead-lettered
    FAILED = "failed"
    #: not a message this step can run (unreadable, misrouted): dead-lettered unexecuted
    DEAD_LETTERED = "dead_lettered"
    #: already complete (a redelivery, a duplicate, or done meanwhile by another process)
    SKIPPED = "skipped"
    #: a fan-in message ahead of some upstream steps: their own messages bring the run back
    WAITING = "waiting"
    #: a step of the run failed for good before this step's first cell: never started
    BLOCKED = "blocked"


@dataclass(frozen=True)
class Family:
    """One metric family as a scraper sees it (a counter's samples end in ``_total``)."""

    name: str
    kind: str  # "counter", "gauge" or "histogram"
    help: str
    labels: tuple[str, ...] = LABELS

    @property
    def base(self) -> str:
        """The name without a counter's ``_total`` (what prometheus_client is given)."""
        return self.name.removesuffix("_total") if self.kind == "counter" else self.name


EXECUTIONS = Family(
    "j2k_step_executions_total",
    "counter",
    "What the messages this step consumed came to: one final outcome per message, plus one "
    "retried per failed execution that is tried again.",
    (*LABELS, "outcome"),
)
EXECUTION_SECONDS = Family(
    "j2k_step_execution_seconds",
    "histogram",
    "Wall time of one execution of the step (succeeded, a reuse of the step cache included, "
    "retried or failed).",
)
HANDOFF_SECONDS = Family(
    "j2k_handoff_latency_seconds",
    "histogram",
    "From the upstream message's produce time to this step starting on it.",
)
MESSAGES_CONSUMED = Family(
    "j2k_messages_consumed_total", "counter", "Messages consumed from the input topics."
)
MESSAGES_DEAD_LETTERED = Family(
    "j2k_messages_dead_lettered_total", "counter", "Messages sent to the dead-letter topic."
)
CONSUMER_LAG = Family(
    "j2k_consumer_lag",
    "gauge",
    "Messages not yet consumed on the assigned partitions (measured every 5 s).",
)
CONSUMER_LAG_SECONDS = Family(
    "j2k_consumer_lag_seconds",
    "gauge",
    "Age of the oldest message not yet consumed on the assigned partitions; 0 when caught up "
    "(measured every 5 s).",
)
BUSY = Family("j2k_busy", "gauge", "1 while the step executes a run.")
READY = Family(
    "j2k_ready", "gauge", "1 when connected, subscribed, warmed up and the volume is writable."
)

#: every family, in the order of the documentation
FAMILIES = (
    EXECUTIONS,
    EXECUTION_SECONDS,
    HANDOFF_SECONDS,
    MESSAGES_CONSUMED,
    MESSAGES_DEAD_LETTERED,
    CONSUMER_LAG,
    CONSUMER_LAG_SECONDS,
    BUSY,
    READY,
)

#: the histograms' bucket bounds in seconds (+Inf is implied): a cell of milliseconds up to a
#: half-hour training step
BUCKETS = (
    0.005,
    0.01,
    0.025,
    0.05,
    0.1,
    0.25,
    0.5,
    1.0,
    2.5,
    5.0,
    10.0,
    30.0,
    60.0,
    300.0,
    1800.0,
)
