"""``jup2kub run``: the steps on this machine, one process each, without Kafka, Kubernetes or
Docker.

Each step runs in its own process, over the same state store layout as on the cluster, so that
values crossing a step boundary really go through storage; independent steps run in parallel
up to ``jobs``. Two ways to start a step's process (``J2K_LOCAL_WORKERS``):

- ``fork`` (default on Linux): a fork server started once per run (with the first step that
  executes: steps reused from the step cache need none) has imported what the steps import
  (quietly: see ``jup2kub_runtime.execution.preimport``); each step's process is forked from it,
  so a step pays neither Python's start nor the imports. If the server dies, its running steps
  fail (as killed ones) and later steps are spawned.
- ``spawn`` (elsewhere): a fresh ``python -m jup2kub_runtime.execution.step_run`` per step. While a
  core is free and a step's upstream is still running, its process starts ahead (``--wait``):
  Python's start and the imports are done when the upstream finishes.
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
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Protocol

from jup2kub.run.executor import (
    BLOCKED,
    DONE,
    FAILED,
    RUNNING,
    WAITING,
    Run,
    explain,
    failed_at,
    failing_cell,
    killed_in_cell,
)
from jup2kub_runtime import FORK_SERVER_MODULE, STEP_RUN_MODULE
from jup2kub_runtime.contract.config import MAP_JOBS_ENV
from jup2kub_runtime.contract.errors import ErrorRecord, StepRuntimeError
from jup2kub_runtime.contract.metrics import ExecutionOutcome
from jup2kub_runtime.contract.tracing import PIPELINE, RUN_ID, STEP, step_span_name
from jup2kub_runtime.execution.tracing import Span, tracer
from jup2kub_runtime.storage.state_store import StateStore

#: ``fork`` or ``spawn``: how step processes start (default: fork where it exists)
WORKERS_ENV = "J2K_LOCAL_WORKERS"

#: a step that ended: its name, exit code (minus the signal's number if killed), stderr
Ended = tuple[str, int, str]

#: a line a step's cells printed (``--log-output``): the step's name and the line
OnOutput = Callable[[str, str], None]

#: seconds between refreshes of a running step's cell and elapsed time (the progress display)
TICK_SECONDS = 1.0


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
        *,
        timeout: float | None = None,
        on_output: OnOutput | None = None,
    ) -> None:
        self.limit = max(1, jobs or os.cpu_count() or 1)
        self.python = python
        self.workers = workers or workers_mode()
        #: extra variables for the step processes (secret parameters): never written anywhere
        self.environment = dict(environment or {})
        #: the whole run's time limit in seconds (``--timeout``)
        self.timeout = timeout if timeout and timeout > 0 else None
        #: gets every line the cells print, as they print it (``--log-output``)
        self.on_output = on_output
        #: a map step runs its elements in up to ``jobs`` processes too (runtime ``mapping``)
        self.environment.setdefault(MAP_JOBS_ENV, str(self.limit))

    def execute(self, run: Run) -> None:
        echo = self.on_output is not None
        spawner = _Spawner(self.python, run, self.environment, echo=echo)
        launcher: _Launcher = (
            _Forker(self.python, run, spawner, echo=echo) if self.workers == "fork" else spawner
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

    def output(self) -> list[tuple[str, str]]:
        """The lines the steps' cells printed since the last call (with ``echo``), whole
        lines only until a step ends."""

    def close(self) -> None:
        """Kill what still runs; nothing outlives this."""


class _Schedule:
    """The scheduling loop of one run: start what is ready, collect what finished."""

    def __init__(self, executor: LocalExecutor, run: Run, launcher: _Launcher) -> None:
        self.executor = executor
        self.run = run
        self.launcher = launcher
        self.running: set[str] = set()
        began = time.monotonic()
        timeout = executor.timeout
        self.deadline = None if timeout is None else began + timeout
        self.next_tick = began + TICK_SECONDS
        self.spans = _StepSpans(run)

    def loop(self) -> None:
        try:
            while True:
                self._start_ready_steps()
                if not self.running:
                    break
                ended = self.launcher.wait(0.02)
                self._show_output()  # before a step's end is reported: its last lines first
                for name, code, stderr in ended:
                    self._finished(name, code, stderr)
                self._tick()
        finally:
            self.launcher.close()

    def _show_output(self) -> None:
        on_output = self.executor.on_output
        if on_output is not None:
            for step, line in self.launcher.output():
                on_output(step, line)

    def _tick(self) -> None:
        """Once a second: which cell each running step executes (a hung step shows where),
        and the run's time limit."""
        now = time.monotonic()
        if self.deadline is not None and now >= self.deadline and self.running:
            self._time_out()
            return
        if now < self.next_tick:
            return
        self.next_tick = now + TICK_SECONDS
        self.run.tick()

    def _time_out(self) -> None:
        """The run's time is up: every step process ends now; a running step fails in the
        cell it was executing (its earlier cells' outputs kept), the steps not started are
        not run, and the run can be resumed."""
        run, limit = self.run, self.executor.timeout or 0.0
        run.timed_out = limit
        self.launcher.close()
        note = f"the run's --timeout of {limit:g}s ended it"
        for name in sorted(self.running):
            st = run.steps[name]
            st.state, st.finished = FAILED, time.monotonic()
            self.spans.ended(name, ok=False)
            error: object = None
            with contextlib.suppress(StepRuntimeError, OSError):
                error = killed_in_cell(run.store, run.run_id, name, signal.SIGKILL, note)
            if error is None:
                error = ErrorRecord(None, "RunTimeout", note.capitalize()).to_json()
            st.error = ErrorRecord.from_json(error)
            with contextlib.suppress(OSError):
                _write_log(run, name, None, "", note)
        self.running.clear()
        for st in run.steps.values():
            if st.state == WAITING:
                st.state = BLOCKED
        run.notify()

    def _start_ready_steps(self) -> None:
        steps = self.run.steps
        first = failed_at(self.run.pipeline, steps)
        stop = None if first is None else failing_cell(first, self.run.pipeline.step(first.name))
        for name in self.run.plan.order:
            st = steps[name]
            if st.state != WAITING:
                continue
            ups = [steps[u].state for u in self.run.plan.step(name).after]
            free = len(self.running) < self.executor.limit
            past = stop is not None and min(self.run.pipeline.step(name).cells) > stop
            if past or any(u in (FAILED, BLOCKED) for u in ups):
                st.state = BLOCKED
                self.launcher.cancel(name)
                self.run.notify()
            elif all(u == DONE for u in ups) and free:
                if self.run.reuse(name):  # unchanged: its results are in place
                    self.launcher.cancel(name)
                    self.spans.started(name)
                    self.spans.ended(name, ok=True, reused=True)
                    self.run.notify()
                    continue
                self.spans.started(name)
                self.launcher.start(name)
                self.running.add(name)
                st.state, st.started = RUNNING, time.monotonic()
                self.run.notify()
            elif ups and all(u in (RUNNING, DONE) for u in ups) and free:
                self.launcher.ahead(name)

    def _finished(self, name: str, code: int, stderr: str) -> None:
        run = self.run
        with contextlib.suppress(OSError):
            _write_log(run, name, code, stderr)
        self.running.discard(name)
        st = run.steps[name]
        st.finished, st.cell = time.monotonic(), None
        if code == 0:
            st.state = DONE
            run.executed(name)
        else:
            st.state = FAILED
            error = _failure(run.store, run.run_id, name, code, stderr)
            st.error = explain(run.pipeline, name, error)
        self.spans.ended(name, ok=code == 0)
        run.notify()


class _StepSpans:
    """The steps' spans (``jup2kub_runtime.execution.tracing``), made as each step ends, with
    its cells' from what its process recorded: a step's parent is the span of the upstream step
    that ended last (the one that let it start, as its message would on Kafka), the others
    linked; a root step's, the run's. Nothing is done unless the environment turns traces on."""

    def __init__(self, run: Run) -> None:
        self.run = run
        self.tracer = tracer()
        self.began: dict[str, float] = {}
        self.spans: dict[str, tuple[float, Span]] = {}  # step -> (its end, its span)

    def started(self, name: str) -> None:
        if self.tracer.on:
            self.began[name] = time.time()

    def ended(self, name: str, *, ok: bool, reused: bool = False) -> None:
        if not self.tracer.on or name not in self.began:
            return
        run, now = self.run, time.time()
        ups = sorted(
            (self.spans[u] for u in run.plan.step(name).after if u in self.spans),
            key=lambda e: e[0],
        )
        parent = ups[-1][1] if ups else run.trace
        attributes = {PIPELINE: run.pipeline.name, STEP: name, RUN_ID: run.run_id}
        span = self.tracer.span(
            step_span_name(name),
            attributes,
            parent=parent,
            start=self.began.pop(name),
            links=[s for _, s in ups[:-1]],
        )
        error = run.steps[name].error
        with contextlib.suppress(OSError, ValueError, StepRuntimeError):
            doc = run.store.outputs(run.run_id, name) if not reused else None
            cells = doc.get("cells", []) if isinstance(doc, dict) else []
            span.cells(
                ((c["index"], c.get("started_at"), c.get("seconds", 0.0)) for c in cells),
                error.cell if error is not None else None,
                error.ename if error is not None else "",
            )
        outcome = ExecutionOutcome.SUCCEEDED if ok else ExecutionOutcome.FAILED
        attempt = None if reused else run.store.attempts(run.run_id, name)
        span.end(outcome.value, attempt=attempt, reused=reused, error=not ok, at=now)
        self.spans[name] = (now, span)


#: how this runner marks what it adds to a step's stderr
RUNNER_NOTE = "[jup2kub]"


def _write_log(run: Run, name: str, code: int | None, stderr: str, note: str = "") -> None:
    """``logs/STEP.log``: what the step's process wrote on stderr, under a header saying
    which run and step, when, how it ended and where its outputs are: never an empty file."""
    st = run.steps[name]
    seconds = "" if st.seconds is None else f" after {st.seconds:.2f}s"
    if code is None:
        ended = f"killed{seconds}: {note}"
    elif code < 0:
        ended = f"killed by {_signal_name(-code)}{seconds}"
    else:
        ended = f"exit code {code}{seconds}"
    lines = [
        f"{RUNNER_NOTE} run {run.run_id}, step {name}: {ended}",
        f"{RUNNER_NOTE} written {time.strftime('%Y-%m-%dT%H:%M:%S%z')}; the cells' outputs: "
        f"{run.store.step_dir(run.run_id, name)}",
        *_cell_texts(run, name),
        f"{RUNNER_NOTE} the process' stderr:",
        stderr.rstrip("\n")
        if stderr.strip()
        else f"{RUNNER_NOTE} (not kept: killed at the time limit)"
        if code is None
        else f"{RUNNER_NOTE} (nothing)",
    ]
    (run.logs / f"{name}.log").write_text("\n".join(lines) + "\n")


def _cell_texts(run: Run, name: str) -> list[str]:
    """What the step's cells printed and raised, cell by cell (the results notebook has it
    all, figures too): a log reader sees the text without opening a notebook."""
    try:
        doc = run.store.outputs(run.run_id, name)
    except (OSError, ValueError, StepRuntimeError):
        return []
    out: list[str] = []
    for record in doc.get("cells", []) if isinstance(doc, dict) else []:
        texts = []
        for o in record.get("outputs") or []:
            if o.get("output_type") == "stream":
                texts.append(str(o.get("text", "")).rstrip("\n"))
            elif o.get("output_type") == "error":
                texts.append(f"{o.get('ename')}: {o.get('evalue')}")
        if texts:
            out += [f"{RUNNER_NOTE} cell {record.get('index')}:", *texts]
    return out


def _signal_name(signum: int) -> str:
    try:
        return signal.Signals(signum).name
    except ValueError:
        return f"signal {signum}"


class _Tail:
    """New whole lines of a file a step process writes, read as they come."""

    def __init__(self, step: str, read: Callable[[int], bytes]) -> None:
        self.step = step
        self.read = read  # bytes from an offset on
        self.offset = 0
        self.pending = b""

    def lines(self, final: bool = False) -> list[tuple[str, str]]:
        with contextlib.suppress(OSError, ValueError):
            data = self.read(self.offset)
            self.offset += len(data)
            self.pending += data
        *whole, self.pending = self.pending.split(b"\n")
        if final and self.pending:
            whole, self.pending = [*whole, self.pending], b""
        texts = (line.decode(errors="replace") for line in whole)
        return [(self.step, t) for t in texts if not _is_protocol(t)]


def _is_protocol(line: str) -> bool:
    """The step process' own status or error line (JSON for this runner), not a cell's."""
    if not line.startswith('{"status"'):
        return False
    try:
        doc = json.loads(line)
    except ValueError:
        return False
    return isinstance(doc, dict) and "run_id" in doc and "step" in doc


def _file_reader(path: Path) -> Callable[[int], bytes]:
    def read(offset: int) -> bytes:
        try:
            with path.open("rb") as f:
                f.seek(offset)
                return f.read()
        except FileNotFoundError:
            return b""

    return read


def _fd_reader(f: IO[bytes]) -> Callable[[int], bytes]:
    def read(offset: int) -> bytes:
        chunks = []
        while chunk := os.pread(f.fileno(), 1 << 16, offset):
            chunks.append(chunk)
            offset += len(chunk)
        return b"".join(chunks)

    return read


def _step_env(extra: Mapping[str, str]) -> dict[str, str]:
    return {**os.environ, **extra, "PYTHONUNBUFFERED": "1", "MPLBACKEND": "Agg"}


@dataclass
class _Process:
    step: str
    proc: subprocess.Popen[bytes]
    log: IO[bytes]
    out: IO[bytes] | None = None  # the cells' stdout (echo)
    tails: list[_Tail] = field(default_factory=list)

    def close(self) -> None:
        self.log.close()
        if self.out is not None:
            self.out.close()


class _Spawner:
    """A fresh ``python -m jup2kub_runtime.execution.step_run`` per step; started ahead with
    ``--wait`` (imports done, waiting for "go" once the upstream is done)."""

    def __init__(
        self, python: str, run: Run, environment: Mapping[str, str], *, echo: bool = False
    ) -> None:
        self.python = python
        self.run = run
        self.echo = echo
        self.running: dict[str, _Process] = {}
        self.ready: dict[str, _Process] = {}
        self.params_json = json.dumps(dict(run.parameters))
        self.env = _step_env(environment)
        self.printed: list[tuple[str, str]] = []  # the last lines of steps that ended

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
            self.printed += [line for tail in p.tails for line in tail.lines(final=True)]
            p.log.seek(0)
            stderr = p.log.read().decode(errors="replace")
            p.close()
            del self.running[name]
            done.append((name, code, stderr))
        return done

    def output(self) -> list[tuple[str, str]]:
        lines, self.printed = self.printed, []
        return lines + [line for p in self.running.values() for t in p.tails for line in t.lines()]

    def close(self) -> None:
        for p in self.running.values():
            p.proc.kill()
            p.proc.wait()
            p.close()
        self.running.clear()
        for p in self.ready.values():
            _cancel(p)
        self.ready.clear()

    def _spawn(self, name: str, *, wait: bool) -> _Process:
        run = self.run
        # stderr goes outside WORKDIR first: it must survive a full work disk
        log = tempfile.TemporaryFile()  # noqa: SIM115 (closed when the step ends)
        out = tempfile.TemporaryFile() if self.echo else None  # noqa: SIM115 (same)
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
                *(["--echo"] if self.echo else []),
            ],
            stdin=subprocess.PIPE if wait else subprocess.DEVNULL,
            stdout=subprocess.PIPE if out is None else out,
            stderr=log,
            env=self.env,
            cwd=Path.cwd(),
        )
        tails = [_Tail(name, _fd_reader(f)) for f in (out, log) if f is not None and self.echo]
        return _Process(name, proc, log, out, tails)


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
    p.close()


@dataclass
class _Forked:
    stderr: Path
    pid: int | None = None  # known once the server says it forked
    tails: list[_Tail] = field(default_factory=list)


class _Forker:
    """Each step's process forked by one fork server (``jup2kub_runtime.execution.forkserver``)
    that has imported what the steps import; ``spawner`` starts the steps once the server is
    gone."""

    def __init__(self, python: str, run: Run, spawner: _Spawner, *, echo: bool = False) -> None:
        self.run = run
        self.spawner = spawner
        self.echo = echo
        self.printed: list[tuple[str, str]] = []  # the last lines of steps that ended
        self.params_json = json.dumps(dict(run.parameters))
        self.running: dict[str, _Forked] = {}
        # the steps' stderr goes outside WORKDIR first: it must survive a full work disk
        self.tmp = Path(tempfile.mkdtemp(prefix="jup2kub-steps-"))
        self.server_log = tempfile.TemporaryFile()  # noqa: SIM115 (closed in close())
        self.python = python
        self.server: subprocess.Popen[bytes] | None = None
        self.launched = False  # the server starts with the first step that executes
        self.pending = b""
        self.backlog: list[Ended] = []  # ended while starting a step

    def _launch(self) -> None:
        """Start the server, warming up for the steps still to run (reused ones need nothing;
        a run whose steps are all reused starts none)."""
        self.launched = True
        args = [self.python, "-m", FORK_SERVER_MODULE, "--parent", str(os.getpid())]
        for name in self.run.plan.order:
            if self.run.steps[name].state != DONE:
                args += ["--spec", str(self.run.bundles[name])]
        notebook = Path(self.run.pipeline.notebook)
        args += ["--local", str(notebook.absolute().parent)]
        self.server = subprocess.Popen(
            args,
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=self.server_log,
            env=self.spawner.env,
            cwd=Path.cwd(),
        )

    def start(self, name: str) -> None:
        if not self.launched:
            self._launch()
        if self.server is None or self.server.stdin is None:
            self.spawner.start(name)
            return
        stderr = self.tmp / f"{name}.stderr"
        request: dict[str, object] = {
            "id": name,
            "spec": str(self.run.bundles[name]),
            "state": str(self.run.workdir),
            "run_id": self.run.run_id,
            "params": self.params_json,
            "stderr": str(stderr),
        }
        stdout = self.tmp / f"{name}.stdout"
        if self.echo:
            request |= {"echo": True, "stdout": str(stdout)}
        try:
            self.server.stdin.write((json.dumps(request) + "\n").encode())
            self.server.stdin.flush()
        except OSError:  # the server is gone: spawn this one, and the next ones
            self.backlog += self._server_gone()
            self.spawner.start(name)
            return
        tails = [_Tail(name, _file_reader(f)) for f in (stdout, stderr)] if self.echo else []
        self.running[name] = _Forked(stderr, tails=tails)

    def ahead(self, name: str) -> None:
        if self.launched and self.server is None:
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
            self._last_lines(forked)
            return [(name, int(event["code"]), _read_and_remove(forked.stderr))]
        return []

    def _last_lines(self, forked: _Forked) -> None:
        self.printed += [line for tail in forked.tails for line in tail.lines(final=True)]
        with contextlib.suppress(OSError):
            (self.tmp / f"{forked.stderr.stem}.stdout").unlink(missing_ok=True)

    def output(self) -> list[tuple[str, str]]:
        lines, self.printed = self.printed, []
        lines += [line for f in self.running.values() for t in f.tails for line in t.lines()]
        return lines + self.spawner.output()

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
            self._last_lines(forked)
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
            killed = killed_in_cell(store, run_id, step, -code, _runner_note(stderr))
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
