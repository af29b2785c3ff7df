"""``jup2kub status NOTEBOOK --kafka BOOTSTRAP --watch``: what a pipeline does, read from its
Kafka alone (runtimes on this machine, or a cluster's Kafka through a port-forward).

Per step:

- runs done, failed and in flight: the latest state of each run on the status topic;
- execution time p50/p95: from the status topic as well, each ``started`` paired with the
  first ``succeeded``, ``failed`` or ``retrying`` of the same run, step and attempt. Both are
  stamped by the one process that executed the step, so no clock skew enters; the topic is
  durable and holds every replica's executions, those of replicas since restarted included.
  The steps' own ``/metrics`` histograms would say the same per process, but a local watch
  cannot find the runtimes' ports, and a restarted process's histogram starts empty;
- lag: the step's consumer group's committed offsets against the end offsets of its input
  topics (a message being executed counts until its handling is over and committed);
- replicas: the live members of the step's consumer group (``describe_consumer_groups``).

Its recent runs (the JupyterLab panel's Runs view): every run on the runs topic, newest
submitted first, each step's latest status message on the status topic.
"""

from __future__ import annotations

import contextlib
import json
import time
from collections.abc import Mapping
from typing import Any

from jup2kub.activity import (
    PipelineStatus,
    RecentRuns,
    RunCounts,
    RunRow,
    StepStatus,
    quantile,
)
from jup2kub.plan import PipelinePlan
from jup2kub.run.remote import CONNECT_TIMEOUT, _connect, _servers, _settled
from jup2kub_runtime.contract import messages, topics
from jup2kub_runtime.contract.states import StepState

#: how long one snapshot may read the status and runs topics to catch up with their end
CATCH_UP_SECONDS = 10.0
#: a step is executing a run while its latest state there is one of these
IN_FLIGHT = (StepState.STARTED.value, StepState.RETRYING.value)
#: the states that end an execution (timed against its ``started``)
ENDS_EXECUTION = (StepState.SUCCEEDED.value, StepState.FAILED.value, StepState.RETRYING.value)


class KafkaActivity:
    """Follows a pipeline's status and runs topics and its consumer groups; ``snapshot()``
    reads what is new since the last one. Close it when done."""

    def __init__(
        self, bootstrap: str, plan: PipelinePlan, connect_timeout: float = CONNECT_TIMEOUT
    ) -> None:
        from kafka import KafkaConsumer  # kafka-python: loaded on use
        from kafka.admin import KafkaAdminClient

        self.bootstrap = bootstrap
        self.plan = plan
        servers = _servers(bootstrap)
        self.consumer = _connect(
            bootstrap,
            lambda: KafkaConsumer(
                bootstrap_servers=servers,
                enable_auto_commit=False,
                auto_offset_reset="earliest",
                metadata_max_age_ms=5000,  # topics created after the watch began
            ),
            connect_timeout,
        )
        self.admin = _connect(
            bootstrap, lambda: KafkaAdminClient(bootstrap_servers=servers), connect_timeout
        )
        self._followed = (topics.status_topic(plan.name), topics.runs_topic(plan.name))
        self._assigned: set[str] = set()
        self.runs: dict[str, None] = {}  # run ids in order of submission
        self.submitted: dict[str, float] = {}  # run id -> its submitted_at
        self.latest: dict[str, dict[str, dict[str, Any]]] = {}  # run -> step -> status message
        self._started: dict[tuple[str, str, int], float] = {}
        self._timed: set[tuple[str, str, int]] = set()
        self.seconds: dict[str, list[float]] = {s.name: [] for s in plan.steps}

    # ---- the topics ------------------------------------------------------------------------
    def _assign(self) -> None:
        from kafka import TopicPartition

        missing = [t for t in self._followed if t not in self._assigned]
        if not missing:
            return
        for topic in missing:
            if self.consumer.partitions_for_topic(topic):
                self._assigned.add(topic)
        tps = [
            TopicPartition(t, p)
            for t in sorted(self._assigned)
            for p in sorted(self.consumer.partitions_for_topic(t) or ())
        ]
        known = set(self.consumer.assignment())
        self.consumer.assign(tps)
        new = [tp for tp in tps if tp not in known]
        if new:
            self.consumer.seek_to_beginning(*new)

    def _catch_up(self) -> None:
        """Read the followed topics up to the end they had when this began."""
        self._assign()
        tps = list(self.consumer.assignment())
        if not tps:
            return
        ends = self.consumer.end_offsets(tps)
        deadline = time.monotonic() + CATCH_UP_SECONDS
        while any(self.consumer.position(tp) < ends[tp] for tp in tps):
            if time.monotonic() > deadline:
                break
            for records in self.consumer.poll(timeout_ms=300).values():
                for record in records:
                    self._fold(record.topic, record.value)

    def _fold(self, topic: str, value: bytes | None) -> None:
        try:
            msg = json.loads(value or b"")
        except (ValueError, TypeError):
            return
        if not isinstance(msg, dict) or not isinstance(msg.get("run_id"), str):
            return
        run = msg["run_id"]
        if topic == self._followed[1]:
            if msg.get("type") == "run":
                self.runs.setdefault(run, None)
                if isinstance(msg.get("submitted_at"), str):
                    with contextlib.suppress(ValueError):
                        self.submitted.setdefault(run, messages.parse_time(msg["submitted_at"]))
            return
        step, state, attempt = msg.get("step"), msg.get("state"), msg.get("attempt")
        if msg.get("type") != "status" or step not in self.seconds:
            return
        self.latest.setdefault(run, {})[step] = msg
        if not isinstance(attempt, int) or not isinstance(msg.get("at"), str):
            return
        key = (run, step, attempt)
        try:
            at = messages.parse_time(msg["at"])
        except ValueError:
            return
        if state == StepState.STARTED.value:
            self._started.setdefault(key, at)
        elif state in ENDS_EXECUTION and key in self._started and key not in self._timed:
            # the first end only: a redelivered run re-announces "succeeded" later
            self._timed.add(key)
            self.seconds[step].append(max(at - self._started[key], 0.0))

    # ---- the consumer groups ---------------------------------------------------------------
    def _lag(self, input_topics: tuple[str, ...], group: str) -> int | None:
        """Messages on ``input_topics`` past ``group``'s committed offsets (from the
        beginning where it committed none); None while none of the topics exists."""
        from kafka import TopicPartition

        tps = [
            TopicPartition(t, p)
            for t in input_topics
            for p in sorted(self.consumer.partitions_for_topic(t) or ())
        ]
        if not tps:
            return None
        committed = self.admin.list_consumer_group_offsets(group)
        ends = self.consumer.end_offsets(tps)
        starts = self.consumer.beginning_offsets(tps)
        lag = 0
        for tp in tps:
            mark = committed.get(tp)
            offset = mark.offset if mark is not None and mark.offset >= 0 else starts[tp]
            lag += max(ends[tp] - offset, 0)
        return lag

    def _members(self) -> dict[str, int]:
        groups = [s.consumer_group for s in self.plan.steps]
        described = self.admin.describe_consumer_groups(groups)
        return {g.group: len(g.members) for g in described}

    # ---- the table -------------------------------------------------------------------------
    def snapshot(self) -> PipelineStatus:
        from kafka.errors import KafkaError

        problems: list[str] = []
        try:
            self._catch_up()
        except KafkaError as exc:
            problems.append(f"the status topic could not be read: {exc}")
        members: dict[str, int] = {}
        try:
            members = self._members()
        except KafkaError as exc:
            problems.append(f"the consumer groups could not be described: {exc}")
        rows = []
        for step in self.plan.steps:
            lag: int | None = None
            try:
                lag = self._lag(step.input_topics, step.consumer_group)
            except KafkaError as exc:
                problems.append(f"the lag of step {step.name} could not be read: {exc}")
            states = [r[step.name].get("state") for r in self.latest.values() if step.name in r]
            rows.append(
                StepStatus(
                    step=step.name,
                    ready=members.get(step.consumer_group),
                    desired=None,
                    in_flight=sum(s in IN_FLIGHT for s in states),
                    done=states.count(StepState.SUCCEEDED.value),
                    failed=states.count(StepState.FAILED.value),
                    lag=lag,
                    p50=quantile(self.seconds[step.name], 0.5),
                    p95=quantile(self.seconds[step.name], 0.95),
                )
            )
        return PipelineStatus(
            f"pipeline {self.plan.name} on Kafka {self.bootstrap}",
            tuple(rows),
            self._run_counts(),
            tuple(problems),
        )

    def _run_counts(self) -> RunCounts:
        """Every run submitted (or seen on the status topic): done when every step succeeded,
        failed once a step failed and nothing else can change."""
        states = [self._run_state(run) for run in {**self.runs, **dict.fromkeys(self.latest)}]
        return RunCounts(
            len(states),
            states.count(StepState.SUCCEEDED.value),
            states.count(StepState.FAILED.value),
        )

    def _run_state(self, run: str) -> str:
        """succeeded (every step), failed (a step failed and nothing else can change), running
        (a step said something) or pending (none did yet)."""
        steps = [s.name for s in self.plan.steps]
        downstream = {s.name: list(s.downstream) for s in self.plan.steps}
        states: Mapping[str, Mapping[str, Any]] = self.latest.get(run, {})
        finished = [s for s in steps if states.get(s, {}).get("state") == StepState.SUCCEEDED]
        broken = [s for s in steps if states.get(s, {}).get("state") == StepState.FAILED]
        if len(finished) == len(steps):
            return StepState.SUCCEEDED.value
        if broken and _settled(steps, states, broken, downstream):
            return StepState.FAILED.value
        return StepState.RUNNING.value if states else StepState.PENDING.value

    def recent_runs(self, limit: int) -> RecentRuns:
        """The ``limit`` runs submitted last (read up to now), each step's latest state."""
        from kafka.errors import KafkaError

        problems: list[str] = []
        try:
            self._catch_up()
        except KafkaError as exc:
            problems.append(f"the status topic could not be read: {exc}")
        known = list({**self.runs, **dict.fromkeys(self.latest)})
        rows = [
            RunRow(
                run,
                self._run_state(run),
                {step: _step_entry(msg) for step, msg in self.latest.get(run, {}).items()},
                self.submitted.get(run),
            )
            for run in known
        ]
        order = {run: i for i, run in enumerate(known)}
        rows.sort(key=lambda r: (r.submitted_at or 0.0, order[r.run_id]), reverse=True)
        return RecentRuns(
            f"pipeline {self.plan.name} on Kafka {self.bootstrap}",
            tuple(s.name for s in self.plan.steps),
            tuple(rows[: max(limit, 0)]),
            tuple(problems),
        )

    def close(self) -> None:
        self.consumer.close()
        self.admin.close()


def _step_entry(msg: Mapping[str, Any]) -> dict[str, Any]:
    """What a run's row says of one step: its latest status message's state, attempt and time,
    and the error's name, message and cell when it failed (never a value)."""
    entry = {k: msg[k] for k in ("state", "attempt", "at") if k in msg}
    error = msg.get("error")
    if isinstance(error, dict):
        entry["error"] = dict(error)  # its summary: name, message, cell
    return entry
