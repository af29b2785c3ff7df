"""Traces of ``jup2kub run`` (embedded, and ``--kafka`` on a real broker) and ``jup2kub submit``,
received by a real OTLP/HTTP receiver (``tests.support.otlp``): one trace per run, its root span
``run <pipeline>``, one span per step whose parent is the span of an upstream step (the DAG's
edges; a fan-in's other upstream steps linked), the cells' spans under their step's, and no
parameter value anywhere. Off, the generator imports nothing of OpenTelemetry."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from kafka import KafkaConsumer, TopicPartition

from jup2kub.api import inspect_notebook
from jup2kub.plan import plan_pipeline
from jup2kub_runtime.contract import tracing as names
from jup2kub_runtime.contract.topics import runs_topic
from tests.support.cli_runner import jup2kub
from tests.support.otlp import OtlpReceiver, Span, traceparent_ids

MakeNb = Callable[..., Path]

DIAMOND = [
    # label: an ordinary parameter; token: a secret one (from the environment, TOKEN)
    ("code", "n = 3\nlabel = 'none'\ntoken = 'none'", ["parameters"]),
    "#| step: load\nvalues = list(range(n))",
    "#| step: left\nleft = sum(values)",
    "#| step: right\nright = max(values)\nright += 1",
    "#| step: join\ntotal = left + right\nprint(total, len(label), len(token))",
]


@pytest.mark.parametrize("mode", ["embedded", "kafka"])
def test_a_run_is_one_trace_whose_step_spans_follow_the_dag(
    tmp_path: Path, make_notebook: MakeNb, mode: str, request: pytest.FixtureRequest
) -> None:
    nb = make_notebook(DIAMOND)
    pipeline = inspect_notebook(nb)
    plan = plan_pipeline(pipeline)
    after = {s.name: list(s.after) for s in plan.steps}
    assert after["join"] and len(after["join"]) == 2, after  # a fan-in: its links are tested
    secret, secret_env = f"s3cr3t-{uuid.uuid4().hex}", f"s3cr3t-{uuid.uuid4().hex}"
    kafka = ["--kafka", request.getfixturevalue("kafka")] if mode == "kafka" else []
    with OtlpReceiver() as rx:
        env = {**os.environ, **rx.env(), "TOKEN": secret_env}
        args = ["run", nb, "-p", "label", secret, "--workdir", tmp_path / "w", *kafka]
        proc = jup2kub(*args, cwd=tmp_path, env=env)
        assert proc.returncode == 0, proc.stderr

        def complete(spans: list[Span]) -> bool:
            return {s.name for s in spans} >= {f"step {n}" for n in after} | {
                names.run_span_name(pipeline.name)
            } and sum(s.name.startswith("cell ") for s in spans) >= len(pipeline.steps)

        spans = rx.wait(complete, what=f"of the {mode} run")
        raw = rx.raw()
    assert len({s.trace_id for s in spans}) == 1  # one trace
    [root] = [s for s in spans if s.name == names.run_span_name(pipeline.name)]
    assert root.parent_id == "" and root.attributes[names.PIPELINE] == pipeline.name
    assert root.attributes[names.OUTCOME] == "succeeded"
    steps: dict[str, Span] = {}
    for s in spans:
        if s.name.startswith("step "):
            assert s.attributes[names.STEP] not in steps, "one span per step"
            steps[s.attributes[names.STEP]] = s
    assert set(steps) == set(after)
    ids = {s.span_id: s for s in spans}
    for name, span in steps.items():
        assert span.attributes[names.RUN_ID] == root.attributes[names.RUN_ID]
        assert span.attributes[names.OUTCOME] == "succeeded"
        assert span.attributes[names.ATTEMPT] == 1
        assert span.service == (name if mode == "kafka" else names.DEFAULT_SERVICE_NAME)
        if not after[name]:
            assert span.parent_id == root.span_id
        else:  # the child of an upstream step's span; a fan-in's other upstream steps linked
            assert ids[span.parent_id].attributes[names.STEP] in after[name]
            if mode == "embedded":
                linked = {ids[link].attributes[names.STEP] for link in span.links}
                assert linked | {ids[span.parent_id].attributes[names.STEP]} == set(after[name])
        cells = [s for s in spans if s.parent_id == span.span_id and s.name.startswith("cell ")]
        assert sorted(c.attributes[names.CELL_INDEX] for c in cells) == sorted(
            pipeline.step(name).cells
        )
        assert all(c.name == f"cell {c.attributes[names.CELL_INDEX]}" for c in cells)
        assert all(span.start_ns <= c.start_ns <= c.end_ns <= span.end_ns for c in cells)
    # no parameter value in any span (the receiver's raw bodies), secret or not
    assert secret.encode() not in raw and secret_env.encode() not in raw


def test_a_failed_step_is_an_error_span_naming_its_failed_cells_exception_type_only(
    tmp_path: Path, make_notebook: MakeNb
) -> None:
    secret = f"s3cr3t-{uuid.uuid4().hex}"
    nb = make_notebook(
        [
            ("code", "label = 'none'", ["parameters"]),
            "#| step: load\nvalues = [1, 2]",
            "#| step: check\ncount = len(values)\nraise KeyError('no ' + label)",
            "#| step: after\nprint(count)",
        ]
    )
    with OtlpReceiver() as rx:
        env = {**os.environ, **rx.env()}
        args = ["run", nb, "-p", "label", secret, "--workdir", tmp_path / "w"]
        proc = jup2kub(*args, cwd=tmp_path, env=env)
        assert proc.returncode == 1, proc.stderr
        spans = rx.wait(lambda s: any(x.name.startswith("run ") for x in s), what="of the run")
        raw = rx.raw()
    by_name = {s.name: s for s in spans}
    assert by_name["step load"].attributes[names.OUTCOME] == "succeeded"
    check = by_name["step check"]
    assert check.attributes[names.OUTCOME] == "failed" and check.error
    [cell] = [s for s in spans if s.parent_id == check.span_id]
    assert cell.error and cell.attributes[names.ERROR_TYPE] == "KeyError"
    assert "step after" not in by_name  # blocked: never executed, no span
    root = next(s for s in spans if s.name.startswith("run "))
    assert root.attributes[names.OUTCOME] == "failed" and root.error
    assert secret.encode() not in raw  # the error's message holds it: not exported


def test_submit_starts_the_trace_in_the_run_messages_headers(
    tmp_path: Path, make_notebook: MakeNb, kafka: str
) -> None:
    nb = make_notebook(DIAMOND)
    pipeline = inspect_notebook(nb)
    secret = f"s3cr3t-{uuid.uuid4().hex}"
    with OtlpReceiver() as rx:
        env = {**os.environ, **rx.env()}
        proc = jup2kub(
            "submit", nb, "--kafka", kafka, "--run-id", "traced-1", "-p", "label", secret,
            cwd=tmp_path, env=env,
        )  # fmt: skip
        assert proc.returncode == 0, proc.stderr
        [root] = rx.wait(lambda s: len(s) >= 1, what="of submit")
        raw = rx.raw()
    assert root.name == names.run_span_name(pipeline.name) and root.parent_id == ""
    assert root.attributes == {names.PIPELINE: pipeline.name, names.RUN_ID: "traced-1"}
    assert secret.encode() not in raw
    consumer = KafkaConsumer(bootstrap_servers=kafka, group_id=None, enable_auto_commit=False)
    try:
        topic = runs_topic(pipeline.name)
        tps = [TopicPartition(topic, p) for p in consumer.partitions_for_topic(topic) or ()]
        consumer.assign(tps)
        consumer.seek_to_beginning(*tps)
        deadline = time.monotonic() + 30
        records: list[Any] = []
        while not records and time.monotonic() < deadline:
            for rs in consumer.poll(timeout_ms=500).values():
                records += [r for r in rs if json.loads(r.value)["run_id"] == "traced-1"]
    finally:
        consumer.close()
    [record] = records  # (the topic may hold other tests' runs of a notebook named alike)
    traceparent = dict(record.headers)[names.TRACEPARENT_HEADER]
    assert traceparent_ids(traceparent) == (root.trace_id, root.span_id)


def test_off_the_generator_imports_nothing_of_opentelemetry(
    tmp_path: Path, make_notebook: MakeNb
) -> None:
    """``jup2kub run`` without OTEL_TRACES_EXPORTER: no OpenTelemetry module is loaded."""
    nb = make_notebook(DIAMOND)
    code = (
        "import sys\nfrom jup2kub.cli import main\n"
        f"sys.argv = ['jup2kub', 'run', {str(nb)!r}, '--workdir', {str(tmp_path / 'w')!r}]\n"
        "try:\n    main()\nexcept SystemExit as exc:\n    assert not exc.code, exc.code\n"
        "loaded = sorted(m for m in sys.modules if m.startswith('opentelemetry'))\n"
        "print('loaded:', loaded, file=sys.stderr)\n"
    )
    env = {k: v for k, v in os.environ.items() if not k.startswith("OTEL_")}
    proc = subprocess.run(
        [sys.executable, "-c", code], env=env, cwd=tmp_path, capture_output=True, text=True
    )
    assert proc.returncode == 0, proc.stderr
    assert "loaded: []" in proc.stderr
    # on, the same command loads the SDK (the check above can fail)
    with OtlpReceiver() as rx:
        proc = subprocess.run(
            [sys.executable, "-c", code.replace("'w'", "'w2'")],
            env={**env, **rx.env()},
            cwd=tmp_path,
            capture_output=True,
            text=True,
        )
    assert proc.returncode == 0, proc.stderr
    assert "'opentelemetry.sdk.trace'" in proc.stderr
