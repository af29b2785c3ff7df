"""``jup2kub run``: the pipeline on one machine, without Kafka, Kubernetes or Docker.

Each step runs in its own process (``python -m jup2kub_runtime.step_run``), over the same state
store layout as on the cluster, so that values crossing a step boundary really go through
storage; independent steps run in parallel up to ``jobs``.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import secrets
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import IO, Any

import nbformat

from jup2kub import remote
from jup2kub.bundle import pipeline_name, step_specs, write_bundles
from jup2kub.errors import InputError, Jup2KubError
from jup2kub.files import atomic_write_text
from jup2kub.notebook import Notebook
from jup2kub.pipeline import Pipeline
from jup2kub.results import RunSource, results_notebook
from jup2kub_runtime import STEP_RUN_MODULE, topics
from jup2kub_runtime.state import StateStore

WAITING, RUNNING, DONE, FAILED, BLOCKED = "waiting", "running", "done", "failed", "blocked"


@dataclass
class StepRun:
    name: str
    state: str = WAITING
    started: float | None = None
    finished: float | None = None
    error: dict[str, Any] | None = None
    reused: bool = False  # completed by an earlier attempt of this run (--resume)

    @property
    def seconds(self) -> float | None:
        if self.started is None:
            return None
        return (self.finished or time.monotonic()) - self.started


@dataclass
class RunResult:
    run_id: str
    workdir: Path
    steps: dict[str, StepRun]
    notebook: Path
    summary: Path
    parameters: dict[str, Any] = field(default_factory=dict)

    @property
    def ok(self) -> bool:
        return all(s.state == DONE for s in self.steps.values())

    @property
    def failed(self) -> list[StepRun]:
        return [s for s in self.steps.values() if s.state == FAILED]


def new_run_id() -> str:
    stamp = datetime.now(timezone.utc).strftime("%Y%m%dT%H%M%S")
    return f"run-{stamp}-{secrets.token_hex(3)}"


def _writable(workdir: Path) -> None:
    probe = workdir / f".probe-{os.getpid()}"
    try:
        workdir.mkdir(parents=True, exist_ok=True)
        probe.write_bytes(b"ok")
    except OSError as exc:
        with contextlib.suppress(OSError):
            probe.unlink(missing_ok=True)
        raise InputError(
            f"the work directory is not writable ({exc.strerror})",
            where=str(workdir),
            hint="pass --workdir with a writable directory that has free space",
        ) from exc
    probe.unlink()


class _Process:
    def __init__(self, step: str, proc: subprocess.Popen[bytes], log: IO[bytes]) -> None:
        self.step = step
        self.proc = proc
        self.log = log


def run_pipeline(
    nb: Notebook,
    pipeline: Pipeline,
    workdir: Path,
    parameters: Mapping[str, Any],
    *,
    jobs: int | None = None,
    run_id: str | None = None,
    on_change: Callable[[dict[str, StepRun]], None] | None = None,
    python: str = sys.executable,
) -> RunResult:
    """Run every step not yet complete for ``run_id`` (a new run when None)."""
    workdir = Path(workdir)
    _writable(workdir)
    store = StateStore(workdir)
    resuming = run_id is not None
    run_id = run_id or new_run_id()
    if resuming:
        info = store.run_info(run_id)
        if info is None:
            raise InputError(
                f"there is no run {run_id!r} to resume",
                where=str(workdir),
                hint="list runs with `ls WORKDIR/runs`, or pass the --workdir of that run",
            )
        if info.get("notebook_sha256") not in (None, pipeline.notebook_sha256):
            raise InputError(
                f"run {run_id!r} was made from a different version of the notebook",
                hint="start a new run; resuming would mix results of two notebook versions",
            )
        parameters = dict(info.get("parameters") or {}) | dict(parameters)
    bundles, logs = _start_run(nb, pipeline, store, workdir, run_id, parameters, "embedded")
    steps = {s.name: StepRun(s.name) for s in pipeline.steps}
    upstream = {s.name: list(s.after) for s in pipeline.steps}
    for name, st in steps.items():
        if store.is_complete(run_id, name):
            st.state, st.reused = DONE, True
    limit = max(1, jobs or os.cpu_count() or 1)
    running: dict[str, _Process] = {}
    #: started ahead (``--wait``): imports done, waiting for "go" once the upstream is done
    ready: dict[str, _Process] = {}
    params_json = json.dumps(dict(parameters))
    env = {**os.environ, "PYTHONUNBUFFERED": "1", "MPLBACKEND": "Agg"}
    order = pipeline.topological_order()

    def spawn(name: str, *, wait: bool) -> _Process:
        # stderr goes outside WORKDIR first: it must survive a full work disk
        log = tempfile.TemporaryFile()  # noqa: SIM115 (closed when the step ends)
        proc = subprocess.Popen(
            [
                python,
                "-m",
                STEP_RUN_MODULE,
                "--spec",
                str(bundles[name]),
                "--state",
                str(workdir),
                "--run-id",
                run_id,
                "--params",
                params_json,
                *(["--wait"] if wait else []),
            ],
            stdin=subprocess.PIPE if wait else subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=log,
            env=env,
            cwd=Path.cwd(),
        )
        return _Process(name, proc, log)

    def notify() -> None:
        if on_change is not None:
            on_change(steps)

    notify()
    try:
        while True:
            for name in order:
                st = steps[name]
                if st.state != WAITING:
                    continue
                ups = [steps[u].state for u in upstream[name]]
                if any(u in (FAILED, BLOCKED) for u in ups):
                    st.state = BLOCKED
                    if name in ready:
                        _cancel(ready.pop(name))
                    notify()
                elif all(u == DONE for u in ups) and len(running) < limit:
                    p = ready.pop(name, None)
                    if p is None or not _go(p):
                        if p is not None:
                            _cancel(p)
                        p = spawn(name, wait=False)
                    running[name] = p
                    st.state, st.started = RUNNING, time.monotonic()
                    notify()
                elif (name not in ready and ups and all(u in (RUNNING, DONE) for u in ups)
                      and len(running) < limit):
                    # A core is free while the upstream runs: start the process now, so that
                    # Python's start and the imports are done when the upstream finishes.
                    ready[name] = spawn(name, wait=True)
            if not running:
                break
            time.sleep(0.02)
            for name, p in list(running.items()):
                code = p.proc.poll()
                if code is None:
                    continue
                p.proc.communicate()
                p.log.seek(0)
                stderr = p.log.read().decode(errors="replace")
                p.log.close()
                with contextlib.suppress(OSError):
                    (logs / f"{name}.log").write_text(stderr)
                del running[name]
                st = steps[name]
                st.finished = time.monotonic()
                if code == 0:
                    st.state = DONE
                else:
                    st.state = FAILED
                    st.error = _explain(pipeline, name, _failure(store, run_id, name, code, stderr))
                notify()
    finally:
        for p in running.values():
            p.proc.kill()
            p.proc.wait()
            p.log.close()
        for p in ready.values():
            _cancel(p)
    return _finish(nb, pipeline, store, workdir, run_id, steps, parameters, "embedded")


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


def _start_run(
    nb: Notebook,
    pipeline: Pipeline,
    store: StateStore,
    workdir: Path,
    run_id: str,
    parameters: Mapping[str, Any],
    mode: str,
) -> tuple[dict[str, Path], Path]:
    """Record the run, write the step bundles; returns them and the run's log directory."""
    store.record_run(run_id, parameters, notebook=nb.path,
                     notebook_sha256=pipeline.notebook_sha256, mode=mode)
    bundles = write_bundles(step_specs(pipeline),
                            workdir / "bundles" / pipeline.notebook_sha256[:16])
    logs = store.run_dir(run_id) / "logs"
    logs.mkdir(parents=True, exist_ok=True)
    return bundles, logs


def _finish(
    nb: Notebook,
    pipeline: Pipeline,
    store: StateStore,
    workdir: Path,
    run_id: str,
    steps: dict[str, StepRun],
    parameters: Mapping[str, Any],
    mode: str,
) -> RunResult:
    """Write the results notebook and the summary (atomically) and return the result."""
    status = "succeeded" if all(s.state == DONE for s in steps.values()) else "failed"
    try:
        result_nb = results_notebook(nb.node, pipeline, store, run_id, parameters, status)
        run_dir = store.run_dir(run_id)
        notebook_path = run_dir / "result.ipynb"
        atomic_write_text(notebook_path, nbformat.writes(result_nb))
        summary = {
            "run_id": run_id,
            "pipeline": pipeline_name(pipeline),
            "notebook": nb.path,
            "mode": mode,
            "status": status,
            "parameters": dict(parameters),
            "result_notebook": str(notebook_path),
            "steps": {
                name: {
                    "status": st.state,
                    "seconds": None if st.seconds is None else round(st.seconds, 3),
                    "reused": st.reused,
                    "outputs": str(store.step_dir(run_id, name)),
                    **({"error": st.error} if st.error else {}),
                }
                for name, st in steps.items()
            },
        }
        summary_path = run_dir / "summary.json"
        atomic_write_text(summary_path, json.dumps(summary, indent=2) + "\n")
        return RunResult(run_id, workdir, steps, notebook_path, summary_path, dict(parameters))
    except OSError as exc:
        failed = "; ".join(
            f"step {st.name!r}: {(st.error or {}).get('evalue', 'failed')}"
            for st in steps.values()
            if st.state == FAILED
        )
        raise RunStorageError(
            f"cannot write the results of run {run_id!r} ({exc.strerror or exc})"
            + (f"; {failed}" if failed else ""),
            where=str(workdir),
            hint=f"free space (or pick another --workdir), then `--resume {run_id}`: the steps "
            "that completed are kept, and no result was written as if complete",
        ) from exc


def _explain(pipeline: Pipeline, step: str, error: Any) -> dict[str, Any] | None:
    """Name the steps that needed a value which could not be stored (the runtime only knows
    the step that made it)."""
    if not isinstance(error, dict):
        return None
    match = re.search(r"variable '(\w+)'", str(error.get("evalue", "")))
    if error.get("ename") == "OutputError" and match:
        readers = [s.name for s in pipeline.steps if s.inputs.get(match.group(1)) == step]
        if readers:
            error = {
                **error,
                "evalue": f"{error['evalue']} (needed by step "
                f"{', '.join(repr(r) for r in readers)})",
            }
    return dict(error)


def _failure(store: StateStore, run_id: str, step: str, code: int, stderr: str) -> dict[str, Any]:
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
    return {
        "cell": None,
        "ename": "StepProcessError",
        "evalue": text[-2000:] or f"exit code {code}",
        "traceback": [],
    }


class RunStorageError(Jup2KubError):
    """The work directory ran out of space or became unwritable during a run."""


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _ready(port: int) -> bool:
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/readiness", timeout=2) as resp:
            return bool(resp.status == 200)
    except (OSError, urllib.error.URLError):
        return False


def runtime_env(
    pipeline: Pipeline, step: str, bootstrap: str, state: Path, code: Path, port: int
) -> dict[str, str]:
    """The environment the chart gives a step's runtime, for a local process."""
    name = pipeline_name(pipeline)
    s = pipeline.step(step)
    inputs = [topics.edge_topic(name, u, step) for u in s.after] or [topics.runs_topic(name)]
    outputs = [topics.edge_topic(name, step, d) for d in pipeline.downstream(step)]
    env = {k: v for k, v in os.environ.items() if not k.startswith("J2K_")}
    env.update(
        {
            "J2K_BOOTSTRAP_SERVERS": bootstrap,
            "J2K_PIPELINE": name,
            "J2K_STEP": step,
            "J2K_INPUT_TOPICS": ",".join(inputs),
            "J2K_OUTPUT_TOPICS": ",".join(outputs),
            "J2K_STATE_PATH": str(state),
            "J2K_CODE_PATH": str(code),
            "J2K_PORT": str(port),
            "J2K_HEALTH_HOST": "127.0.0.1",
            "J2K_MAX_RETRIES": "0",
            "J2K_TOPIC_PARTITIONS": "1",
        # like the notebook (and the embedded mode): relative paths resolve in the user's cwd
        "J2K_RUN_FILES": "0",
            "MPLBACKEND": "Agg",
            "PYTHONUNBUFFERED": "1",
        }
    )
    return env


def run_pipeline_kafka(
    nb: Notebook,
    pipeline: Pipeline,
    workdir: Path,
    parameters: Mapping[str, Any],
    bootstrap: str,
    *,
    on_change: Callable[[dict[str, StepRun]], None] | None = None,
    timeout: float = 3600,
    python: str = sys.executable,
) -> RunResult:
    """The cluster's data path on one machine: one runtime process per step on ``bootstrap``,
    and the run submitted through Kafka like ``jup2kub submit`` does."""
    workdir = Path(workdir).absolute()
    _writable(workdir)
    store = StateStore(workdir)
    run_id = new_run_id()
    bundles, logs = _start_run(nb, pipeline, store, workdir, run_id, parameters, "kafka")
    steps = {s.name: StepRun(s.name) for s in pipeline.steps}
    procs: dict[str, tuple[subprocess.Popen[bytes], IO[bytes], int]] = {}
    envs: dict[str, dict[str, str]] = {}
    try:
        for s in pipeline.steps:
            port = _free_port()
            log = (logs / f"{s.name}.log").open("wb")
            env = envs[s.name] = runtime_env(pipeline, s.name, bootstrap, workdir,
                                              bundles[s.name], port)
            proc = subprocess.Popen(
                [python, "-m", "jup2kub_runtime"],
                env=env,
                stdout=log,
                stderr=subprocess.STDOUT,
                cwd=Path.cwd(),
            )
            procs[s.name] = (proc, log, port)
        # While the steps start: create the pipeline's topics and submit the run at once. The
        # root steps read it once they have joined their groups (a new group starts at the
        # earliest offset), and the status topic is read from its start, so nothing is missed.
        _ensure_topics(pipeline, envs)
        name = pipeline_name(pipeline)
        remote.submit_run(bootstrap, name, run_id, parameters)
        _wait_ready(procs, logs, bootstrap)
        started: dict[str, float] = {}

        def update(states: Mapping[str, Mapping[str, Any]]) -> None:
            now = time.monotonic()
            for step, msg in states.items():
                st = steps.get(step)
                if st is None:
                    continue
                state = msg.get("state")
                if st.started is None:
                    st.started = started.setdefault(step, now)
                if state == "succeeded":
                    st.state, st.finished = DONE, st.finished or now
                elif state == "failed":
                    st.state, st.finished = FAILED, st.finished or now
                    st.error = _explain(
                        pipeline, step, store.error(run_id, step) or msg.get("error")
                    )
                else:
                    st.state = RUNNING
            if on_change is not None:
                on_change(steps)

        downstream = {s.name: pipeline.downstream(s.name) for s in pipeline.steps}
        remote.wait_for_run(bootstrap, name, run_id, list(steps), downstream, timeout, update)
    except BaseException:
        _stop(procs)
        raise
    for proc, _handle, _port in procs.values():  # they stop while the results are written
        if proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
    try:
        for name in pipeline.topological_order():  # what never finished: blocked, or timed out
            st = steps[name]
            if st.state in (DONE, FAILED):
                continue
            if any(steps[u].state in (FAILED, BLOCKED) for u in pipeline.step(name).after):
                st.state = BLOCKED
            else:
                st.state = FAILED
                st.error = {
                    "cell": None,
                    "ename": "Timeout",
                    "traceback": [],
                    "evalue": f"no result within {timeout:.0f} s",
                }
        return _finish(nb, pipeline, store, workdir, run_id, steps, parameters, "kafka")
    finally:
        _stop(procs)


def _ensure_topics(pipeline: Pipeline, envs: Mapping[str, Mapping[str, str]]) -> None:
    """Create every topic of the pipeline as the step runtimes would (idempotent)."""
    from jup2kub_runtime.config import Config
    from jup2kub_runtime.errors import StepRuntimeError
    from jup2kub_runtime.transport import Transport

    wanted: set[str] = set()
    cfg = None
    for env in envs.values():
        cfg = Config.from_env(env)
        wanted.update([*cfg.input_topics, *cfg.output_topics, cfg.status_topic,
                       cfg.dead_letter_topic])
    if cfg is None:
        return
    try:
        Transport(cfg).ensure_topics(sorted(wanted), timeout=60)
    except StepRuntimeError as exc:
        raise remote.KafkaUnavailableError(
            str(exc), hint=f"check that Kafka answers at {cfg.bootstrap_servers[0]}"
        ) from exc


def _wait_ready(procs: Mapping[str, tuple[subprocess.Popen[bytes], IO[bytes], int]],
                logs: Path, bootstrap: str, timeout: float = 120) -> None:
    """Until every step's runtime answers ready; one that exits first is an error."""
    deadline = time.monotonic() + timeout
    pending = set(procs)
    while pending:
        for name in sorted(pending):
            proc, _, port = procs[name]
            if proc.poll() is not None:
                raise Jup2KubError(
                    f"the runtime of step {name!r} exited at start "
                    f"(exit code {proc.returncode})",
                    where=str(logs / f"{name}.log"),
                    hint=f"check that Kafka answers at {bootstrap}",
                )
            if _ready(port):
                pending.discard(name)
        if not pending:
            return
        if time.monotonic() > deadline:
            raise remote.KafkaUnavailableError(
                f"steps {', '.join(sorted(pending))} did not become ready in {timeout:.0f} s",
                hint=f"check that Kafka answers at {bootstrap}; logs are in {logs}",
            )
        time.sleep(0.05)


def _stop(procs: Mapping[str, tuple[subprocess.Popen[bytes], IO[bytes], int]]) -> None:
    """SIGTERM every runtime still running, wait for them (kill after 30 s), close logs."""
    for proc, _handle, _port in procs.values():
        if proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
    for proc, handle, _port in procs.values():
        try:
            proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
        handle.close()


def write_results(nb: Notebook, pipeline: Pipeline, source: Path | RunSource, run_id: str,
                  target: Path) -> str:
    """Assemble a results notebook from a state directory (or another RunSource, e.g. a
    release's pods); returns the run's status."""
    if isinstance(source, Path):
        store = StateStore(source)
        if store.run_info(run_id) is None and not store.run_dir(run_id).is_dir():
            raise InputError(
                f"there is no run {run_id!r}",
                where=str(source),
                hint="check the run id and the state directory",
            )
        source = store
    info = source.run_info(run_id)
    parameters = dict((info or {}).get("parameters") or {})
    done = all(source.is_complete(run_id, s.name) for s in pipeline.steps)
    status = "succeeded" if done else "incomplete"
    result = results_notebook(nb.node, pipeline, source, run_id, parameters, status)
    atomic_write_text(target, nbformat.writes(result))
    return status
