"""``jup2kub run``: the pipeline on one machine, without Kafka, Kubernetes or Docker.

Each step runs in its own process (``python -m jup2kub_runtime.execute``), over the same state
store layout as on the cluster, so that values crossing a step boundary really go through
storage; independent steps run in parallel up to ``jobs``.
"""

from __future__ import annotations

import json
import os
import secrets
import subprocess
import sys
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import IO, Any

import nbformat

from jup2kub.bundle import pipeline_name, step_specs, write_bundles
from jup2kub.errors import InputError, Jup2KubError
from jup2kub.files import atomic_write_text
from jup2kub.notebook import Notebook
from jup2kub.pipeline import Pipeline
from jup2kub.results import results_notebook
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
    try:
        workdir.mkdir(parents=True, exist_ok=True)
        probe = workdir / f".probe-{os.getpid()}"
        probe.write_bytes(b"ok")
        probe.unlink()
    except OSError as exc:
        raise InputError(
            f"the work directory is not writable ({exc.strerror})",
            where=str(workdir),
            hint="pass --workdir with a writable directory that has free space",
        ) from exc


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
    store.record_run(
        run_id,
        parameters,
        notebook=nb.path,
        notebook_sha256=pipeline.notebook_sha256,
        mode="embedded",
    )
    specs = step_specs(pipeline)
    bundle_dir = workdir / "bundles" / pipeline.notebook_sha256[:16]
    bundles = write_bundles(specs, bundle_dir)
    steps = {s.name: StepRun(s.name) for s in pipeline.steps}
    upstream = {s.name: list(s.after) for s in pipeline.steps}
    for name, st in steps.items():
        if store.is_complete(run_id, name):
            st.state, st.reused = DONE, True
    logs = store.run_dir(run_id) / "logs"
    logs.mkdir(parents=True, exist_ok=True)
    limit = max(1, jobs or os.cpu_count() or 1)
    running: dict[str, _Process] = {}
    params_json = json.dumps(dict(parameters))
    env = {**os.environ, "PYTHONUNBUFFERED": "1", "MPLBACKEND": "Agg"}
    order = pipeline.topological_order()

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
                    notify()
                elif all(u == DONE for u in ups) and len(running) < limit:
                    log = (logs / f"{name}.log").open("wb")
                    proc = subprocess.Popen(
                        [
                            python,
                            "-m",
                            "jup2kub_runtime.execute",
                            "--spec",
                            str(bundles[name]),
                            "--state",
                            str(workdir),
                            "--run-id",
                            run_id,
                            "--params",
                            params_json,
                        ],
                        stdout=subprocess.PIPE,
                        stderr=log,
                        env=env,
                        cwd=Path.cwd(),
                    )
                    running[name] = _Process(name, proc, log)
                    st.state, st.started = RUNNING, time.monotonic()
                    notify()
            if not running:
                break
            time.sleep(0.02)
            for name, p in list(running.items()):
                code = p.proc.poll()
                if code is None:
                    continue
                p.proc.communicate()
                p.log.close()
                del running[name]
                st = steps[name]
                st.finished = time.monotonic()
                if code == 0:
                    st.state = DONE
                else:
                    st.state = FAILED
                    st.error = _failure(store, run_id, name, code, logs / f"{name}.log")
                notify()
    finally:
        for p in running.values():
            p.proc.kill()
            p.proc.wait()
            p.log.close()
    status = "succeeded" if all(s.state == DONE for s in steps.values()) else "failed"
    result_nb = results_notebook(nb.node, pipeline, store, run_id, parameters, status)
    run_dir = store.run_dir(run_id)
    notebook_path = run_dir / "result.ipynb"
    atomic_write_text(notebook_path, nbformat.writes(result_nb))
    summary = {
        "run_id": run_id,
        "pipeline": pipeline_name(pipeline),
        "notebook": nb.path,
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


def _failure(store: StateStore, run_id: str, step: str, code: int, log: Path) -> dict[str, Any]:
    error = store.error(run_id, step)
    if isinstance(error, dict) and error:
        return error
    text = log.read_text(errors="replace").strip() if log.exists() else ""
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


class RunFailed(Jup2KubError):
    """At least one step failed; its error names the step, the cell and the exception."""
