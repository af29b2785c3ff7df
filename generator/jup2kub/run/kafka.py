"""``jup2kub run --kafka``: the cluster's data path on one machine.

One runtime process per step (``python -m jup2kub_runtime``, the step images' entrypoint) on a
real broker, configured with the environment the chart gives a step; the run is submitted
through Kafka like ``jup2kub submit`` does and followed on the status topic.
"""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any

from jup2kub.errors import Jup2KubError, KafkaUnavailableError
from jup2kub.plan import PipelinePlan
from jup2kub.run import remote
from jup2kub.run.executor import BLOCKED, DONE, FAILED, RUNNING, Run, explain, killed_in_cell
from jup2kub_runtime.contract.config import (
    CELL_OUTPUT_ENV,
    HEALTH_PORT_LINE,
    MAP_ROLE_ENV,
    Config,
)
from jup2kub_runtime.contract.errors import ErrorRecord, StepRuntimeError
from jup2kub_runtime.contract.states import StepState
from jup2kub_runtime.contract.tracing import SERVICE_NAME_ENV
from jup2kub_runtime.serving.transport import Transport


@dataclass
class _Runtime:
    proc: subprocess.Popen[bytes]
    log: IO[bytes]
    port: int  # 0: chosen by the runtime, read from its log once it says (``health_port``)
    env: dict[str, str]
    log_path: Path | None = None

    def health_port(self) -> int:
        """The health server's port; 0 while the runtime has not said it yet."""
        if self.port == 0 and self.log_path is not None:
            with contextlib.suppress(OSError):
                for line in self.log_path.read_text(errors="replace").splitlines():
                    if line.startswith(HEALTH_PORT_LINE):
                        self.port = int(line[len(HEALTH_PORT_LINE) :].strip())
                        break
        return self.port


class KafkaExecutor:
    """Starts one runtime per step on ``bootstrap`` and follows the run to its end."""

    mode = "kafka"
    resumable = False

    def __init__(
        self,
        bootstrap: str,
        timeout: float = 3600,
        python: str = sys.executable,
        environment: Mapping[str, str] | None = None,
        connect_timeout: float = 60,
        *,
        limit: float | None = None,
        on_output: Callable[[str, str], None] | None = None,
    ) -> None:
        self.bootstrap = bootstrap
        self.timeout = timeout
        #: the whole run's time limit in seconds (``--timeout``): then every runtime ends
        self.limit = limit if limit and limit > 0 else None
        #: gets each line the cells print (step, line), as they print it (``--log-output``)
        self.on_output = on_output
        #: how long the broker may take to answer (topics created, runtimes ready)
        self.connect_timeout = connect_timeout
        self.python = python
        #: extra variables for the runtimes (secret parameters): never written anywhere
        self.environment = dict(environment or {})
        self._runtimes: dict[str, _Runtime] = {}
        self._cell_files: dict[str, Path] = {}  # step -> what its cells print (``on_output``)

    def execute(self, run: Run) -> None:
        # The root steps' runtimes first: the run's first work waits for them alone. The others
        # start once the topics exist and the run is submitted: the roots have had a head start
        # of that long on two cores, the others are needed only once a root step is done. One
        # by one: close() stops those started before a failure.
        began = time.monotonic()
        for s in run.plan.steps:  # map steps too: their replicas' groups settle meanwhile
            if not s.after or s.spec.maps:
                self._start_replicas(run, s.name)
        # While the roots start: create the pipeline's topics, submit the run and follow it at
        # once. The root steps read it once they have joined their groups (a new group starts
        # at the earliest offset), and the status topic is read from its start, so nothing is
        # missed; a runtime that exits, or never becomes ready, ends the wait (_Watch).
        _ensure_topics(
            [
                runtime_env(run.plan, s.name, self.bootstrap, run.workdir, run.bundles[s.name], 0)
                for s in run.plan.steps
            ],
            self.connect_timeout,
        )
        remote.submit_run(
            self.bootstrap, run.plan.name, run.run_id, run.parameters, trace=run.trace
        )
        for s in run.plan.steps:
            if s.after and not s.spec.maps:
                self._start_replicas(run, s.name)
        self._follow(run, began)
        if self.limit is not None and time.monotonic() >= began + self.limit and not _settled(run):
            self._time_out(run)
            return
        for r in self._runtimes.values():  # they stop while the results are written
            if r.proc.poll() is None:
                r.proc.send_signal(signal.SIGTERM)
        self._settle(run)

    def _follow(self, run: Run, began: float) -> None:
        """Follow the run on the status topic until it ends (or its time limit): the steps'
        states, their runtimes watched (_Watch), what their cells print shown."""
        watch = _Watch(
            self._runtimes, run.logs, self.bootstrap, began, max(self.connect_timeout, 120)
        )
        printed = _CellOutput(self._cell_files, self.on_output)
        progress = _Progress(run)

        def changed(states: Mapping[str, Mapping[str, Any]]) -> None:
            printed.show()  # a step's last lines before its end is reported
            progress.update(states)

        def check(states: Mapping[str, Mapping[str, Any]]) -> None:
            watch.check(states)
            printed.show()

        wait = self.timeout
        if self.limit is not None:
            wait = min(wait, began + self.limit - time.monotonic())
        remote.wait_for_run(
            self.bootstrap,
            run.plan.name,
            run.run_id,
            list(run.steps),
            {s.name: list(s.downstream) for s in run.plan.steps},
            wait,
            changed,
            _Ticking(run, check),
        )
        printed.show(final=True)

    def _time_out(self, run: Run) -> None:
        """The run's time is up: every runtime ends now; a running step fails in the cell it
        was executing (its earlier cells' outputs kept), the steps not started are not run."""
        for r in self._runtimes.values():
            if r.proc.poll() is None:
                r.proc.kill()
        for r in self._runtimes.values():
            r.proc.wait()
        run.timed_out = self.limit
        note = f"the run's --timeout of {self.limit:g}s ended it"
        for name in run.plan.order:
            st = run.steps[name]
            if st.state in (DONE, FAILED):
                continue
            if run.store.is_complete(run.run_id, name):  # it finished as the time ran out
                st.state = DONE
                continue
            error: object = None
            with contextlib.suppress(StepRuntimeError, OSError):
                error = killed_in_cell(run.store, run.run_id, name, signal.SIGKILL, note)
            if error is None and st.state != RUNNING:
                st.state = BLOCKED
                continue
            st.state, st.finished = FAILED, time.monotonic()
            st.error = ErrorRecord.from_json(
                error or ErrorRecord(None, "RunTimeout", note.capitalize()).to_json()
            )
        run.notify()

    def close(self) -> None:
        """Stop the runtimes (after the results are written, or on failure)."""
        _stop(self._runtimes)
        self._runtimes = {}

    def _start_replicas(self, run: Run, step: str) -> None:
        """One runtime per step; a map step's elements are shared by J2K_MAP_REPLICAS
        (default 2) runtimes, as by the replicas of its Deployment on a cluster."""
        self._runtimes[step] = self._start(run, step)
        if run.plan.step(step).spec.maps:
            for n in range(2, map_replicas() + 1):
                self._runtimes[f"{step}#{n}"] = self._start(run, step, f"{step}-{n}", helper=True)

    def _start(
        self, run: Run, step: str, name: str | None = None, *, helper: bool = False
    ) -> _Runtime:
        # Port 0: the runtime binds one the system chooses (a port picked here and bound later
        # could be taken meanwhile, e.g. as another client's ephemeral port).
        log_path = run.logs / f"{name or step}.log"
        log = log_path.open("wb")
        env = runtime_env(run.plan, step, self.bootstrap, run.workdir, run.bundles[step], 0)
        env.update(self.environment)
        env[SERVICE_NAME_ENV] = step  # its spans' service, as the chart sets it
        if self.on_output is not None and not helper:  # a map's helpers: chunks, no cells
            self._cell_files[step] = run.logs / f"{step}.cells.txt"
            env[CELL_OUTPUT_ENV] = str(self._cell_files[step])
        if helper:  # runs map chunks only: joins no step group (no partition moves mid-step)
            env[MAP_ROLE_ENV] = "elements"
        proc = subprocess.Popen(
            [self.python, "-m", "jup2kub_runtime"],
            env=env,
            stdout=log,
            stderr=subprocess.STDOUT,
            cwd=Path.cwd(),
        )
        return _Runtime(proc, log, 0, env, log_path)

    def _settle(self, run: Run) -> None:
        """What never finished: blocked behind a failure, or timed out."""
        for name in run.plan.order:
            st = run.steps[name]
            if st.state in (DONE, FAILED, BLOCKED):
                continue
            if any(run.steps[u].state in (FAILED, BLOCKED) for u in run.plan.step(name).after):
                st.state = BLOCKED
            else:
                st.state = FAILED
                st.error = ErrorRecord(None, "Timeout", f"no result within {self.timeout:.0f} s")


def _settled(run: Run) -> bool:
    """Whether every step has ended, or waits behind one that failed (nothing more to do)."""
    stuck: set[str] = set()  # failed, or waiting behind a failure
    for name in run.plan.order:
        if run.steps[name].state == FAILED or stuck & set(run.plan.step(name).after):
            stuck.add(name)
        elif run.steps[name].state != DONE:
            return False
    return True


class _CellOutput:
    """What the runtimes' cells print (``--log-output``): each runtime also writes it to a file
    of its own (``J2K_CELL_OUTPUT``), read here as it grows and handed on line by line."""

    def __init__(
        self, files: Mapping[str, Path], on_output: Callable[[str, str], None] | None
    ) -> None:
        self.files = files
        self.on_output = on_output
        self.read: dict[str, int] = {}
        self.pending: dict[str, bytes] = {}

    def show(self, *, final: bool = False) -> None:
        if self.on_output is None:
            return
        for step, path in self.files.items():
            with contextlib.suppress(OSError), path.open("rb") as f:
                f.seek(self.read.get(step, 0))
                data = f.read()
                self.read[step] = self.read.get(step, 0) + len(data)
                self.pending[step] = self.pending.get(step, b"") + data
            *lines, rest = self.pending.get(step, b"").split(b"\n")
            if final and rest:
                lines, rest = [*lines, rest], b""
            self.pending[step] = rest
            for line in lines:
                self.on_output(step, line.decode(errors="replace"))


class _Progress:
    """Turns the status topic's latest message per step into the run's step states."""

    def __init__(self, run: Run) -> None:
        self.run = run
        self.started: dict[str, float] = {}

    def update(self, states: Mapping[str, Mapping[str, Any]]) -> None:
        now = time.monotonic()
        run = self.run
        for step, msg in states.items():
            st = run.steps.get(step)
            if st is None:
                continue
            state = msg.get("state")
            if state == StepState.BLOCKED:  # a step failed before its first cell: not started
                st.state = BLOCKED
                continue
            if st.started is None:
                st.started = self.started.setdefault(step, now)
            if state == StepState.SUCCEEDED:
                st.state, st.finished = DONE, st.finished or now
            elif state == StepState.FAILED:
                st.state, st.finished = FAILED, st.finished or now
                error = run.store.error(run.run_id, step) or msg.get("error")
                st.error = explain(run.pipeline, step, error)
            else:
                st.state = RUNNING
        run.notify()


def runtime_env(
    plan: PipelinePlan, step: str, bootstrap: str, state: Path, code: Path, port: int
) -> dict[str, str]:
    """The environment the chart gives a step's runtime, for a local process: fail fast (no
    retries), one partition, and relative paths resolved in the user's current directory like
    the notebook (and the embedded mode) does."""
    s = plan.step(step)
    config = Config.for_step(
        plan.name,
        step,
        s.after,
        s.downstream,
        bootstrap,
        state,
        code,
        port=port,
        health_host="127.0.0.1",
        max_retries=0,
        topic_partitions=1,
        run_files=False,
    )
    env = {k: v for k, v in os.environ.items() if not k.startswith("J2K_")}
    return {**env, **config.to_env(), "MPLBACKEND": "Agg", "PYTHONUNBUFFERED": "1"}


def map_replicas() -> int:
    """Runtimes per map step for ``run --kafka`` (J2K_MAP_REPLICAS, default 2)."""
    try:
        return max(1, int(os.environ.get("J2K_MAP_REPLICAS", "") or 2))
    except ValueError:
        return 2


def free_port() -> int:
    """A free TCP port on loopback (for a step's health server)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def ready(port: int) -> bool:
    """True once the runtime on ``port`` answers its readiness probe."""
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/readiness", timeout=2) as resp:
            return bool(resp.status == 200)
    except (OSError, urllib.error.URLError):
        return False


def _ensure_topics(envs: list[dict[str, str]], timeout: float = 60) -> None:
    """Create every topic of the pipeline as the step runtimes would (idempotent); a broker
    that does not answer within ``timeout`` s is an error naming its address."""
    configs = [Config.from_env(env) for env in envs]
    if not configs:
        return
    wanted = {
        t
        for c in configs
        for t in (*c.input_topics, *c.output_topics, c.status_topic, c.dead_letter_topic)
    }
    try:
        Transport(configs[-1]).ensure_topics(sorted(wanted), timeout=timeout)
    except StepRuntimeError as exc:
        raise KafkaUnavailableError(
            str(exc), hint=f"check that Kafka answers at {configs[-1].bootstrap_servers[0]}"
        ) from exc


class _Ticking:
    """``check`` after every poll, and the run's ``tick`` once a second (elapsed times, the
    cell a running step executes)."""

    def __init__(self, run: Run, check: Callable[[Mapping[str, Mapping[str, Any]]], None]) -> None:
        self.run = run
        self.check = check
        self.next = time.monotonic() + 1.0

    def __call__(self, states: Mapping[str, Mapping[str, Any]]) -> None:
        self.check(states)
        if time.monotonic() >= self.next:
            self.next = time.monotonic() + 1.0
            self.run.tick()


class _Watch:
    """While the run is followed: a runtime whose step has a final state is stopped (it serves
    this run alone); one that exits before that is an error at once, and so is one not ready
    ``timeout`` s after ``began``. A step that reported on the run took work, so it was ready;
    the others' readiness is asked only after ``grace`` s (asking imports the runtime's HTTP
    server, which it otherwise skips)."""

    def __init__(
        self,
        runtimes: Mapping[str, _Runtime],
        logs: Path,
        bootstrap: str,
        began: float,
        timeout: float = 120,
        grace: float = 10,
    ) -> None:
        self.runtimes = runtimes
        self.logs = logs
        self.bootstrap = bootstrap
        self.began = began
        self.timeout = timeout
        self.grace = grace
        self.unready = set(runtimes)
        self.stopping: set[str] = set()
        self._asked = 0.0

    def check(self, states: Mapping[str, Mapping[str, Any]]) -> None:
        for name, r in self.runtimes.items():
            step, _, replica = name.partition("#")
            final = states.get(step, {}).get("state") in remote.FINAL
            if final and name not in self.stopping:
                # Its part of the run is over: it stops (gracefully) while the others work.
                self.stopping.add(name)
                if r.proc.poll() is None:
                    r.proc.send_signal(signal.SIGTERM)
            if not final and r.proc.poll() is not None and not replica:
                # (an extra replica of a map step may go: the others take its share)
                raise Jup2KubError(
                    f"the runtime of step {name!r} exited (exit code {r.proc.returncode}) "
                    "before the step ended",
                    where=str(self.logs / f"{name}.log"),
                    hint=f"check that Kafka answers at {self.bootstrap}",
                )
        self.unready = {n for n in self.unready if n.partition("#")[0] not in states}
        now = time.monotonic()
        if not self.unready or now - self.began < self.grace or now - self._asked < 1.0:
            return
        self._asked = now
        self.unready = {
            n for n in self.unready if not (p := self.runtimes[n].health_port()) or not ready(p)
        }
        if self.unready and now - self.began > self.timeout:
            raise KafkaUnavailableError(
                f"steps {', '.join(sorted(self.unready))} did not become ready in "
                f"{self.timeout:.0f} s",
                hint=f"check that Kafka answers at {self.bootstrap}; logs are in {self.logs}",
            )


def _stop(runtimes: Mapping[str, _Runtime]) -> None:
    """SIGTERM every runtime still running, wait for them (kill after 30 s), close logs."""
    for r in runtimes.values():
        if r.proc.poll() is None:
            r.proc.send_signal(signal.SIGTERM)
    for r in runtimes.values():
        try:
            r.proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            r.proc.kill()
            r.proc.wait()
        r.log.close()
