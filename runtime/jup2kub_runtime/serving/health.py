"""Liveness, readiness and Prometheus metrics over HTTP (Flask), for the kubelet and scrapers.

The loop thread only updates this object; the HTTP thread only reads it, so a long step (run in
a worker thread) never makes the pod look dead: the loop keeps beating while it polls.

Flask and werkzeug are imported when the first request arrives, not at start: they were 40% of
a step process's imports (0.08-0.12 s of 0.19-0.27 s), all before it could take its first
message, and on ``jup2kub run --kafka`` nothing may ask at all. The port is bound at start.
``/metrics`` is prometheus_client's exposition of the process's own registry (``metrics``);
the client is imported on a thread of its own at start (~30 ms, mostly its own HTTP server
modules), while the main thread waits for the broker.
"""

from __future__ import annotations

import logging
import select
import socket
import threading
import time
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from ..contract.errors import PermanentError

if TYPE_CHECKING:
    from flask import Flask
    from werkzeug.serving import BaseWSGIServer

    from .metrics import StepMetrics


class Health:
    """Shared state between the loop (writer) and the HTTP endpoints (reader)."""

    def __init__(
        self, pipeline: str, step: str, stall_seconds: float, volume_writable: Callable[[], bool]
    ) -> None:
        self.stall_seconds = stall_seconds
        self._volume_writable = volume_writable
        self.last_beat = time.monotonic()
        self.loop_running = False
        #: start-up is waiting for the broker: alive as long as it beats (an outage is no
        #: reason to restart the process; readiness says the broker is missing)
        self.starting = False
        self.connected = False
        #: asked at each readiness request when set: the loop may be blocked on a dead broker
        #: (a commit or an ack wait) and so not refresh ``connected`` for a long time
        self.connected_probe: Callable[[], bool] | None = None
        self.subscribed = False
        #: set once the warm-up (imports, compiling) is over: the first run pays none of it
        self.warmed_up = False
        self.busy_since: float | None = None
        #: the run the worker is handling (set once its message is parsed)
        self.busy_run: str | None = None
        #: (limit, busy run) -> this step's recent runs, newest first; see history.py
        self.runs_provider: Callable[[int, str | None], list[dict[str, Any]]] | None = None
        #: (run id, busy run) -> this step's outputs document for the run; see history.py
        self.outputs_provider: Callable[[str, str | None], dict[str, Any] | None] | None = None
        self.step = step
        self._volume_ok = (0.0, False)
        self._metrics: StepMetrics | None = None
        self._metrics_made = threading.Event()
        threading.Thread(
            target=self._make_metrics, args=(pipeline, step), name="metrics", daemon=True
        ).start()

    def _make_metrics(self, pipeline: str, step: str) -> None:
        try:
            from .metrics import StepMetrics  # deferred: prometheus_client's import, see above

            metrics = StepMetrics(pipeline, step)
            metrics.watch(lambda: self.busy_since is not None, self.ready)
            self._metrics = metrics
        finally:
            self._metrics_made.set()

    @property
    def metrics(self) -> StepMetrics:
        """What the loop counts and measures, served at /metrics (made long before the
        first message arrives: only a very early reader waits for it)."""
        self._metrics_made.wait()
        if self._metrics is None:
            raise RuntimeError("the metrics could not be made (see the metrics thread's error)")
        return self._metrics

    # ---- writers (loop / worker) -------------------------------------------------------------
    def beat(self) -> None:
        self.last_beat = time.monotonic()

    # ---- readers (HTTP) ----------------------------------------------------------------------
    def alive(self) -> bool:
        running = self.loop_running or self.starting
        return running and time.monotonic() - self.last_beat < self.stall_seconds

    def volume_writable(self) -> bool:
        checked, ok = self._volume_ok
        if time.monotonic() - checked > 5.0:
            ok = self._volume_writable()
            self._volume_ok = (time.monotonic(), ok)
        return ok

    def readiness(self) -> dict[str, bool]:
        connected = self.connected_probe() if self.connected_probe else self.connected
        return {
            "kafka_connected": connected,
            "subscribed": self.subscribed,
            "state_writable": self.volume_writable(),
            "warmed_up": self.warmed_up,
        }

    def ready(self) -> bool:
        return all(self.readiness().values())


def create_app(health: Health) -> Flask:
    from flask import Flask, Response, request

    app = Flask("jup2kub_runtime")

    @app.get("/healthz")
    def healthz() -> tuple[dict[str, Any], int]:
        busy = health.busy_since
        body = {
            "alive": health.alive(),
            "seconds_since_beat": round(time.monotonic() - health.last_beat, 3),
            "busy_seconds": round(time.monotonic() - busy, 3) if busy else None,
        }
        return body, 200 if body["alive"] else 503

    @app.get("/readiness")
    def readiness() -> tuple[dict[str, Any], int]:
        checks = health.readiness()
        ready = all(checks.values())
        return {"ready": ready, **checks}, 200 if ready else 503

    @app.get("/runs")
    @app.get("/runs/<limit>")
    def runs(limit: str | None = None) -> tuple[dict[str, Any], int]:
        """``/runs?limit=N`` or ``/runs/N`` (the API server's pod proxy forwards no query)."""
        limit = limit or request.args.get("limit", "20")
        if not limit.isdigit() or int(limit) < 1:
            return {"error": f"limit must be a positive integer, not {limit!r}"}, 400
        if health.runs_provider is None:
            return {"error": "this process keeps no run history"}, 404
        return {
            "step": health.step,
            "busy_run": health.busy_run,
            "runs": health.runs_provider(int(limit), health.busy_run),
        }, 200

    @app.get("/runs/<run_id>/outputs")
    def run_outputs(run_id: str) -> tuple[dict[str, Any], int]:
        if health.outputs_provider is None:
            return {"error": "this process keeps no run history"}, 404
        try:
            body = health.outputs_provider(run_id, health.busy_run)
        except PermanentError as exc:  # not a valid run id
            return {"error": str(exc)}, 400
        if body is None:
            return {"error": f"no run {run_id!r} on this step's volume"}, 404
        return body, 200

    @app.get("/metrics")
    def metrics() -> Response:
        body, content_type = health.metrics.exposition()
        return Response(body, content_type=content_type)

    return app


class HealthServer:
    """Serves the app from a daemon thread (threaded werkzeug server) on a socket bound at
    construction (an unusable address raises OSError there: the entrypoint names J2K_PORT);
    the app is made on the first connection, which waits in the listen backlog meanwhile."""

    def __init__(self, health: Health, host: str, port: int) -> None:
        self.health = health
        self.sock = _listen(host, port)
        self.port = int(self.sock.getsockname()[1])
        self.server: BaseWSGIServer | None = None
        self._lock = threading.Lock()
        self._stopping = False
        self.thread = threading.Thread(target=self._serve, name="health", daemon=True)

    def start(self) -> None:
        self.thread.start()

    def _serve(self) -> None:
        while not select.select([self.sock], [], [], 0.5)[0]:
            if self._stopping:
                return
        try:
            server = self._make_server()
        except Exception:
            logging.getLogger(__name__).exception("the health server could not start")
            return
        with self._lock:
            if self._stopping:
                server.server_close()
                return
            self.server = server
        server.serve_forever()

    def _make_server(self) -> BaseWSGIServer:
        from werkzeug.serving import make_server

        logging.getLogger("werkzeug").setLevel(logging.WARNING)
        host, port = self.sock.getsockname()[:2]
        server = make_server(
            host, port, create_app(self.health), threaded=True, fd=self.sock.fileno()
        )
        self.sock.close()  # the server holds its own duplicate of the listening socket
        return server

    def stop(self) -> None:
        with self._lock:
            self._stopping = True
            server = self.server
        if server is not None:
            server.shutdown()


def _listen(host: str, port: int) -> socket.socket:
    """A listening TCP socket as werkzeug's server makes one (address reuse, backlog 128)."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind((host, port))
        sock.listen(128)
    except BaseException:
        sock.close()
        raise
    return sock
