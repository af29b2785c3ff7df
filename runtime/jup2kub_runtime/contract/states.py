"""The one vocabulary for the state of a step in a run, shared by every place that reports it.

The values are what goes on the wire (status messages, ``GET /runs``, the single-execution
command's output), so they never change; a member is serialised as its ``value``.
"""

from __future__ import annotations

from enum import Enum


class StepState(str, Enum):
    """Where one step stands in one run."""

    #: not started yet (the local runner: its upstream steps are not all done)
    WAITING = "waiting"
    #: ``GET /runs``: known to the volume, neither running, finished nor failed here
    PENDING = "pending"
    #: an execution began (status message ``started``)
    STARTED = "started"
    #: ``GET /runs``: this process is executing it now
    RUNNING = "running"
    #: an execution failed and another one follows after a backoff
    RETRYING = "retrying"
    #: another process on the volume is executing it (``run_step`` returned without running)
    BUSY = "busy"
    #: executed, results stored (the completion marker exists)
    SUCCEEDED = "succeeded"
    #: found already complete, so not executed again
    SKIPPED = "skipped"
    #: failed for good (dead-lettered, or the local runner gave up)
    FAILED = "failed"
    #: never to run: an upstream step failed (the local runner), or a step failed for good
    #: before this step's first cell (status message ``blocked``: nbclient stops there)
    BLOCKED = "blocked"


#: the states a status message may carry (``<pipeline>.status``)
STATUS_STATES = frozenset(
    {
        StepState.STARTED,
        StepState.SUCCEEDED,
        StepState.FAILED,
        StepState.RETRYING,
        StepState.BLOCKED,
    }
)
