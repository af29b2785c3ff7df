"""``jup2kub run``: the steps on this machine, one process each, without Kafka, Kubernetes or
Docker.

Each step runs in its own process, over the same state store layout as on the cluster, so that
values crossing a step boundary really go through storage; independent steps run in parallel
up to ``jobs``. Two ways to start a step's process (``J2K_LOCAL_WORKERS``):

- ``fork`` (default on Linux): a fork server started once per run has imported what the steps
  import (quietly: see ``jup2kub_runtime.preimport``); each step's process is forked from it, so
  a step pays neither Python's start nor the imports. If the server dies, its running steps
  fail (as killed ones) and later steps are spawned.
- ``spawn`` (elsewhere): a fresh ``python -m jup2kub_runtime.step_run`` per step. While a core is
  free and a step's upstream is still running, its process starts ahead (``--wait``): Python's
  start and the imports are done when the upstream finishes.
"""

from __future__ import annotations

import contextlib
import json
import os
import select
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Protocol

from jup2kub.run.executor import BLOCKED, DONE, FAILED, RUNNING, WAITING, Run, explain
from jup2kub_runtime import FORK_SERVER_MODULE, STEP_RUN_MODULE
from jup2kub_runtime.errors import ErrorRecord, StepRuntimeError
from jup2kub_runtime.state import StateStore

#: ``fork`` or ``spawn``: how step processes start (default: fork where it exists)
WORKERS_ENV = "J2K_LOCAL_WORKERS"

#: a step that ended: its name, exit code (minus the signal's number if killed), stderr
Ended = tuple[str, int, str]


def fork_available() -> bool:
    return sys.platform.startswith("linux") and hasattr(os, "fork")


def workers_mode() -> str:
    """``fork`` or ``spawn``, from J2K_LOCAL_WORKERS (fork only where it exists)."""
    asked = os.environ.get(WORKERS_ENV, "").strip().lower()
    if asked == "spawn" or not fork_available():
        return "spawn"
    return "fork"


class LocalExecutor:
    """Runs each step in its own process (forked or spawned), at most ``jobs`` at once."""

    mode = "embedded"
    resumable = True

    def __init__(
        self,
        jobs: int | None = None,
        python: str = sys.executable,
        workers: str | None = None,
        environment: Mapping[str, str] | None = None,
    ) -> None:
        self.limit = max(1, jobs or os.cpu_count() or 1)
        self.python = python
        self.workers = workers or workers_mode()
        #: extra variables for the step processes (secret parameters): never written anywhere
        self.environment = dict(environment or {})
        #: a map step runs its elements in up to ``jobs`` processes too (runtime ``mapping``)
        self.environment.setdefault("J2K_MAP_JOBS", str(self.limit))

    def execute(self, run: Run) -> None:
        spawner = _Spawner(self.python, run, self.environment)
        launcher: _Launcher = (
            _Forker(self.python, run, spawner) if self.workers == "fork" else spawner
        )
        _Schedule(self, run, launcher).loop()

    def close(self) -> None:
        """Nothing outlives ``execute``: every step process has ended by then."""


class _Launcher(Protocol):
    """Starts step processes and says which ended; the schedule does not care how."""

    def start(self, name: str) -> None:
        """Start the step now."""

    def ahead(self, name: str) -> None:
        """The step will likely start soon: prepare it if that helps (its upstream runs)."""

    def cancel(self, name: str) -> None:
        """The step will not run: drop what ``ahead`` prepared."""

    def wait(self, timeout: float) -> list[Ended]:
        """The steps that ended, waiting up to ``timeout`` seconds for one."""

    def close(self) -> None:
        """Kill what still runs; nothing outlives this."""


class _Schedule:
    """The scheduling loop of one run: start what is ready, collect what finished."""

    def __init__(self, executor: LocalExecutor, run: Run, launcher: _Launcher) -> None:
        self.executor = executor
        self.run = run
        self.launcher = launcher
        self.running: set[str] = set()

    def loop(self) -> None:
        try:
            while True:
                self._start_ready_steps()
                if not self.running:
                    break
                for name, code, stderr in self.launcher.wait(0.02):
                    self._finished(name, code, stderr)
        finally:
            self.launcher.close()

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
                self.launcher.cancel(name)
                self.run.notify()
            elif all(u == DONE for u in ups) and free:
                self.launcher.start(name)
                self.running.add(name)
                st.state, st.started = RUNNING, time.monotonic()
                self.run.notify()
            elif ups and all(u in (RUNNING, DONE) for u in ups) and free:
                self.launcher.ahead(name)

    def _finished(self, name: str, code: int, stderr: str) -> None:
        run = self.run
        with contextlib.suppress(OSError):
            (run.logs / f"{name}.log").write_text(stderr)
        self.running.discard(name)
        st = run.steps[name]
        st.finished = time.monotonic()
        if code == 0:
            st.state = DONE
        else:
            st.state = FAILED
            error = _failure(run.store, run.run_id, name, code, stderr)
            st.error = explain(run.pipeline, name, error)
        run.notify()


#: how this runner marks what it adds to a step's stderr
RUNNER_NOTE = "[jup2kub]"


def _step_env(extra: Mapping[str, str]) -> dict[str, str]:
    return {**os.environ, **extra, "PYTHONUNBUFFERED": "1", "MPLBACKEND": "Agg"}


@dataclass
class _Process:
    step: str
    proc: subprocess.Popen[bytes]
    log: IO[bytes]


class _Spawner:
    """A fresh ``python -m jup2kub_runtime.step_run`` per step; started ahead with ``--wait``
    (imports done, waiting for "go" once the upstream is done)."""

    def __init__(self, python: str, run: Run, environment: Mapping[str, str]) -> None:
        self.python = python
        self.run = run
        self.running: dict[str, _Process] = {}
        self.ready: dict[str, _Process] = {}
        self.params_json = json.dumps(dict(run.parameters))
        self.env = _step_env(environment)

    def start(self, name: str) -> None:
        p = self.ready.pop(name, None)
        if p is None or not _go(p):
            if p is not None:
                _cancel(p)
            p = self._spawn(name, wait=False)
        self.running[name] = p

    def ahead(self, name: str) -> None:
        if name not in self.ready:
            self.ready[name] = self._spawn(name, wait=True)

    def cancel(self, name: str) -> None:
        if name in self.ready:
            _cancel(self.ready.pop(name))

    def wait(self, timeout: float) -> list[Ended]:
        if self.running:
            time.sleep(timeout)
        return self.ended()

    def ended(self) -> list[Ended]:
        done: list[Ended] = []
        for name, p in list(self.running.items()):
            code = p.proc.poll()
            if code is None:
                continue
            p.proc.communicate()
            p.log.seek(0)
            stderr = p.log.read().decode(errors="replace")
            p.log.close()
            del self.running[name]
            done.append((name, code, stderr))
        return done

    def close(self) -> None:
        for p in self.running.values():
            p.proc.kill()
            p.proc.wait()
            p.log.close()
        self.running.clear()
        for p in self.ready.values():
            _cancel(p)
        self.ready.clear()

    def _spawn(self, name: str, *, wait: bool) -> _Process:
        run = self.run
        # stderr goes outside WORKDIR first: it must survive a full work disk
        log = tempfile.TemporaryFile()  # noqa: SIM115 (closed when the step ends)
        proc = subprocess.Popen(
            [
                self.python,
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


@dataclass
class _Forked:
    stderr: Path
    pid: int | None = None  # known once the server says it forked


class _Forker:
    """Each step's process forked by one fork server (``jup2kub_runtime.forkserver``) that has
    imported what the steps import; ``spawner`` starts the steps once the server is gone."""

    def __init__(self, python: str, run: Run, spawner: _Spawner) -> None:
        self.run = run
        self.spawner = spawner
        self.params_json = json.dumps(dict(run.parameters))
        self.running: dict[str, _Forked] = {}
        # the steps' stderr goes outside WORKDIR first: it must survive a full work disk
        self.tmp = Path(tempfile.mkdtemp(prefix="jup2kub-steps-"))
        self.server_log = tempfile.TemporaryFile()  # noqa: SIM115 (closed in close())
        args = [python, "-m", FORK_SERVER_MODULE, "--parent", str(os.getpid())]
        for name in run.plan.order:
            args += ["--spec", str(run.bundles[name])]
        notebook = Path(run.pipeline.notebook)
        args += ["--local", str(notebook.absolute().parent)]
        self.server: subprocess.Popen[bytes] | None = subprocess.Popen(
            args,
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=self.server_log,
            env=spawner.env,
            cwd=Path.cwd(),
        )
        self.pending = b""
        self.backlog: list[Ended] = []  # ended while starting a step

    def start(self, name: str) -> None:
        if self.server is None or self.server.stdin is None:
            self.spawner.start(name)
            return
        stderr = self.tmp / f"{name}.stderr"
        request = {
            "id": name,
            "spec": str(self.run.bundles[name]),
            "state": str(self.run.workdir),
            "run_id": self.run.run_id,
            "params": self.params_json,
            "stderr": str(stderr),
        }
        try:
            self.server.stdin.write((json.dumps(request) + "\n").encode())
            self.server.stdin.flush()
        except OSError:  # the server is gone: spawn this one, and the next ones
            self.backlog += self._server_gone()
            self.spawner.start(name)
            return
        self.running[name] = _Forked(stderr)

    def ahead(self, name: str) -> None:
        if self.server is None:
            self.spawner.ahead(name)

    def cancel(self, name: str) -> None:
        self.spawner.cancel(name)

    def wait(self, timeout: float) -> list[Ended]:
        done, self.backlog = self.backlog, []
        if done:
            return done + self.spawner.ended()
        if not self.running or self.server is None or self.server.stdout is None:
            return self.spawner.wait(timeout) if self.spawner.running else self.spawner.ended()
        out = self.server.stdout
        ready, _, _ = select.select([out], [], [], timeout)
        if ready:
            data = os.read(out.fileno(), 65536)
            done += self._events(data) if data else self._server_gone()
        return done + self.spawner.ended()

    def _events(self, data: bytes) -> list[Ended]:
        self.pending += data
        *lines, self.pending = self.pending.split(b"\n")
        return [ended for line in lines for ended in self._event(line)]

    def _event(self, line: bytes) -> list[Ended]:
        try:
            event = json.loads(line)
        except ValueError:
            return []
        name = str(event.get("id"))
        forked = self.running.get(name)
        if forked is None:
            return []
        if event.get("event") == "started":
            forked.pid = int(event["pid"])
        elif event.get("event") == "exited":
            del self.running[name]
            return [(name, int(event["code"]), _read_and_remove(forked.stderr))]
        return []

    def _server_gone(self) -> list[Ended]:
        """The server died: its children die with it (killed here too, in case); the steps it
        had forked failed as killed ones, the others are spawned instead."""
        server, self.server = self.server, None
        code = None
        done: list[Ended] = []
        if server is not None:
            done += self._events(_end_server(server) + b"\n")  # what it said before it ended
            code = server.returncode
        self.server_log.seek(0)
        last = self.server_log.read().decode(errors="replace").strip().splitlines()[-1:]
        why = f"{RUNNER_NOTE} the fork server ended (exit code {code}){': ' if last else ''}"
        why += "".join(last) + "\n"
        for name, forked in list(self.running.items()):
            del self.running[name]
            if forked.pid is None:
                self.spawner.start(name)
                continue
            _kill(forked.pid)
            done.append((name, -signal.SIGKILL, _read_and_remove(forked.stderr) + why))
        return done

    def close(self) -> None:
        for forked in self.running.values():
            if forked.pid is not None:
                _kill(forked.pid)
        self.running.clear()
        if self.server is not None:
            _end_server(self.server)
            self.server = None
        self.spawner.close()
        self.server_log.close()
        shutil.rmtree(self.tmp, ignore_errors=True)


def _kill(pid: int) -> None:
    with contextlib.suppress(OSError):
        os.kill(pid, signal.SIGKILL)


def _end_server(server: subprocess.Popen[bytes]) -> bytes:
    """End of input (it kills and reaps its children), then wait, killing it if need be;
    what it wrote meanwhile."""
    with contextlib.suppress(OSError):
        if server.stdin is not None:
            server.stdin.close()
    server.stdin = None
    try:
        out, _ = server.communicate(timeout=10)
    except subprocess.TimeoutExpired:
        server.kill()
        out, _ = server.communicate()
    return out or b""


def _read_and_remove(path: Path) -> str:
    try:
        text = path.read_bytes().decode(errors="replace")
    except OSError:
        return ""
    with contextlib.suppress(OSError):
        path.unlink()
    return text


def _failure(store: StateStore, run_id: str, step: str, code: int, stderr: str) -> object:
    """The step's error record: from the store, else (killed by a signal) the cell it was
    executing, else from its last JSON line, else its stderr."""
    error = store.error(run_id, step)
    if isinstance(error, dict) and error:
        return error
    if code < 0:
        with contextlib.suppress(StepRuntimeError):
            killed = _killed(store, run_id, step, -code, _runner_note(stderr))
            if killed is not None:
                return killed
    text = stderr.strip()
    for line in reversed(text.splitlines()):
        try:
            doc = json.loads(line)
        except ValueError:
            continue
        if isinstance(doc, dict) and isinstance(doc.get("error"), dict):
            return dict(doc["error"])
    return ErrorRecord(None, "StepProcessError", text[-2000:] or f"exit code {code}").to_json()


def _runner_note(stderr: str) -> str:
    """What this runner said about the process (``[jup2kub] ...`` lines), e.g. that its fork
    server ended."""
    lines = stderr.splitlines()
    return "; ".join(
        line[len(RUNNER_NOTE) :].strip() for line in lines if line.startswith(RUNNER_NOTE)
    )


def _killed(
    store: StateStore, run_id: str, step: str, signum: int, note: str = ""
) -> object | None:
    """A step process killed by ``signum`` while a cell ran: the error names that cell, and
    the outputs of the cells before it are kept as a failed attempt's (the results show
    them); None when it died before its first cell."""
    cell, finished = store.progress(run_id, step)
    if cell is None:
        return None
    try:
        name = signal.Signals(signum).name
    except ValueError:
        name = f"signal {signum}"
    record = ErrorRecord(
        cell,
        "StepKilled",
        f"the step's process was killed by {name} while cell {cell} ran"
        + (f" ({note})" if note else ""),
        phase="cell",
    )
    outputs = {"version": 1, "step": step, "parameters": {}, "cells": finished}
    store.save_failure(
        run_id, step, outputs={**outputs, "error": record.to_json()}, error=record, timing={}
    )
    store.clear_progress(run_id, step)
    return record.to_json()
