"""``/metrics`` after real runs on a real broker, read through prometheus_client's own parser:
each outcome counted where the runtime decides it, every execution timed, the consumer lag in
messages and in seconds seen while behind and back to 0 once caught up."""

from __future__ import annotations

import time
import urllib.request
from collections.abc import Callable
from pathlib import Path

from prometheus_client import REGISTRY

from jup2kub_runtime.contract.errors import ErrorRecord
from jup2kub_runtime.contract.metrics import FAMILIES, ExecutionOutcome
from jup2kub_runtime.contract.spec import Cell, StepSpec
from jup2kub_runtime.serving.metrics import StepMetrics
from jup2kub_runtime.serving.outcomes import (
    Blocked,
    DeadLetter,
    Retry,
    Skipped,
    Succeeded,
    Waiting,
    counted_as,
    executed_seconds,
)
from tests.support.kafka_broker import KafkaBroker
from tests.support.prometheus import families, value
from tests.support.runtime_harness import Pipeline, StepProcess, effect_cell, unique

EXECUTIONS = "j2k_step_executions_total"
#: every fifth seed raises: with one retry, each such run executes twice, then fails
RUNS = {f"m{i:02d}": i for i in range(1, 16)}
BAD = {r for r, s in RUNS.items() if s % 5 == 0}
GOOD = set(RUNS) - BAD


def scrape(proc: StepProcess) -> str:
    code, text = proc.get("/metrics")
    assert code == 200 and isinstance(text, str), text
    return text


def wait_for(proc: StepProcess, holds: Callable[[str], bool], timeout: float = 60) -> str:
    """The first scrape for which ``holds`` is true."""
    deadline = time.monotonic() + timeout
    while True:
        text = scrape(proc)
        if holds(text):
            return text
        assert time.monotonic() < deadline, f"not reached in {timeout} s:\n{text}"
        time.sleep(0.25)


def test_metrics_count_time_and_measure_lag_on_a_real_broker(
    broker: KafkaBroker, tmp_path: Path
) -> None:
    name = unique("met")
    spec = StepSpec(
        pipeline=name,
        step="only",
        parameters_source="seed = 0\nRUN_ID = 'none'\n",
        cells=[
            Cell(index=1, source="import time\nv = seed"),
            effect_cell(
                2,
                "only",
                tmp_path,
                "time.sleep(0.4)\nif seed % 5 == 0:\n    raise ValueError(f'bad seed {seed}')",
            ),
        ],
        outputs=["v"],
    )
    p = Pipeline(tmp_path, broker.bootstrap, [spec], extra_env={"J2K_MAX_RETRIES": "1"}).start()
    try:
        p.wait_ready()
        proc = p.proc("only")
        labels = {"pipeline": name, "step": "only"}

        def count(text: str, outcome: str) -> float:
            return value(text, EXECUTIONS, **labels, outcome=outcome)

        before = scrape(proc)
        assert all(count(before, o.value) == 0 for o in ExecutionOutcome)  # exported from start
        assert value(before, "j2k_ready", **labels) == 1
        assert value(before, "j2k_busy", **labels) == 0
        for run_id, seed in RUNS.items():
            p.submit(run_id, seed=seed, RUN_ID=run_id)
        # about 8 s of work: the lag, measured every 5 s, is measured meanwhile at least once
        lag, lag_seconds, busy = [], [], []
        deadline = time.monotonic() + 120
        while not _done(p):
            assert time.monotonic() < deadline, proc.log_text()[-3000:]
            text = scrape(proc)
            lag.append(value(text, "j2k_consumer_lag", **labels))
            lag_seconds.append(value(text, "j2k_consumer_lag_seconds", **labels))
            busy.append(value(text, "j2k_busy", **labels))
            time.sleep(0.2)
        assert max(lag) >= 1 and max(lag_seconds) > 0, (lag, lag_seconds)
        assert max(busy) == 1
        text = wait_for(proc, lambda t: count(t, "failed") == len(BAD))
        text = wait_for(
            proc,
            lambda t: (
                value(t, "j2k_consumer_lag", **labels) == 0
                and value(t, "j2k_consumer_lag_seconds", **labels) == 0
            ),
            timeout=30,
        )
        assert count(text, "succeeded") == len(GOOD)
        assert count(text, "retried") == len(BAD)
        assert count(text, "dead_lettered") == count(text, "skipped") == 0
        executions = len(GOOD) + 2 * len(BAD)  # the bad ones: a retried and a failed execution
        histogram = "j2k_step_execution_seconds"
        assert value(text, f"{histogram}_count", **labels) == executions
        assert value(text, f"{histogram}_bucket", **labels, le="+Inf") == executions
        assert value(text, f"{histogram}_sum", **labels) >= 0.4 * executions  # the sleeps
        assert value(text, "j2k_handoff_latency_seconds_count", **labels) == len(RUNS)
        assert value(text, "j2k_messages_consumed_total", **labels) == len(RUNS)
        assert value(text, "j2k_messages_dead_lettered_total", **labels) == len(BAD)
        assert value(text, "j2k_busy", **labels) == 0

        # a redelivered run is skipped; a message no step can run is dead-lettered unexecuted
        first = min(GOOD)
        p.submit(first, seed=RUNS[first], RUN_ID=first)
        p.send_raw(b"not json")
        text = wait_for(proc, lambda t: count(t, "dead_lettered") == 1 and count(t, "skipped"))
        assert count(text, "skipped") == 1 and count(text, "succeeded") == len(GOOD)
        assert value(text, "j2k_messages_dead_lettered_total", **labels) == len(BAD) + 1
        assert value(text, "j2k_messages_consumed_total", **labels) == len(RUNS) + 2
        assert value(text, f"{histogram}_count", **labels) == executions

        # the exposition: every family of the contract, its type, its labels on every sample
        parsed = families(text)
        for family in FAMILIES:
            kind, samples = parsed[family.base]
            assert kind == family.kind, family.name
            assert samples and all(s.labels.items() >= labels.items() for s in samples)
        assert {f.base for f in FAMILIES} <= set(parsed)
        with urllib.request.urlopen(f"http://127.0.0.1:{proc.port}/metrics", timeout=10) as r:
            assert r.headers["Content-Type"].startswith("text/plain; version=")
    finally:
        p.stop()


def _done(p: Pipeline) -> bool:
    """The good runs complete and the bad ones failed (their attempts used up)."""
    good = all(p.store.is_complete(r, "only") for r in GOOD)
    return good and all(p.store.failed_at(r) is not None for r in BAD)


def test_each_process_has_its_own_registry() -> None:
    """Not the client's global registry: a notebook's own prometheus_client use stays apart,
    and two step objects in one process do not collide."""
    one, two = StepMetrics("p", "a"), StepMetrics("p", "b")
    one.count(ExecutionOutcome.SUCCEEDED)
    one.lag(3, None)  # the age unknown this time: the gauge keeps its last value
    assert (
        one.registry.get_sample_value(
            EXECUTIONS, {"pipeline": "p", "step": "a", "outcome": "succeeded"}
        )
        == 1
    )
    assert one.registry.get_sample_value("j2k_consumer_lag", {"pipeline": "p", "step": "a"}) == 3
    assert (
        two.registry.get_sample_value(
            EXECUTIONS, {"pipeline": "p", "step": "b", "outcome": "succeeded"}
        )
        == 0
    )
    assert REGISTRY.get_sample_value("j2k_ready", {"pipeline": "p", "step": "a"}) is None


def test_each_outcome_counts_under_one_label_and_executions_are_timed() -> None:
    error = ErrorRecord(2, "ValueError", "bad")
    cases = [
        (Succeeded(1, 0.5), ExecutionOutcome.SUCCEEDED, 0.5),
        (Skipped(), ExecutionOutcome.SKIPPED, None),
        (Skipped(meanwhile=True), ExecutionOutcome.SKIPPED, None),
        (Waiting(["a"]), ExecutionOutcome.WAITING, None),
        (Blocked(1), ExecutionOutcome.BLOCKED, None),
        (Retry(1.0, error, 1, 0.25), ExecutionOutcome.RETRIED, 0.25),
        (Retry(0.2), None, None),  # volume trouble or another process: nothing executed
        (DeadLetter("retries exhausted", error, 2, 0.75), ExecutionOutcome.FAILED, 0.75),
        (DeadLetter("retries exhausted", error, 3), ExecutionOutcome.FAILED, None),
    ]
    for outcome, label, seconds in cases:
        assert counted_as(outcome) == label, outcome
        assert executed_seconds(outcome) == seconds, outcome
