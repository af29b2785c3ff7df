"""``jup2kub run``: the steps on this machine, one process each, without Kafka, Kubernetes or
Docker.

Each step runs in its own process (the runtime's single-execution command), over the same state
store layout as on the cluster, so that values crossing a step boundary really go through
storage; independent steps run in parallel up to ``jobs``. While a core is free and a step's
upstream is still running, the step's process starts ahead (``--wait``): Python's start and the
imports are done when the upstream finishes.
"""

from __future__ import annotations

import contextlib
import json
import os
import subprocess
import sys
import tempfile
import time
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import IO

from jup2kub.run.executor import BLOCKED, DONE, FAILED, RUNNING, WAITING, Run, explain
from jup2kub_runtime import STEP_RUN_MODULE
from jup2kub_runtime.errors import ErrorRecord
from jup2kub_runtime.state import StateStore


@dataclass
class _Process:
    step: str
    proc: subprocess.Popen[bytes]
    log: IO[bytes]


class LocalExecutor:
    """Runs each step with the runtime's single-execution command, at most ``jobs`` at once."""

    mode = "embedded"
    resumable = True

    def __init__(
        self,
        jobs: int | None = None,
        python: str = sys.executable,
        environment: Mapping[str, str] | None = None,
    ) -> None:
        self.limit = max(1, jobs or os.cpu_count() or 1)
        self.python = python
        #: extra variables for the step processes (secret parameters): never written anywhere
        self.environment = dict(environment or {})

    def execute(self, run: Run) -> None:
        _Schedule(self, run).loop()

    def close(self) -> None:
        """Nothing outlives ``execute``: every step process has ended by then."""


class _Schedule:
    """The scheduling loop of one run: start what is ready, collect what finished."""

    def __init__(self, executor: LocalExecutor, run: Run) -> None:
        self.executor = executor
        self.run = run
        self.running: dict[str, _Process] = {}
        #: started ahead (``--wait``): imports done, waiting for "go" once the upstream is done
        self.ready: dict[str, _Process] = {}
        self.params_json = json.dumps(dict(run.parameters))
        self.env = {
            **os.environ,
            **executor.environment,
            "PYTHONUNBUFFERED": "1",
            "MPLBACKEND": "Agg",
        }

    def loop(self) -> None:
        try:
            while True:
                self._start_ready_steps()
                if not self.running:
                    break
                time.sleep(0.02)
                self._collect_finished()
        finally:
            for p in self.running.values():
                p.proc.kill()
                p.proc.wait()
                p.log.close()
            for p in self.ready.values():
                _cancel(p)

    def _start_ready_steps(self) -> None:
        steps = self.run.steps
        for name in self.run.plan.order:
            st = steps[name]
            if st.state != WAITING:
                continue
            ups = [steps[u].state for u in self.run.plan.step(name).after]
            free = len(self.running) < self.executor.limit
            if any(u in (FAILED, BLOCKED) for u in ups):
                st.state = BLOCKED
                if name in self.ready:
                    _cancel(self.ready.pop(name))
                self.run.notify()
            elif all(u == DONE for u in ups) and free:
                self.running[name] = self._go_or_spawn(name)
                st.state, st.started = RUNNING, time.monotonic()
                self.run.notify()
            elif name not in self.ready and ups and all(u in (RUNNING, DONE) for u in ups) and free:
                self.ready[name] = self._spawn(name, wait=True)

    def _go_or_spawn(self, name: str) -> _Process:
        p = self.ready.pop(name, None)
        if p is not None and _go(p):
            return p
        if p is not None:
            _cancel(p)
        return self._spawn(name, wait=False)

    def _spawn(self, name: str, *, wait: bool) -> _Process:
        run = self.run
        # stderr goes outside WORKDIR first: it must survive a full work disk
        log = tempfile.TemporaryFile()  # noqa: SIM115 (closed when the step ends)
        proc = subprocess.Popen(
            [
                self.executor.python,
                "-m",
                STEP_RUN_MODULE,
                "--spec",
                str(run.bundles[name]),
                "--state",
                str(run.workdir),
                "--run-id",
                run.run_id,
                "--params",
                self.params_json,
                *(["--wait"] if wait else []),
            ],
            stdin=subprocess.PIPE if wait else subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=log,
            env=self.env,
            cwd=Path.cwd(),
        )
        return _Process(name, proc, log)

    def _collect_finished(self) -> None:
        run = self.run
        for name, p in list(self.running.items()):
            code = p.proc.poll()
            if code is None:
                continue
            p.proc.communicate()
            p.log.seek(0)
            stderr = p.log.read().decode(errors="replace")
            p.log.close()
            with contextlib.suppress(OSError):
                (run.logs / f"{name}.log").write_text(stderr)
            del self.running[name]
            st = run.steps[name]
            st.finished = time.monotonic()
            if code == 0:
                st.state = DONE
            else:
                st.state = FAILED
                error = _failure(run.store, run.run_id, name, code, stderr)
                st.error = explain(run.pipeline, name, error)
            run.notify()


def _go(p: _Process) -> bool:
    """Let a process started with ``--wait`` execute; False if it is gone already."""
    if p.proc.poll() is not None or p.proc.stdin is None:
        return False
    try:
        p.proc.stdin.write(b"go\n")
        p.proc.stdin.close()
    except OSError:  # it died while waiting
        return False
    finally:
        p.proc.stdin = None  # closed: communicate() must not flush it
    return True


def _cancel(p: _Process) -> None:
    """End a process started with ``--wait`` that will not run: end of input, then kill."""
    with contextlib.suppress(OSError):
        if p.proc.stdin is not None:
            p.proc.stdin.close()
    p.proc.stdin = None
    try:
        p.proc.communicate(timeout=10)
    except subprocess.TimeoutExpired:
        p.proc.kill()
        p.proc.communicate()
    p.log.close()


def _failure(store: StateStore, run_id: str, step: str, code: int, stderr: str) -> object:
    """The step's error record: from the store, else from its last JSON line, else its stderr."""
    error = store.error(run_id, step)
    if isinstance(error, dict) and error:
        return error
    text = stderr.strip()
    for line in reversed(text.splitlines()):
        try:
            doc = json.loads(line)
        except ValueError:
            continue
        if isinstance(doc, dict) and isinstance(doc.get("error"), dict):
            return dict(doc["error"])
    return ErrorRecord(None, "StepProcessError", text[-2000:] or f"exit code {code}").to_json()
