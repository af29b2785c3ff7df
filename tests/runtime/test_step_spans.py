"""Traces of the runtime on a real broker, received by a real OTLP/HTTP receiver: a step's span
is the child of the span its message's ``traceparent`` names, its cells' spans are its
children, its outcome is an attribute, and the message it sends downstream names it as the
parent; no parameter value gets into a span. Off (no OTEL_* environment), the runtime imports
nothing of OpenTelemetry."""

from __future__ import annotations

import json
import subprocess
import sys
import time
import uuid
from pathlib import Path
from typing import Any

from kafka import KafkaConsumer, TopicPartition

from jup2kub_runtime.contract import tracing as names
from jup2kub_runtime.contract.messages import run_message
from jup2kub_runtime.contract.spec import Cell, StepSpec
from jup2kub_runtime.contract.topics import edge_topic
from tests.support.kafka_broker import KafkaBroker
from tests.support.otlp import OtlpReceiver, Span, traceparent_ids
from tests.support.runtime_harness import RUNTIME_DIR, Pipeline, unique


def _traceparent(trace_id: str, span_id: str) -> bytes:
    return f"00-{trace_id}-{span_id}-01".encode()


def _downstream_headers(bootstrap: str, topic: str, run_id: str) -> dict[str, bytes]:
    """The headers of ``run_id``'s step-done message on ``topic``."""
    consumer = KafkaConsumer(bootstrap_servers=bootstrap, group_id=None, enable_auto_commit=False)
    try:
        tps = [TopicPartition(topic, p) for p in consumer.partitions_for_topic(topic) or ()]
        consumer.assign(tps)
        consumer.seek_to_beginning(*tps)
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            for records in consumer.poll(timeout_ms=500).values():
                for r in records:
                    if json.loads(r.value)["run_id"] == run_id:
                        return dict(r.headers or [])
        raise AssertionError(f"no step-done message of {run_id} on {topic}")
    finally:
        consumer.close()


def test_step_and_cell_spans_follow_the_messages_trace_context(
    broker: KafkaBroker, tmp_path: Path
) -> None:
    name = unique("trc")
    secret = f"s3cr3t-{uuid.uuid4().hex}"
    spec = StepSpec(
        pipeline=name,
        step="first",
        parameters_source="token = 'none'\nn = 0\n",
        cells=[
            Cell(index=1, source="x = n + 1"),
            # fails for n == 13, with the secret in the error's message
            Cell(index=2, source="if n == 13:\n    raise ValueError('bad ' + token)\ny = 2 * x"),
        ],
        outputs=["y"],
        downstream=["second"],
    )
    runs = {"r-ok": 1, "r-bad": 13}
    traces = {run: uuid.uuid4().hex for run in runs}
    parents = {run: uuid.uuid4().hex[:16] for run in runs}
    with OtlpReceiver() as rx:
        env = {**rx.env("first"), "J2K_MAX_RETRIES": "1"}  # r-bad: retried, then failed
        p = Pipeline(tmp_path, broker.bootstrap, [spec], extra_env=env).start()
        try:
            p.wait_ready()
            for run, n in runs.items():
                p.send_raw(
                    json.dumps(run_message(run, {"n": n, "token": secret})).encode(),
                    key=run,
                    headers=[(names.TRACEPARENT_HEADER, _traceparent(traces[run], parents[run]))],
                )

            def complete(spans: list[Span]) -> bool:
                steps = [s for s in spans if s.name == "step first"]
                return len(steps) == 3 and sum(s.name.startswith("cell ") for s in spans) == 6

            spans = rx.wait(complete, what="of both runs")
            downstream = _downstream_headers(
                broker.bootstrap, edge_topic(name, "first", "second"), "r-ok"
            )
        finally:
            p.stop()
    steps = {
        (s.attributes[names.RUN_ID], s.attributes[names.ATTEMPT]): s
        for s in spans
        if s.name == "step first"
    }
    assert set(steps) == {("r-ok", 1), ("r-bad", 1), ("r-bad", 2)}  # a span per attempt
    for (run, _), step in steps.items():
        # the child of the span the message named, in its trace
        assert (step.trace_id, step.parent_id) == (traces[run], parents[run])
        assert step.service == "first"
        assert step.attributes[names.PIPELINE] == name
        assert step.attributes[names.STEP] == "first"
        cells = sorted((s for s in spans if s.parent_id == step.span_id), key=lambda s: s.start_ns)
        assert [c.name for c in cells] == ["cell 1", "cell 2"]
        assert [c.attributes[names.CELL_INDEX] for c in cells] == [1, 2]
        assert all(c.trace_id == traces[run] for c in cells)
        assert all(step.start_ns <= c.start_ns <= c.end_ns <= step.end_ns for c in cells)
    ok, retried, bad = steps["r-ok", 1], steps["r-bad", 1], steps["r-bad", 2]
    assert ok.attributes[names.OUTCOME] == "succeeded" and not ok.error
    assert retried.attributes[names.OUTCOME] == "retried" and retried.error
    assert bad.attributes[names.OUTCOME] == "failed" and bad.error
    assert retried.end_ns <= bad.start_ns
    for failed in (retried, bad):
        bad_cells = {s.name: s for s in spans if s.parent_id == failed.span_id}
        assert not bad_cells["cell 1"].error
        assert bad_cells["cell 2"].error
        assert bad_cells["cell 2"].attributes[names.ERROR_TYPE] == "ValueError"
    # the downstream message names this step's span as its parent
    assert traceparent_ids(downstream[names.TRACEPARENT_HEADER]) == (ok.trace_id, ok.span_id)
    # no value: neither the parameter (also in the error's message) nor anything else
    assert secret.encode() not in rx.raw()
    assert all(
        set(s.attributes)
        <= {
            names.PIPELINE,
            names.STEP,
            names.RUN_ID,
            names.ATTEMPT,
            names.OUTCOME,
            names.CELL_INDEX,
            names.ERROR_TYPE,
        }
        for s in spans
    )


def test_off_the_runtime_imports_nothing_of_opentelemetry(tmp_path: Path) -> None:
    """Without OTEL_TRACES_EXPORTER=otlp: the loop, its tracer and a step's run, cell spans
    asked for, import no OpenTelemetry module (the start-up pays nothing)."""
    code = """
import sys
from jup2kub_runtime.serving import loop
from jup2kub_runtime.execution.tracing import tracer
t = tracer()
parent = [("traceparent", b"00-" + b"1" * 32 + b"-" + b"2" * 16 + b"-01")]
span = t.span("step s", {"j2k.step": "s"}, parent=parent)
span.cells([(1, 0.0, 1.0)])
span.end("succeeded", attempt=1)
t.flush()
print(t.on, sorted(m for m in sys.modules if m.startswith("opentelemetry")))
"""
    env: dict[str, Any] = {"PYTHONPATH": str(RUNTIME_DIR), "PATH": "/usr/bin:/bin"}
    out = subprocess.run(
        [sys.executable, "-c", code], env=env, capture_output=True, text=True, check=True
    ).stdout.split(maxsplit=1)
    assert [o.strip() for o in out] == ["False", "[]"]
    # and on, the same imports do load the SDK (the check above can fail)
    on = {**env, "OTEL_TRACES_EXPORTER": "otlp"}
    probe = (
        "import sys\nfrom jup2kub_runtime.execution.tracing import tracer\n"
        "print(tracer().on, 'opentelemetry.sdk.trace' in sys.modules)"
    )
    on_out = subprocess.run(
        [sys.executable, "-c", probe], env=on, capture_output=True, text=True, check=True
    ).stdout.split()
    assert on_out == ["True", "True"]
