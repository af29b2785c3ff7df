"""What dependency capture finds: per step the imports, the distributions providing them (with
their closure), data files, and the wheels locked for them."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from jup2kub.build.deps.target import Target


@dataclass(frozen=True)
class DataFile:
    """A file a step read that is neither code nor system file, nor written by an earlier step."""

    path: str  # absolute, as opened
    relative: str | None  # relative to the working directory the notebook ran in, if under it
    size: int
    sha256: str
    steps: tuple[str, ...]
    placement: str  # "image" (copied at ``path``) | "volume" (listed for the shared volume)

    def to_json(self) -> dict[str, Any]:
        return {
            "path": self.path,
            "relative": self.relative,
            "size": self.size,
            "sha256": self.sha256,
            "steps": list(self.steps),
            "placement": self.placement,
        }


@dataclass
class StepDeps:
    """One step's distributions: the direct ones with the reason for each, and the closure."""

    step: str
    direct: dict[str, set[str]] = field(default_factory=dict)  # dist -> reasons
    closure: dict[str, str] = field(default_factory=dict)  # dist -> version (incl. runtime)
    traced: set[str] = field(default_factory=set)  # found only by the trace
    inherited: dict[str, set[str]] = field(default_factory=dict)  # dist -> values needing it
    data_files: list[DataFile] = field(default_factory=list)


@dataclass
class Dependencies:
    """The capture for a whole pipeline."""

    pipeline: str
    target: Target
    runtime: dict[str, str]  # the runtime layer's closure: dist -> version
    steps: dict[str, StepDeps]
    warnings: list[str] = field(default_factory=list)
    trace_summary: dict[str, Any] | None = None
    inputs: dict[str, dict[str, str]] = field(default_factory=dict)  # step -> var -> source

    @property
    def data_files(self) -> list[DataFile]:
        seen: dict[str, DataFile] = {}
        for s in self.steps.values():
            for f in s.data_files:
                seen.setdefault(f.path, f)
        return [seen[k] for k in sorted(seen)]


@dataclass(frozen=True)
class Wheel:
    name: str
    version: str
    path: Path
    sha256: str
