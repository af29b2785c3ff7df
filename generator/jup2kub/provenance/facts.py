"""What a run's crate says, as plain data: gathered from a local run's state directory or from
a release's step pods (both answer ``outputs``/``is_complete`` the same way), then handed to
``provenance.crate``. Kept apart from the crate's vocabulary so either source needs no JSON-LD."""

from __future__ import annotations

import hashlib
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Protocol

#: a step's or a run's state in the crate (schema.org's ActionStatusType)
COMPLETED, FAILED = "CompletedActionStatus", "FailedActionStatus"


class RunOutputs(Protocol):
    """A run's captured outputs, per step: the state store, or a release's pods."""

    def outputs(self, run_id: str, step: str) -> Any: ...

    def is_complete(self, run_id: str, step: str) -> bool: ...


@dataclass(frozen=True)
class OutputFile:
    """A file the run wrote, relative to the crate's root, with its sha256."""

    path: str
    sha256: str
    size: int
    name: str = ""
    media_type: str = "application/octet-stream"


@dataclass(frozen=True)
class Image:
    """The container image a step ran in (cluster runs), by digest when known."""

    reference: str
    digest: str | None = None


@dataclass
class StepFacts:
    """One step's execution: when, how it ended, what it wrote and where it ran."""

    name: str
    position: int
    status: str | None  # None: not run (an upstream failed, or the run stopped first)
    start: datetime | None = None
    end: datetime | None = None
    error: str | None = None
    reused: bool = False
    outputs: list[OutputFile] = field(default_factory=list)
    image: Image | None = None


@dataclass
class RunFacts:
    """One run, for its crate. ``parameters`` holds recorded values only; secrets are named
    in ``secrets`` (parameter -> the environment variable its value came from), never valued."""

    run_id: str
    pipeline: str
    notebook_name: str
    status: str
    start: datetime
    end: datetime
    parameters: Mapping[str, Any]
    secrets: Mapping[str, str]
    steps: list[StepFacts]
    outputs: list[OutputFile] = field(default_factory=list)
    error: str | None = None
    #: the local environment's lock (a file in the crate), for steps run on this machine
    environment: OutputFile | None = None
    python: str | None = None
    #: the notebook file as run, when the crate's copy differs from it (secrets redacted)
    source: OutputFile | None = None


def sha256_file(path: Path) -> str:
    """The file's sha256 (hex), read in chunks: value files may be large."""
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def output_file(root: Path, path: Path, name: str = "", media_type: str = "") -> OutputFile:
    """``path`` (inside ``root``) as the crate lists it."""
    return OutputFile(
        path.relative_to(root).as_posix(),
        sha256_file(path),
        path.stat().st_size,
        name or path.name,
        media_type or "application/octet-stream",
    )


def source_notebook(path: Path, copy: bytes) -> OutputFile | None:
    """The original notebook (path and sha256) when the crate's copy is not byte for byte
    the file: the copy leaves out secret literals, the hash still identifies what ran."""
    original = path.read_bytes()
    if original == copy:
        return None
    digest = hashlib.sha256(original).hexdigest()
    return OutputFile(str(path.absolute()), digest, len(original), path.name)


def utc(epoch: float) -> datetime:
    return datetime.fromtimestamp(epoch, tz=timezone.utc)


def step_facts(source: RunOutputs, run_id: str, steps: Sequence[str]) -> list[StepFacts]:
    """Each step's span, status and error from its captured outputs (the cells' own start
    times and durations: the same on a cluster as locally)."""
    return [_one_step(source, run_id, name, i) for i, name in enumerate(steps, start=1)]


def _one_step(source: RunOutputs, run_id: str, name: str, position: int) -> StepFacts:
    doc = source.outputs(run_id, name)
    doc = doc if isinstance(doc, dict) else {}
    spans = [_cell_span(c) for c in doc.get("cells", []) if isinstance(c, dict)]
    known = [s for s in spans if s is not None]
    error = doc.get("error") if isinstance(doc.get("error"), dict) else None
    complete = source.is_complete(run_id, name)
    status = COMPLETED if complete else FAILED if error is not None or known else None
    facts = StepFacts(name, position, status)
    if known:
        facts.start = utc(min(s for s, _ in known))
        facts.end = utc(max(e for _, e in known))
    if error is not None and not complete:
        where = f"cell {error['cell']}: " if isinstance(error.get("cell"), int) else ""
        facts.error = f"{where}{error.get('ename', 'Error')}: {error.get('evalue', '')}"
    return facts


def _cell_span(record: Mapping[str, Any]) -> tuple[float, float] | None:
    start, seconds = record.get("started_at"), record.get("seconds")
    if isinstance(start, (int, float)) and isinstance(seconds, (int, float)):
        return float(start), float(start) + float(seconds)
    return None
