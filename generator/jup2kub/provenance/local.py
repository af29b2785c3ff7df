"""A run's crate where its state is on this machine (``jup2kub run``, with or without
``--kafka``): the crate's root is the run's own directory (``WORKDIR/runs/RUN_ID/``), which
already holds its results notebook and summary and every step's stored values, so the crate
lists them where they are, one crate per run, and no run's crate can replace another's."""

from __future__ import annotations

import contextlib
import os
import platform
import sys
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

from jup2kub.files import atomic_write_bytes, atomic_write_text
from jup2kub.provenance.crate import write_crate
from jup2kub.provenance.facts import (
    COMPLETED,
    FAILED,
    OutputFile,
    RunFacts,
    StepFacts,
    output_file,
    source_notebook,
    step_facts,
)
from jup2kub_runtime.storage.state_store import StateStore

#: the notebook's copy in the crate: the workflow as it ran (a fixed name: never a step's)
NOTEBOOK = "notebook.ipynb"
#: the local environment's lock: Python and every installed distribution's version
ENVIRONMENT = "environment.txt"
PICKLE = "application/x-python-pickle"


@dataclass(frozen=True)
class LocalRun:
    """What the run itself knows and the state directory does not say."""

    run_id: str
    pipeline: str
    notebook: Path
    #: the notebook as the crate keeps it: without the literals of secret parameters
    notebook_copy: bytes
    steps: Sequence[str]
    parameters: Mapping[str, Any]
    secrets: Mapping[str, str]  # parameter -> environment variable (never its value)
    reused: frozenset[str]
    start: datetime
    end: datetime
    error: str | None = None  # set: the run failed, whatever its steps say (interrupted)


def write_local_crate(store: StateStore, run: LocalRun) -> Path:
    """Copy the notebook into the run's directory, write the environment's lock, and
    describe the run there; returns the metadata file's path."""
    root = store.run_dir(run.run_id)
    atomic_write_bytes(root / NOTEBOOK, run.notebook_copy)
    atomic_write_text(root / ENVIRONMENT, environment_lock())
    steps = step_facts(store, run.run_id, run.steps)
    for step in steps:
        step.reused = step.name in run.reused
        step.outputs = _values(store, root, run.run_id, step)
    done = all(s.status == COMPLETED for s in steps) and run.error is None
    status = COMPLETED if done else FAILED
    facts = RunFacts(
        run_id=run.run_id,
        pipeline=run.pipeline,
        notebook_name=run.notebook.name,
        status=status,
        start=run.start,
        end=run.end,
        parameters=dict(run.parameters),
        secrets=dict(run.secrets),
        steps=steps,
        outputs=_run_files(root),
        error=run.error if status == FAILED else None,
        environment=output_file(root, root / ENVIRONMENT, "the local environment's lock"),
        python=platform.python_version(),
        source=source_notebook(run.notebook, run.notebook_copy),
    )
    return write_crate(root, facts, output_file(root, root / NOTEBOOK, run.notebook.name))


def _run_files(root: Path) -> list[OutputFile]:
    media = {"result.ipynb": "application/x-ipynb+json", "summary.json": "application/json"}
    return [output_file(root, root / n, n, m) for n, m in media.items() if (root / n).is_file()]


def _values(store: StateStore, root: Path, run_id: str, step: StepFacts) -> list[OutputFile]:
    """The files holding the step's stored values (one per value, or per group)."""
    if step.status != COMPLETED:
        return []
    where = store.result_dir(run_id, step.name)
    files: dict[str, str] = {}
    for name, entry in store.manifest(run_id, step.name).items():
        if isinstance(entry, dict) and isinstance(entry.get("file"), str):
            files.setdefault(entry["file"], name)
    return [
        output_file(root, where / rel, f"value {name!r} of step {step.name}", PICKLE)
        for rel, name in sorted(files.items())
        if (where / rel).is_file()
    ]


def environment_lock() -> str:
    """Python's version and every installed distribution's, one ``name==version`` a line:
    what a local step ran with (a cluster step's image digest says it there). Read from the
    ``NAME-VERSION.dist-info`` directory names on ``sys.path`` (what ``importlib.metadata``
    finds), not from each distribution's metadata: 10x faster, and a run pays it."""
    found: dict[str, str] = {}
    for entry in sys.path:
        with contextlib.suppress(OSError):
            for name in sorted(os.listdir(entry or ".")):
                stem, dot, kind = name.rpartition(".")
                dist, dash, version = stem.partition("-")
                if dot and dash and kind in ("dist-info", "egg-info"):
                    found.setdefault(dist.replace("_", "-").lower(), version.split("-")[0])
    head = f"# python {platform.python_version()} ({platform.python_implementation()})\n"
    return head + "".join(f"{n}=={v}\n" for n, v in sorted(found.items()))
