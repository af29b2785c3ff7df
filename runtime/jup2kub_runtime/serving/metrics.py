"""The step process's Prometheus metrics, kept and exposed by the official client.

Each process has a ``CollectorRegistry`` of its own, not the client's global one: a notebook's
cells run in this process and may use prometheus_client themselves, and their metrics must not
mix with the step's. The families (names, help, labels, buckets) are ``contract.metrics``'s;
every one is bound here to this process's ``pipeline`` and ``step`` once, so a caller names
only what happened.
"""

from __future__ import annotations

from collections.abc import Callable

from prometheus_client import (
    CONTENT_TYPE_LATEST,
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    generate_latest,
)

from ..contract.metrics import (
    BUCKETS,
    BUSY,
    CONSUMER_LAG,
    CONSUMER_LAG_SECONDS,
    EXECUTION_SECONDS,
    EXECUTIONS,
    HANDOFF_SECONDS,
    MESSAGES_CONSUMED,
    MESSAGES_DEAD_LETTERED,
    READY,
    ExecutionOutcome,
    Family,
)


class StepMetrics:
    """The families of one step process, labelled with its pipeline and step."""

    def __init__(self, pipeline: str, step: str) -> None:
        self.registry = CollectorRegistry()
        self._labels = (pipeline, step)
        executions = Counter(
            EXECUTIONS.base, EXECUTIONS.help, EXECUTIONS.labels, registry=self.registry
        )
        # every outcome exported from the start (0): rate() and alerts see a series at once
        self._outcomes = {o: executions.labels(pipeline, step, o.value) for o in ExecutionOutcome}
        self._execution = self._histogram(EXECUTION_SECONDS)
        self._handoff = self._histogram(HANDOFF_SECONDS)
        self._consumed = self._counter(MESSAGES_CONSUMED)
        self._dead_lettered = self._counter(MESSAGES_DEAD_LETTERED)
        self._lag = self._gauge(CONSUMER_LAG)
        self._lag_seconds = self._gauge(CONSUMER_LAG_SECONDS)
        self._busy = self._gauge(BUSY)
        self._ready = self._gauge(READY)

    def _counter(self, family: Family) -> Counter:
        metric = Counter(family.base, family.help, family.labels, registry=self.registry)
        return metric.labels(*self._labels)

    def _gauge(self, family: Family) -> Gauge:
        metric = Gauge(family.name, family.help, family.labels, registry=self.registry)
        return metric.labels(*self._labels)

    def _histogram(self, family: Family) -> Histogram:
        metric = Histogram(
            family.name, family.help, family.labels, registry=self.registry, buckets=BUCKETS
        )
        return metric.labels(*self._labels)

    # ---- writers (the loop and its worker) ---------------------------------------------------
    def count(self, outcome: ExecutionOutcome) -> None:
        self._outcomes[outcome].inc()

    def observe_execution(self, seconds: float) -> None:
        self._execution.observe(seconds)

    def observe_handoff(self, seconds: float) -> None:
        # clocks of two hosts: a message may seem to arrive before it was produced
        self._handoff.observe(max(seconds, 0.0))

    def consumed(self) -> None:
        self._consumed.inc()

    def dead_lettered(self) -> None:
        self._dead_lettered.inc()

    def lag(self, messages: int, seconds: float | None) -> None:
        """``seconds`` None: the oldest message's age is unknown this time, keep the last."""
        self._lag.set(messages)
        if seconds is not None:
            self._lag_seconds.set(seconds)

    def watch(self, busy: Callable[[], bool], ready: Callable[[], bool]) -> None:
        """The busy and ready gauges read their state when scraped, never stale."""
        self._busy.set_function(lambda: float(busy()))
        self._ready.set_function(lambda: float(ready()))

    # ---- reader (HTTP) -----------------------------------------------------------------------
    def exposition(self) -> tuple[bytes, str]:
        """The text format and its content type, as the client renders them."""
        return generate_latest(self.registry), CONTENT_TYPE_LATEST
