"""The health server binds its port at start but imports Flask on the first request."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from jup2kub_runtime.contract.config import Config
from jup2kub_runtime.contract.spec import Cell, StepSpec
from jup2kub_runtime.serving.health import Health, HealthServer
from tests.support.runtime_harness import RUNTIME_DIR

SCRIPT = textwrap.dedent(
    """
    import json, sys, urllib.error, urllib.request
    from jup2kub_runtime.serving.health import Health, HealthServer

    health = Health("p", "s", 30.0, lambda: True)
    server = HealthServer(health, "127.0.0.1", 0)
    server.start()
    before = "flask" in sys.modules

    def get(path):
        url = f"http://127.0.0.1:{server.port}{path}"
        try:
            with urllib.request.urlopen(url, timeout=30) as resp:
                return resp.status, json.loads(resp.read())
        except urllib.error.HTTPError as exc:
            return exc.code, json.loads(exc.read())

    first = get("/readiness")
    health.loop_running, health.subscribed, health.connected = True, True, True
    health.warmed_up = True
    print(json.dumps({
        "flask_before": before,
        "flask_after": "flask" in sys.modules,
        "first": first,
        "healthz": get("/healthz"),
        "readiness": get("/readiness"),
    }))
    """
)


def test_flask_is_imported_on_the_first_request_which_is_answered() -> None:
    out = subprocess.run(
        [sys.executable, "-c", SCRIPT], capture_output=True, text=True, timeout=120, check=True
    )
    seen = json.loads(out.stdout)
    assert seen["flask_before"] is False and seen["flask_after"] is True
    assert seen["first"][0] == 503 and seen["first"][1]["ready"] is False
    assert seen["healthz"][0] == 200 and seen["healthz"][1]["alive"] is True
    assert seen["readiness"] == [
        200,
        {
            "ready": True,
            "kafka_connected": True,
            "subscribed": True,
            "state_writable": True,
            "warmed_up": True,
        },
    ]


def test_a_port_in_use_fails_at_start_and_stop_before_any_request_ends_the_thread() -> None:
    health = Health("p", "s", 30.0, lambda: True)
    server = HealthServer(health, "127.0.0.1", 0)
    try:
        with pytest.raises(OSError):
            HealthServer(health, "127.0.0.1", server.port)
        server.start()
        server.stop()
        server.thread.join(timeout=30)
        assert not server.thread.is_alive()
    finally:
        server.sock.close()
    with socket.socket() as s:  # the port is free again
        s.bind(("127.0.0.1", server.port))


def test_a_runtime_whose_port_is_taken_exits_2_naming_it(tmp_path: Path) -> None:
    spec = StepSpec(pipeline="p", step="s", cells=[Cell(1, "a = 1")], outputs=["a"])
    spec.dump(tmp_path / "code")
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        cfg = Config.for_step(
            "p",
            "s",
            [],
            [],
            "127.0.0.1:9",
            tmp_path / "state",
            tmp_path / "code",
            port=taken.getsockname()[1],
            health_host="127.0.0.1",
        )
        env = {k: v for k, v in os.environ.items() if not k.startswith("J2K_")}
        proc = subprocess.run(
            [sys.executable, "-m", "jup2kub_runtime"],
            env={**env, **cfg.to_env(), "PYTHONPATH": str(RUNTIME_DIR)},
            capture_output=True,
            text=True,
            timeout=60,
        )
    assert proc.returncode == 2
    assert "J2K_PORT: cannot listen on 127.0.0.1" in proc.stderr


def test_during_a_broker_outage_the_runtime_is_alive_not_ready_and_quiet(tmp_path: Path) -> None:
    """No broker at start-up: /healthz stays 200 (the kubelet restarts nothing), /readiness
    503, the wait is logged as a growing pause (no line every 60 ms), and SIGTERM ends it."""
    import signal
    import time
    import urllib.error
    import urllib.request

    spec = StepSpec(pipeline="p", step="s", cells=[Cell(1, "a = 1")], outputs=["a"])
    spec.dump(tmp_path / "code")
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        dead = s.getsockname()[1]
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    cfg = Config.for_step(
        "p",
        "s",
        [],
        [],
        f"127.0.0.1:{dead}",
        tmp_path / "state",
        tmp_path / "code",
        port=port,
        health_host="127.0.0.1",
    )
    env = {k: v for k, v in os.environ.items() if not k.startswith("J2K_")}
    proc = subprocess.Popen(
        [sys.executable, "-m", "jup2kub_runtime"],
        env={**env, **cfg.to_env(), "PYTHONPATH": str(RUNTIME_DIR)},
        stderr=subprocess.PIPE,
        text=True,
    )

    def status(path: str) -> int:
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{port}{path}", timeout=10) as r:
                return int(r.status)
        except urllib.error.HTTPError as exc:
            return int(exc.code)
        except OSError:
            return 0

    try:
        seen = []
        deadline = time.monotonic() + 8
        while time.monotonic() < deadline:
            seen.append((status("/healthz"), status("/readiness")))
            time.sleep(0.5)
        assert seen[-6:] == [(200, 503)] * 6, seen
    finally:
        proc.send_signal(signal.SIGTERM)
        _, err = proc.communicate(timeout=60)
    assert proc.returncode == 0, err
    assert f"no Kafka broker answers at 127.0.0.1:{dead} (attempt 3" in err
    assert "Traceback" not in err
    assert len(err.splitlines()) < 40, err  # not a line per connect attempt


def test_repeated_library_lines_are_summarised() -> None:
    import logging

    from jup2kub_runtime.serving.log_summary import RepeatSummary

    summary = RepeatSummary(window=3600)

    def record(name: str, msg: str) -> logging.LogRecord:
        return logging.LogRecord(name, logging.ERROR, __file__, 1, msg, None, None)

    passed = [summary.filter(record("kafka.conn", "Connect attempt failed")) for _ in range(50)]
    assert passed == [True] + [False] * 49
    assert all(summary.filter(record("jup2kub_runtime.serving.loop", "own line")) for _ in range(3))
    summary.window = 0.0  # the window is over: the next line says what was left out
    again = record("kafka.conn", "Connect attempt failed")
    assert summary.filter(again) and "and 49 more like it" in again.getMessage()
