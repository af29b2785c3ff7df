"""A deployed pipeline on this machine: one ``python -m jup2kub_runtime`` per step on a real
broker, started as the chart starts them (shared by the submit/status tests)."""

from __future__ import annotations

import subprocess
import sys
import time
from pathlib import Path
from typing import Any

from jup2kub.plan import PipelinePlan
from jup2kub.run.kafka import free_port, ready, runtime_env

Runtimes = list[tuple[subprocess.Popen[bytes], int, Any]]


def start_runtimes(plan: PipelinePlan, kafka: str, tmp_path: Path) -> Runtimes:
    """One runtime per step, as the chart starts them, and wait until all are ready."""
    state = tmp_path / "state"
    bundles = plan.write_bundles(tmp_path / "bundles")
    procs: Runtimes = []
    for step in plan.steps:
        port = free_port()
        env = runtime_env(plan, step.name, kafka, state, bundles[step.name], port)
        log = (tmp_path / f"{step.name}.log").open("wb")
        proc = subprocess.Popen(
            [sys.executable, "-m", "jup2kub_runtime"], env=env, stdout=log, stderr=subprocess.STDOUT
        )
        procs.append((proc, port, log))
    deadline = time.monotonic() + 90
    while not all(ready(port) for _, port, _ in procs):
        assert time.monotonic() < deadline, "runtimes did not become ready"
        time.sleep(0.3)
    return procs


def stop_runtimes(procs: Runtimes) -> None:
    for proc, _, _log in procs:
        proc.terminate()
    for proc, _, log in procs:
        proc.wait(timeout=60)
        log.close()
