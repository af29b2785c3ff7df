"""The OpenTelemetry traces of a run: span names, attribute keys, the message header, and the
standard environment that turns them on.

One trace per run: a root span ``run <pipeline>`` (started by ``jup2kub submit``, ``jup2kub run``
and ``run --kafka``), a span per step execution (per attempt: a retried one has two), the
child of the span of the upstream step whose message started it (W3C ``traceparent`` in the
Kafka message headers), and a span per cell inside it. A message that executes nothing (a
fan-in waiting for its other upstream steps, a step found complete) makes no span; the
re-announcement of a complete step carries the trace context of the message it answers.
Spans carry names, run ids, attempts, outcomes and cell indexes only: never a value, a
parameter, a secret, a cell's source or an error's message.

Traces are off unless the standard environment turns them on (``OTEL_TRACES_EXPORTER=otlp``,
OTLP over HTTP/protobuf to ``OTEL_EXPORTER_OTLP_ENDPOINT``); off, nothing of OpenTelemetry is
imported. These names are a contract for whoever reads the traces, like the metrics' names.
"""

from __future__ import annotations

import os
from collections.abc import Mapping

#: the standard variables (OpenTelemetry's SDK configuration) the chart and the runners set
TRACES_EXPORTER_ENV = "OTEL_TRACES_EXPORTER"
ENDPOINT_ENV = "OTEL_EXPORTER_OTLP_ENDPOINT"
SERVICE_NAME_ENV = "OTEL_SERVICE_NAME"
SDK_DISABLED_ENV = "OTEL_SDK_DISABLED"
#: the one exporter supported: OTLP (over HTTP/protobuf)
OTLP = "otlp"

#: the instrumentation scope of every span
TRACER_NAME = "jup2kub"
#: the service name when OTEL_SERVICE_NAME is unset (the chart sets it to the step's name)
DEFAULT_SERVICE_NAME = "jup2kub"

#: the W3C Trace Context header carried by run and step-done messages (the propagator's own
#: field names; kafka-python's headers are (str, bytes) pairs)
TRACEPARENT_HEADER = "traceparent"
TRACESTATE_HEADER = "tracestate"

#: attribute keys
PIPELINE = "j2k.pipeline"
STEP = "j2k.step"
RUN_ID = "j2k.run_id"
ATTEMPT = "j2k.attempt"
#: the step execution's outcome: ``contract.metrics.ExecutionOutcome``'s values
OUTCOME = "j2k.outcome"
#: the step's result was the step cache's (not executed)
REUSED = "j2k.reused"
#: a cell span's cell: its index in the notebook
CELL_INDEX = "j2k.cell.index"
#: a failed cell's exception type (its class name; never its message)
ERROR_TYPE = "j2k.error.type"

#: every attribute, what it says, on which spans (the chart's README lists them)
ATTRIBUTES = (
    (PIPELINE, "the pipeline's name", "run, step"),
    (RUN_ID, "the run id", "run, step"),
    (STEP, "the step's name", "step"),
    (ATTEMPT, "the execution's attempt (1, then 2 for a retry...)", "step"),
    (OUTCOME, "what it came to: the metrics' `outcome` values", "run, step"),
    (REUSED, "true when the step cache's result was loaded instead", "step"),
    (CELL_INDEX, "the cell's index in the notebook", "cell"),
    (ERROR_TYPE, "the exception's class name, on the cell that raised", "cell"),
)


def run_span_name(pipeline: str) -> str:
    """The root span of a run."""
    return f"run {pipeline}"


def step_span_name(step: str) -> str:
    """A step execution's span."""
    return f"step {step}"


def cell_span_name(index: int) -> str:
    """A cell's span inside its step's."""
    return f"cell {index}"


def enabled(environ: Mapping[str, str] | None = None) -> bool:
    """Whether the standard environment turns traces on: OTEL_TRACES_EXPORTER names ``otlp``
    (unset means off here, unlike the SDK's default) and OTEL_SDK_DISABLED is not true."""
    env = os.environ if environ is None else environ
    if env.get(SDK_DISABLED_ENV, "").strip().lower() == "true":
        return False
    exporters = {e.strip().lower() for e in env.get(TRACES_EXPORTER_ENV, "").split(",")}
    return OTLP in exporters
