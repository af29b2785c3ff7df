"""``tracing``'s spans through OpenTelemetry's SDK: a tracer provider of this process' own (the
global one is left to the notebook's code), a batching processor, the OTLP/HTTP exporter (it
reads OTEL_EXPORTER_OTLP_ENDPOINT and the rest of the standard environment itself), and W3C
Trace Context over kafka-python's header lists. Imported only when traces are on.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from typing import Any

from opentelemetry import trace
from opentelemetry.context import Context
from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
from opentelemetry.propagators.textmap import Getter, Setter
from opentelemetry.sdk.resources import SERVICE_NAME, Resource
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import BatchSpanProcessor
from opentelemetry.trace.propagation.tracecontext import TraceContextTextMapPropagator

from ..contract.tracing import (
    ATTEMPT,
    CELL_INDEX,
    DEFAULT_SERVICE_NAME,
    ENDPOINT_ENV,
    ERROR_TYPE,
    OUTCOME,
    REUSED,
    SERVICE_NAME_ENV,
    TRACER_NAME,
    cell_span_name,
)

Headers = list[tuple[str, bytes]]
CellTiming = tuple[int, float | None, float]

#: how long ``flush`` waits for the collector
FLUSH_MILLIS = 10_000
#: the standard variables read here besides ``contract.tracing``'s, and their defaults
TRACES_ENDPOINT_ENV = "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT"
SCHEDULE_DELAY_ENV = "OTEL_BSP_SCHEDULE_DELAY"
DEFAULT_ENDPOINT = "http://localhost:4318"
TRACES_PATH = "/v1/traces"

_PROPAGATOR = TraceContextTextMapPropagator()


class _HeaderGetter(Getter[Headers]):
    """Reads a W3C field from kafka-python's ``[(name, bytes)]`` headers."""

    def get(self, carrier: Headers, key: str) -> list[str] | None:
        found = [
            v.decode("latin-1") for k, v in carrier if k.lower() == key and isinstance(v, bytes)
        ]
        return found or None

    def keys(self, carrier: Headers) -> list[str]:
        return [k for k, _ in carrier]


class _HeaderSetter(Setter[Headers]):
    """Appends a W3C field to kafka-python's ``[(name, bytes)]`` headers."""

    def set(self, carrier: Headers, key: str, value: str) -> None:
        carrier.append((key, value.encode("ascii")))


_GETTER = _HeaderGetter()
_SETTER = _HeaderSetter()


def _ns(seconds: float | None) -> int | None:
    return None if seconds is None else int(seconds * 1e9)


class OtelSpan:
    def __init__(self, tracer: trace.Tracer, span: trace.Span) -> None:
        self._tracer = tracer
        self.span = span

    @property
    def context(self) -> Context:
        return trace.set_span_in_context(self.span)

    def headers(self) -> Headers:
        carrier: Headers = []
        _PROPAGATOR.inject(carrier, context=self.context, setter=_SETTER)
        return carrier

    def cells(
        self, cells: Iterable[CellTiming], failed: int | None = None, error_type: str = ""
    ) -> None:
        parent = self.context
        for index, started, seconds in cells:
            if started is None:
                continue
            span = self._tracer.start_span(
                cell_span_name(index),
                context=parent,
                attributes={CELL_INDEX: index},
                start_time=_ns(started),
            )
            if index == failed:
                span.set_status(trace.StatusCode.ERROR)
                if error_type:
                    span.set_attribute(ERROR_TYPE, error_type)
            span.end(end_time=_ns(started + max(seconds, 0.0)))

    def end(
        self,
        outcome: str | None = None,
        *,
        attempt: int | None = None,
        reused: bool = False,
        error: bool = False,
        at: float | None = None,
    ) -> None:
        if outcome is not None:
            self.span.set_attribute(OUTCOME, outcome)
        if attempt is not None:
            self.span.set_attribute(ATTEMPT, attempt)
        if reused:
            self.span.set_attribute(REUSED, True)
        if error:
            self.span.set_status(trace.StatusCode.ERROR)
        self.span.end(end_time=_ns(at))


class OtelTracer:
    on = True

    def __init__(self, environ: Mapping[str, str]) -> None:
        service = environ.get(SERVICE_NAME_ENV) or DEFAULT_SERVICE_NAME
        self.provider = TracerProvider(resource=Resource.create({SERVICE_NAME: service}))
        # from ``environ`` (the exporter would read the process' environment)
        endpoint = environ.get(TRACES_ENDPOINT_ENV) or (
            environ.get(ENDPOINT_ENV, DEFAULT_ENDPOINT).rstrip("/") + TRACES_PATH
        )
        delay = environ.get(SCHEDULE_DELAY_ENV)
        self.provider.add_span_processor(
            BatchSpanProcessor(
                OTLPSpanExporter(endpoint=endpoint),
                schedule_delay_millis=float(delay) if delay else None,
            )
        )
        self.tracer = self.provider.get_tracer(TRACER_NAME)

    def span(
        self,
        name: str,
        attributes: Mapping[str, str | int | bool],
        *,
        parent: Headers | Any | None = None,
        start: float | None = None,
        links: Sequence[Any] = (),
    ) -> OtelSpan:
        if isinstance(parent, OtelSpan):
            context: Context | None = parent.context
        elif isinstance(parent, list) and parent:
            context = _PROPAGATOR.extract(parent, getter=_GETTER)
        else:
            context = Context()  # a new trace, whatever is current in this thread
        span = self.tracer.start_span(
            name,
            context=context,
            attributes=dict(attributes),
            links=[trace.Link(s.span.get_span_context()) for s in links if isinstance(s, OtelSpan)],
            start_time=_ns(start),
        )
        return OtelSpan(self.tracer, span)

    def flush(self) -> None:
        self.provider.force_flush(FLUSH_MILLIS)
