"""A crate for ``jup2kub results``: a run read from a release's step pods (or a state
directory), whose files stay where they are. The crate's root is a directory of its own beside
the results notebook (``OUT-crate/`` for ``OUT.ipynb``), holding copies of the notebook and of
the results notebook, so it is whole wherever it is moved and never clobbers another run's."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from jup2kub.files import atomic_write_bytes
from jup2kub.provenance.crate import write_crate
from jup2kub.provenance.facts import (
    COMPLETED,
    FAILED,
    Image,
    RunFacts,
    RunOutputs,
    output_file,
    source_notebook,
    step_facts,
    utc,
)

#: a run still going: some step has neither completed nor failed
ACTIVE = "ActiveActionStatus"
NOTEBOOK = "notebook.ipynb"
RESULTS = "result.ipynb"


@dataclass(frozen=True)
class ReadRun:
    """A run as ``results`` read it."""

    run_id: str
    pipeline: str
    notebook: Path
    notebook_copy: bytes  # without the literals of secret parameters
    results: Path  # the results notebook just written
    steps: Sequence[str]
    parameters: Mapping[str, Any]
    secrets: Mapping[str, str]
    images: Mapping[str, Image] = field(default_factory=dict)  # step -> its image, if known


def crate_dir(results: Path) -> Path:
    """Where the crate of the results notebook ``results`` goes."""
    return results.with_name(f"{results.stem}-crate")


def write_results_crate(source: RunOutputs, run: ReadRun) -> Path:
    """Describe the run in ``crate_dir(run.results)``; returns the metadata file's path."""
    root = crate_dir(run.results)
    root.mkdir(parents=True, exist_ok=True)
    atomic_write_bytes(root / NOTEBOOK, run.notebook_copy)
    atomic_write_bytes(root / RESULTS, run.results.read_bytes())
    steps = step_facts(source, run.run_id, run.steps)
    for step in steps:
        step.image = run.images.get(step.name)
    spans = [s for s in steps if s.start is not None and s.end is not None]
    first = min((s.start for s in spans if s.start), default=None)
    last = max((s.end for s in spans if s.end), default=None)
    now = utc(root.stat().st_mtime)
    facts = RunFacts(
        run_id=run.run_id,
        pipeline=run.pipeline,
        notebook_name=run.notebook.name,
        status=_status([s.status for s in steps]),
        start=first or now,
        end=last or now,
        parameters=dict(run.parameters),
        secrets=dict(run.secrets),
        steps=steps,
        outputs=[output_file(root, root / RESULTS, run.results.name, "application/x-ipynb+json")],
        error="; ".join(f"step {s.name!r}: {s.error}" for s in steps if s.error) or None,
        source=source_notebook(run.notebook, run.notebook_copy),
    )
    return write_crate(root, facts, output_file(root, root / NOTEBOOK, run.notebook.name))


def _status(states: Sequence[str | None]) -> str:
    if FAILED in states:
        return FAILED
    return COMPLETED if all(s == COMPLETED for s in states) else ACTIVE
