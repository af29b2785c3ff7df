"""What one attempt at a run message came to, like kopf's handler outcomes.

``StepLoop._attempt`` decides (the step's policy, in one place) and returns one of these;
``StepLoop`` then acts on it: publishes the status, downstream and dead-letter messages, waits
before a retry, and marks the message committable, and counts it (``counted_as``, and the
execution's ``seconds`` when there was one). Shutting down meanwhile is not an outcome but the
``Abandon`` exception, since a wait or a publication can be cut short by it anywhere.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TypeAlias

from ..contract.errors import ErrorRecord
from ..contract.metrics import ExecutionOutcome


@dataclass(frozen=True)
class Succeeded:
    """Executed now: results stored; say so and announce the run downstream."""

    attempt: int
    seconds: float
    #: the step cache's result, loaded instead of executed
    reused: bool = False


@dataclass(frozen=True)
class Skipped:
    """Already complete: announce it downstream again (the first announcement may be lost).
    ``meanwhile``: completed by another process while this one was about to execute it."""

    meanwhile: bool = False


@dataclass(frozen=True)
class Waiting:
    """Some upstream steps are not complete yet: their own announcements will bring it back."""

    missing: list[str] = field(default_factory=list)


@dataclass(frozen=True)
class Blocked:
    """A step of the run failed for good before this step's first cell: nbclient stops there,
    so this step never starts (its downstream steps are not announced either)."""

    failed_at: int


@dataclass(frozen=True)
class Retry:
    """Try again after ``delay`` seconds; ``error`` (the step's code failed) is reported as a
    ``retrying`` status of ``attempt``, other causes (volume, a concurrent execution) not."""

    delay: float
    error: ErrorRecord | None = None
    attempt: int = 0
    #: the failed execution's wall time (None: nothing was executed)
    seconds: float | None = None


@dataclass(frozen=True)
class DeadLetter:
    """Failed for good: dead-letter the message and report the run failed."""

    reason: str
    error: ErrorRecord
    attempt: int
    #: the last execution's wall time (None: decided without executing, e.g. attempts used up)
    seconds: float | None = None


Outcome: TypeAlias = Succeeded | Skipped | Waiting | Blocked | Retry | DeadLetter


def counted_as(outcome: Outcome) -> ExecutionOutcome | None:
    """The ``outcome`` label this attempt counts under; None for a retry that follows no
    failure of the step's code (volume trouble, another process executing the run)."""
    if isinstance(outcome, Succeeded):
        return ExecutionOutcome.SUCCEEDED
    if isinstance(outcome, Skipped):
        return ExecutionOutcome.SKIPPED
    if isinstance(outcome, Waiting):
        return ExecutionOutcome.WAITING
    if isinstance(outcome, Blocked):
        return ExecutionOutcome.BLOCKED
    if isinstance(outcome, DeadLetter):
        return ExecutionOutcome.FAILED
    return ExecutionOutcome.RETRIED if outcome.error is not None else None


def executed_seconds(outcome: Outcome) -> float | None:
    """The wall time of the execution behind this outcome, if the step's cells ran."""
    if isinstance(outcome, Succeeded | Retry | DeadLetter):
        return outcome.seconds
    return None
