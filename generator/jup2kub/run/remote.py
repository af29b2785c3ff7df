"""Talking to a running pipeline through its Kafka: submit a run, follow its status.

Used by ``jup2kub run --kafka``, ``jup2kub submit`` and ``jup2kub status``, on this machine or
against a cluster's Kafka reached through ``kubectl port-forward``.
"""

from __future__ import annotations

import contextlib
import json
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, TypeVar

from jup2kub.errors import KafkaUnavailableError
from jup2kub.run import producers
from jup2kub_runtime.contract import messages, topics
from jup2kub_runtime.contract.states import StepState
from jup2kub_runtime.contract.tracing import PIPELINE, RUN_ID, run_span_name
from jup2kub_runtime.execution.tracing import Span, tracer

#: a step's last state in a run (``blocked``: a step failed before its first cell)
FINAL = (StepState.SUCCEEDED, StepState.FAILED, StepState.BLOCKED)


T = TypeVar("T")

#: how long submit and status wait for a broker that does not answer (e.g. one restarting)
CONNECT_TIMEOUT = 30.0

#: how long the shared producer waits for more messages to batch with one (ms): concurrent
#: submits from several threads then share a request, at a cost a single submit hardly sees
LINGER_MS = 5


def _servers(bootstrap: str) -> list[str]:
    return [s.strip() for s in bootstrap.split(",") if s.strip()]


def _connect(
    bootstrap: str, make: Callable[[], T], timeout: float, total: float | None = None
) -> T:
    """``make()`` a client, again with a growing pause while no broker answers (it may be
    restarting, or its name not yet in DNS), for up to ``timeout`` s; then an error naming the
    address (``total``: the whole wait it is the rest of, for that message)."""
    from kafka.errors import KafkaError  # kafka-python: loaded by the commands that talk to Kafka

    deadline = time.monotonic() + timeout
    pause = 0.5
    while True:
        try:
            return make()
        except KafkaError as exc:
            left = deadline - time.monotonic()
            if left <= 0:
                raise KafkaUnavailableError(
                    f"cannot reach Kafka at {bootstrap} ({exc}; waited {total or timeout:.0f} s)",
                    hint="check --kafka, or wait longer with --kafka-timeout; for a cluster, "
                    "reach Kafka's advertised pod names (e.g. `e2e/cluster exec --`)",
                ) from exc
            time.sleep(min(pause, left))
            pause = min(pause * 2, 5.0)


def submit_run(
    bootstrap: str,
    pipeline: str,
    run_id: str,
    parameters: Mapping[str, Any],
    timeout: float = 30,
    connect_timeout: float = CONNECT_TIMEOUT,
    *,
    trace: Span | None = None,
) -> None:
    """Publish one run message to ``<pipeline>.runs`` and wait for the broker's ack (acks=all)
    through the process' shared producer; a broker that goes away meanwhile is waited for up
    to ``connect_timeout`` s, and the message sent again with a new producer (a run submitted
    twice is still executed once: the steps' markers make the second a skip). The message
    carries the run's trace (``traceparent``): ``trace``, the root span of a run followed here
    (``run --kafka``), or else one started here (``jup2kub submit``), when the environment
    turns traces on. Safe to call from several threads at once."""
    submit_runs(bootstrap, pipeline, [(run_id, parameters)], timeout, connect_timeout, trace=trace)


def submit_runs(
    bootstrap: str,
    pipeline: str,
    runs: Sequence[tuple[str, Mapping[str, Any]]],
    timeout: float = 30,
    connect_timeout: float = CONNECT_TIMEOUT,
    *,
    trace: Span | None = None,
) -> None:
    """Publish the run messages ``runs`` (run id, parameters) all at once, then wait for each
    one's ack: one producer, its batches full, and every run acknowledged before this returns
    (as ``submit_run``; ``trace``: the root span of every run, else one each)."""
    traces = tracer()
    roots = [
        trace or traces.span(run_span_name(pipeline), {PIPELINE: pipeline, RUN_ID: run_id})
        for run_id, _ in runs
    ]
    records = [
        _Record(run_id, messages.encode(messages.run_message(run_id, dict(params))), root)
        for (run_id, params), root in zip(runs, roots, strict=True)
    ]
    sent = False
    try:
        _send_acked(bootstrap, topics.runs_topic(pipeline), records, timeout, connect_timeout)
        sent = True
    finally:
        if trace is None:
            for root in roots:
                root.end(error=not sent)
            traces.flush()


@dataclass(frozen=True)
class _Record:
    """A run message to send: keyed by its run id (the runtime's effectively-once key)."""

    run_id: str
    value: bytes
    trace: Span


def _send_acked(
    bootstrap: str, topic: str, records: list[_Record], timeout: float, connect_timeout: float
) -> None:
    """Send ``records`` through the shared producer until each is acknowledged; a producer
    that fails is replaced (what it had not had acknowledged is sent again) until
    ``connect_timeout`` s have passed, then a KafkaUnavailableError says what to do."""
    key = (bootstrap, timeout)
    deadline = time.monotonic() + connect_timeout
    pending = records
    while True:
        producer = _connect(
            bootstrap,
            lambda: PRODUCERS.get(key, lambda: _producer(bootstrap, timeout)),
            deadline - time.monotonic(),
            connect_timeout,
        )
        pending, error = _send_all(producer, topic, pending, timeout)
        if error is None:
            return
        PRODUCERS.discard(key, producer)
        if time.monotonic() >= deadline:
            what = f"run {pending[0].run_id!r}" if len(records) == 1 else f"{len(pending)} runs"
            raise KafkaUnavailableError(
                f"submitting {what} to Kafka at {bootstrap} failed ({error}; "
                f"waited {connect_timeout:.0f} s)",
                hint="check that the pipeline's Kafka runs; wait longer with --kafka-timeout",
            ) from error
        time.sleep(1.0)


def _send_all(
    producer: Any, topic: str, records: list[_Record], timeout: float
) -> tuple[list[_Record], Exception | None]:
    """Send every record, then wait for each ack: the records not acknowledged, and the
    last error (None: all were)."""
    from kafka.errors import KafkaError  # kafka-python: loaded by the commands that talk to Kafka

    futures: list[tuple[_Record, Any]] = []
    failed: list[_Record] = []
    error: Exception | None = None
    for i, record in enumerate(records):
        headers = record.trace.headers() or None
        try:
            future = producer.send(
                topic, key=record.run_id.encode(), value=record.value, headers=headers
            )
        except (KafkaError, AssertionError) as exc:
            if isinstance(exc, AssertionError) and not getattr(producer, "_closed", False):
                raise
            # closed meanwhile: another thread's send failed on it and discarded it
            failed, error = list(records[i:]), exc
            break
        futures.append((record, future))
    for record, future in futures:
        try:
            future.get(timeout=timeout)
        except KafkaError as exc:
            failed.append(record)
            error = exc
    return failed, error


def _close(producer: Any) -> None:
    """Close ``producer`` even when the broker is gone with a message unacknowledged.

    kafka-python's ``close`` flushes first and raises when that times out, leaving the producer
    open, so that its ``__del__`` raises again at exit ("Exception ignored in ..."). Then the
    pending batches are aborted (its sender's ``force_close``) and the close completes."""
    from kafka.errors import KafkaError  # kafka-python: loaded by the commands that talk to Kafka

    try:
        producer.close(timeout=5)
    except KafkaError:
        sender = getattr(producer, "_sender", None)
        if sender is not None:
            sender.force_close()
        with contextlib.suppress(KafkaError):
            producer.close(timeout=0)


def _producer(bootstrap: str, timeout: float) -> Any:
    """A producer whose every message is acknowledged by all in-sync replicas (acks=all),
    resent on transient errors; made once per process (``PRODUCERS``)."""
    from kafka import KafkaProducer  # kafka-python: loaded on use

    return KafkaProducer(
        bootstrap_servers=_servers(bootstrap),
        acks="all",
        retries=5,
        request_timeout_ms=int(timeout * 1000),
        linger_ms=LINGER_MS,
    )


def _abandon(producer: Any) -> None:
    """In a forked child, the parent's producer is marked closed without closing it: kafka-
    python's close (from its finalizer or its own exit hook) returns at once then, instead of
    flushing through a sender thread the child does not have."""
    producer._closed = True


#: the process' producers, shared by every thread that submits (closed at exit)
PRODUCERS = producers.shared(_close, _abandon)


class StatusReader:
    """Reads the pipeline's status topic from the beginning, without a consumer group."""

    def __init__(
        self, bootstrap: str, pipeline: str, connect_timeout: float = CONNECT_TIMEOUT
    ) -> None:
        from kafka import KafkaConsumer, TopicPartition  # kafka-python: loaded on use

        self.topic = topics.status_topic(pipeline)
        self.consumer = _connect(
            bootstrap,
            lambda: KafkaConsumer(
                bootstrap_servers=_servers(bootstrap),
                enable_auto_commit=False,
                consumer_timeout_ms=500,
                auto_offset_reset="earliest",
            ),
            connect_timeout,
        )
        self._partition = TopicPartition
        self.assigned = False
        self.latest: dict[str, dict[str, dict[str, Any]]] = {}  # run -> step -> message

    def _assign(self) -> bool:
        parts = self.consumer.partitions_for_topic(self.topic)
        if not parts:
            return False
        tps = [self._partition(self.topic, p) for p in sorted(parts)]
        self.consumer.assign(tps)
        self.consumer.seek_to_beginning(*tps)
        self.assigned = True
        return True

    def poll(self, seconds: float = 0.5) -> None:
        if not self.assigned and not self._assign():
            time.sleep(seconds)
            return
        batches = self.consumer.poll(timeout_ms=int(seconds * 1000))
        for records in batches.values():
            for record in records:
                try:
                    msg = json.loads(record.value)
                except (ValueError, TypeError):
                    continue
                if not isinstance(msg, dict) or msg.get("type") != "status":
                    continue
                run, step = msg.get("run_id"), msg.get("step")
                if isinstance(run, str) and isinstance(step, str):
                    self.latest.setdefault(run, {})[step] = msg

    def states(self, run_id: str) -> dict[str, dict[str, Any]]:
        return dict(self.latest.get(run_id, {}))

    def close(self) -> None:
        self.consumer.close()


def run_states(
    bootstrap: str,
    pipeline: str,
    run_id: str,
    settle: float = 2.0,
    connect_timeout: float = CONNECT_TIMEOUT,
) -> dict[str, Any]:
    """The latest status message of each step of ``run_id`` (reads the topic for ``settle`` s)."""
    reader = StatusReader(bootstrap, pipeline, connect_timeout)
    try:
        deadline = time.monotonic() + settle
        while time.monotonic() < deadline:
            reader.poll(0.3)
        return reader.states(run_id)
    finally:
        reader.close()


def wait_for_run(
    bootstrap: str,
    pipeline: str,
    run_id: str,
    steps: Iterable[str],
    downstream: Mapping[str, list[str]],
    timeout: float,
    on_change: Any = None,
    check: Callable[[Mapping[str, Mapping[str, Any]]], None] | None = None,
) -> dict[str, dict[str, Any]]:
    """Follow ``run_id`` until every step succeeded, or a step failed for good, or timeout.
    ``check(states)`` runs after every poll while the run goes on; it may raise to give up."""
    wanted = list(steps)
    reader = StatusReader(bootstrap, pipeline)
    try:
        deadline = time.monotonic() + timeout
        seen: dict[str, dict[str, Any]] = {}
        while time.monotonic() < deadline:
            reader.poll(0.3)
            states = reader.states(run_id)
            if states != seen:
                seen = states
                if on_change is not None:
                    on_change(states)
            done = [s for s in wanted if states.get(s, {}).get("state") == StepState.SUCCEEDED]
            failed = [s for s in wanted if states.get(s, {}).get("state") == StepState.FAILED]
            if len(done) == len(wanted):
                return states
            if failed and _settled(wanted, states, failed, downstream):
                return states
            if check is not None:
                check(states)
        return reader.states(run_id)
    finally:
        reader.close()


def _settled(
    steps: list[str],
    states: Mapping[str, Mapping[str, Any]],
    failed: list[str],
    downstream: Mapping[str, list[str]],
) -> bool:
    """True when nothing can change any more: every step not blocked by a failure is final
    (a step reported blocked announces none of its downstream steps either)."""
    blocked: set[str] = set()
    todo = list(failed) + [s for s in steps if states.get(s, {}).get("state") == StepState.BLOCKED]
    while todo:
        for d in downstream.get(todo.pop(), []):
            if d not in blocked:
                blocked.add(d)
                todo.append(d)
    return all(s in blocked or states.get(s, {}).get("state") in FINAL for s in steps)
