"""A small OTLP/HTTP trace receiver for the tests: a stdlib HTTP server on 127.0.0.1 taking
``POST /v1/traces`` (protobuf, as OpenTelemetry's OTLP/HTTP exporter sends it) and decoding each
ExportTraceServiceRequest with ``opentelemetry-proto``. It keeps the raw bodies too, so that a
test can say a string appears nowhere in what was exported."""

from __future__ import annotations

import gzip
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import (
    ExportTraceServiceRequest,
    ExportTraceServiceResponse,
)
from opentelemetry.proto.common.v1.common_pb2 import AnyValue

from jup2kub_runtime.contract.tracing import (
    ENDPOINT_ENV,
    OTLP,
    SERVICE_NAME_ENV,
    TRACES_EXPORTER_ENV,
)

PATH = "/v1/traces"


@dataclass(frozen=True)
class Span:
    """One exported span, ids in hex."""

    trace_id: str
    span_id: str
    parent_id: str  # "" for a root span
    name: str
    service: str
    attributes: dict[str, Any]
    start_ns: int
    end_ns: int
    error: bool
    links: tuple[str, ...] = field(default=())  # the linked spans' ids


def _value(v: AnyValue) -> Any:
    kind = v.WhichOneof("value")
    return None if kind is None else getattr(v, kind)


def decode(body: bytes) -> list[Span]:
    request = ExportTraceServiceRequest()
    request.ParseFromString(body)
    spans = []
    for rs in request.resource_spans:
        resource = {a.key: _value(a.value) for a in rs.resource.attributes}
        for ss in rs.scope_spans:
            for s in ss.spans:
                spans.append(
                    Span(
                        trace_id=s.trace_id.hex(),
                        span_id=s.span_id.hex(),
                        parent_id=s.parent_span_id.hex(),
                        name=s.name,
                        service=str(resource.get("service.name", "")),
                        attributes={a.key: _value(a.value) for a in s.attributes},
                        start_ns=s.start_time_unix_nano,
                        end_ns=s.end_time_unix_nano,
                        error=s.status.code == s.status.STATUS_CODE_ERROR,
                        links=tuple(link.span_id.hex() for link in s.links),
                    )
                )
    return spans


class OtlpReceiver:
    """``with OtlpReceiver() as rx:`` serves until the block ends; ``rx.env()`` is the
    environment that sends a process' spans here."""

    def __init__(self) -> None:
        self.bodies: list[bytes] = []
        self._lock = threading.Lock()
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers.get("Content-Length", 0)))
                if self.headers.get("Content-Encoding") == "gzip":
                    body = gzip.decompress(body)
                if self.path != PATH:
                    self.send_error(404)
                    return
                decode(body)  # a body that is not a request fails here, loudly
                with receiver._lock:
                    receiver.bodies.append(body)
                reply = ExportTraceServiceResponse().SerializeToString()
                self.send_response(200)
                self.send_header("Content-Type", "application/x-protobuf")
                self.send_header("Content-Length", str(len(reply)))
                self.end_headers()
                self.wfile.write(reply)

            def log_message(self, format: str, *args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    def __enter__(self) -> OtlpReceiver:
        self.thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.server.shutdown()
        self.server.server_close()

    @property
    def endpoint(self) -> str:
        host, port = self.server.server_address[:2]
        return f"http://{host!s}:{port}"

    def env(self, service: str | None = None) -> dict[str, str]:
        """Traces on, to this receiver, exported every 100 ms (not the SDK's 5 s)."""
        env = {
            TRACES_EXPORTER_ENV: OTLP,
            ENDPOINT_ENV: self.endpoint,
            "OTEL_BSP_SCHEDULE_DELAY": "100",
        }
        if service is not None:
            env[SERVICE_NAME_ENV] = service
        return env

    def raw(self) -> bytes:
        with self._lock:
            return b"".join(self.bodies)

    def spans(self) -> list[Span]:
        with self._lock:
            bodies = list(self.bodies)
        return [s for body in bodies for s in decode(body)]

    def wait(
        self, holds: Callable[[list[Span]], bool], timeout: float = 60, what: str = ""
    ) -> list[Span]:
        """The spans received, once ``holds`` is true of them."""
        deadline = time.monotonic() + timeout
        while True:
            spans = self.spans()
            if holds(spans):
                return spans
            if time.monotonic() > deadline:
                raise AssertionError(f"spans {what}: not received in {timeout} s; got {spans}")
            time.sleep(0.05)


def named(spans: list[Span], prefix: str) -> Iterator[Span]:
    return (s for s in spans if s.name.startswith(prefix))


def traceparent_ids(header: bytes) -> tuple[str, str]:
    """(trace id, parent span id) of a W3C ``traceparent`` value (version 00; the flags,
    sampled and random trace id, are the SDK's business)."""
    version, trace_id, span_id, flags = header.decode("ascii").split("-")
    assert version == "00" and len(trace_id) == 32 and len(span_id) == 16 and len(flags) == 2
    return trace_id, span_id
