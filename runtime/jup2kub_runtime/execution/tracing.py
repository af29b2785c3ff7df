"""Spans of a run, or nothing: ``tracer()`` is OpenTelemetry's SDK (``otel``) when the standard
environment turns traces on (``contract.tracing.enabled``), else a no-op that imports nothing.

Who makes which span (the names and attributes: ``contract.tracing``):

- the run's root span: ``jup2kub submit``, ``jup2kub run`` and ``run --kafka`` (the generator);
- a step execution's span: the Kafka runtime (``serving.loop``), a child of the span whose
  ``traceparent`` its message carries, or the local runner once the step's process ended;
- the cells' spans: made after the step from the cells' start times and durations (what the
  step's outputs record), so that the cells run exactly as they do untraced.

A span carries names, ids, attempts, outcomes and cell indexes: nothing of a value.
"""

from __future__ import annotations

import os
import time
from collections.abc import Iterable, Mapping, Sequence
from typing import Protocol

from ..contract.tracing import enabled

#: Kafka message headers as kafka-python has them
Headers = list[tuple[str, bytes]]
#: a cell as a span shows it: its index, its start (epoch seconds; None: unknown), its seconds
CellTiming = tuple[int, float | None, float]
Attributes = Mapping[str, str | int | bool]


class Span(Protocol):
    """One span, started; ``end`` ends it (once)."""

    def headers(self) -> Headers:
        """This span as the parent of what a message starts (``traceparent``); [] when off."""

    def cells(
        self, cells: Iterable[CellTiming], failed: int | None = None, error_type: str = ""
    ) -> None:
        """A child span per cell; the one at index ``failed`` is an error (``error_type``)."""

    def end(
        self,
        outcome: str | None = None,
        *,
        attempt: int | None = None,
        reused: bool = False,
        error: bool = False,
        at: float | None = None,
    ) -> None:
        """End with ``outcome`` (``j2k.outcome``), ``attempt`` and ``reused`` if known, an
        error status if ``error``; ``at``: the end time (epoch s), else now."""


class Tracer(Protocol):
    #: whether spans are exported (False: every call does nothing)
    on: bool

    def span(
        self,
        name: str,
        attributes: Attributes,
        *,
        parent: Headers | Span | None = None,
        start: float | None = None,
        links: Sequence[Span] = (),
    ) -> Span:
        """Start a span, the child of ``parent`` (a message's headers or a span; None: a new
        trace); ``start``: its start time (epoch s), else now; ``links``: other parents."""

    def flush(self) -> None:
        """Export what ended (bounded wait): before a short-lived process exits."""


class _NoSpan:
    def headers(self) -> Headers:
        return []

    def cells(
        self, cells: Iterable[CellTiming], failed: int | None = None, error_type: str = ""
    ) -> None:
        pass

    def end(
        self,
        outcome: str | None = None,
        *,
        attempt: int | None = None,
        reused: bool = False,
        error: bool = False,
        at: float | None = None,
    ) -> None:
        pass


NO_SPAN = _NoSpan()


class _NoTracer:
    on = False

    def span(
        self,
        name: str,
        attributes: Attributes,
        *,
        parent: Headers | Span | None = None,
        start: float | None = None,
        links: Sequence[Span] = (),
    ) -> Span:
        return NO_SPAN

    def flush(self) -> None:
        pass


NO_TRACER = _NoTracer()


class Deferred:
    """A span that starts now but is made only when ``span()`` is first called: a message
    that executes nothing (it waits for other upstream steps, or finds the step complete)
    makes none."""

    def __init__(
        self, tracer: Tracer, name: str, attributes: Attributes, parent: Headers | Span | None
    ) -> None:
        self.tracer, self.name, self.attributes, self.parent = tracer, name, attributes, parent
        self.began = time.time() if tracer.on else 0.0
        self._span: Span | None = None

    @property
    def made(self) -> bool:
        return self._span is not None

    def span(self) -> Span:
        if self._span is None:
            self._span = self.tracer.span(
                self.name, self.attributes, parent=self.parent, start=self.began
            )
        return self._span


_tracers: dict[tuple[str, ...], Tracer] = {}


def tracer(environ: Mapping[str, str] | None = None) -> Tracer:
    """The process' tracer for this environment (one exporter per configuration)."""
    env = os.environ if environ is None else environ
    if not enabled(env):
        return NO_TRACER
    key = tuple(f"{k}={v}" for k, v in sorted(env.items()) if k.startswith("OTEL_"))
    found = _tracers.get(key)
    if found is None:
        # OpenTelemetry's SDK and exporter: imported only when traces are on (~150 ms)
        from .otel import OtelTracer

        found = _tracers[key] = OtelTracer(env)
    return found
