"""The in-memory pipeline every later stage works from: its steps, the values each reads
(inputs, parameters) and writes, the code it re-runs, and the order steps may run in.

``dataflow`` builds it from a notebook's split and its cells' analyses; ``load`` is the way in.
"""

from __future__ import annotations

import graphlib
import hashlib
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from jup2kub.model.kale import PodSettings, SplitWarning
from jup2kub.model.learned import InPlaceChange
from jup2kub.model.secrets import SecretParameter
from jup2kub_runtime.contract.mapspec import MapSpec
from jup2kub_runtime.execution.randomness import RANDOM_STATE


def value_label(name: str) -> str:
    """How a value crossing steps is shown to people (the random state is no variable)."""
    return "(global random state)" if name == RANDOM_STATE else name


@dataclass(frozen=True)
class Definition:
    """Code re-executed at the start of a step: an import/def/class, a setup call, a prelude."""

    cell: int
    line: int
    source: str
    names: tuple[str, ...]
    kind: str  # "code" | "setup" | "star" | "prelude"


@dataclass(frozen=True)
class Diagnostic:
    step: str
    cell: int
    line: int
    message: str

    def __str__(self) -> str:
        return f"step {self.step!r}, cell {self.cell}, line {self.line}: {self.message}"


@dataclass(frozen=True)
class Unshippable:
    """A value that crosses a step boundary but cannot be stored (pickle refuses it)."""

    name: str
    what: str  # "an open file", "a lock", ...
    source: str  # the step defining it
    reader: str  # the step reading it
    cell: int
    line: int

    def __str__(self) -> str:
        return (
            f"{self.name!r} is {self.what} (cell {self.cell}, line {self.line}), defined in step "
            f"{self.source!r} and used in step {self.reader!r}; it cannot be stored between steps"
        )


@dataclass(frozen=True)
class Effect:
    """Something a step does outside the pipeline's values (``model.external``), as people read
    it (``str``), and the step's own cell doing it where the code shows that (None: a call found
    in its code, or code of another cell it runs)."""

    what: str
    cell: int | None = None

    def __str__(self) -> str:
        return self.what


@dataclass
class Step:
    name: str
    source_name: str
    cells: list[int]
    inputs: dict[str, str] = field(default_factory=dict)  # variable -> step that stores it
    parameters: set[str] = field(default_factory=set)
    outputs: set[str] = field(default_factory=set)
    after: list[str] = field(default_factory=list)
    replay: list[Definition] = field(default_factory=list)
    prev: list[str] = field(default_factory=list)
    file_deps: dict[str, set[str]] = field(default_factory=dict)  # upstream -> shared paths
    #: names this step binds or changes (its own values, even conditionally)
    changes: set[str] = field(default_factory=set)
    #: may-alias classes at the end of the step: outputs in one class are stored together
    aliases: list[frozenset[str]] = field(default_factory=list)
    #: the global random generators were seeded before this step / by its end
    seeded_before: bool = False
    seeded_after: bool = False
    #: why the step must run after all earlier steps and before all later ones (cell, reason)
    barrier: tuple[int, str] | None = None
    #: it reads files under computed names: it runs after every earlier step writing files
    opaque_read: bool = False
    writes_files: bool = False
    #: the files it writes under literal names (as written in the code; relative to the cwd)
    written_files: list[str] = field(default_factory=list)
    #: what it does outside the pipeline's values (files, programs, network, databases): it
    #: runs after every earlier step in notebook order (``external``), empty if nothing
    effects: list[Effect] = field(default_factory=list)
    #: outputs that cannot be stored but are only handed on in case a later step's conditional
    #: definition does not happen (``with open(..) as file`` then ``for file in ..``)
    placeholders: set[str] = field(default_factory=set)
    pod: PodSettings = field(default_factory=PodSettings)  # Kale's limit:/label:/annotation:
    #: why automatic grouping put these cells together (``inspect`` shows it)
    grouping: list[str] = field(default_factory=list)

    @property
    def groups(self) -> list[list[str]]:
        """Outputs that may share objects: stored together so identity survives."""
        found = [sorted(c & self.outputs) for c in self.aliases]
        return sorted(g for g in found if len(g) > 1)

    @property
    def readonly_inputs(self) -> list[str]:
        """Inputs the analysis expects this step to leave unchanged (the runtime checks)."""
        return sorted(set(self.inputs) - self.changes - {RANDOM_STATE})

    @property
    def random_guard(self) -> bool:
        """Seeded before, and no draw seen here: a draw would desynchronise later steps."""
        return self.seeded_before and RANDOM_STATE not in self.changes


@dataclass
class Pipeline:
    """The in-memory pipeline every later stage (images, chart, runs) works from.

    ``name`` is the pipeline's identity (chart name, topic prefix, image names, work directory):
    chosen once when the pipeline is built, never recomputed from the file name afterwards.
    """

    name: str
    notebook: str
    split: str
    parameters: dict[str, Any]
    parameter_cells: list[int]
    steps: list[Step]
    prelude: list[int]
    skipped: list[int]
    python: dict[int, str]  # cell index -> the cell as plain Python
    notebook_sha256: str
    warnings: list[Diagnostic] = field(default_factory=list)
    unshippable: list[Unshippable] = field(default_factory=list)
    split_warnings: list[SplitWarning] = field(default_factory=list)  # Kale tags not honoured
    #: parameters holding credentials: their literals are not in ``python`` (None there)
    secret_parameters: list[SecretParameter] = field(default_factory=list)
    #: per step, whether the step cache may reuse it (``cacheability.StepCache``, set by the
    #: loader: the analysis of the cells is needed)
    cache: dict[str, Any] = field(default_factory=dict)
    #: parameters whose default is not a literal: their expression as written (``parameters``
    #: holds None for them; a run's value for them is not type-checked)
    parameter_expressions: dict[str, str] = field(default_factory=dict)
    #: data-parallel map cells (``model.mapping``): cell index -> what the runtime runs
    maps: dict[int, MapSpec] = field(default_factory=dict)
    #: cells tagged ``raises-exception`` (papermill's, nbclient's): an error there is recorded in
    #: the cell's outputs and its step goes on (set by the loader)
    raising_cells: list[int] = field(default_factory=list)
    #: what runs saw its cells change in place that the analysis did not (``model.learned``):
    #: planned for as if the analysis had seen it
    learned: list[InPlaceChange] = field(default_factory=list)

    def step_maps(self, step: Step) -> list[MapSpec]:
        return [self.maps[i] for i in step.cells if i in self.maps]

    def step(self, name: str) -> Step:
        for s in self.steps:
            if s.name == name:
                return s
        raise KeyError(name)

    @property
    def parameters_source(self) -> str:
        return "".join(self.python[i] for i in self.parameter_cells)

    def downstream(self, name: str) -> list[str]:
        return [s.name for s in self.steps if name in s.after]

    def levels(self) -> list[list[str]]:
        """Waves of steps: every step runs after all steps of earlier waves it depends on, and
        steps within one wave have no path between them, so they can run in parallel."""
        level: dict[str, int] = {}
        for name in self.topological_order():
            s = self.step(name)
            level[name] = 1 + max((level[a] for a in s.after), default=-1)
        waves: list[list[str]] = [[] for _ in range(max(level.values(), default=-1) + 1)]
        for s in self.steps:
            waves[level[s.name]].append(s.name)
        return waves

    def topological_order(self) -> list[str]:
        return stable_order({s.name: s.after for s in self.steps})

    def to_json(self) -> dict[str, Any]:
        """The ``jup2kub inspect --json`` document (a stable interface for other tools)."""
        return {
            "name": self.name,
            "notebook": self.notebook,
            "split": self.split,
            "parameters": dict(self.parameters),
            "steps": [
                {
                    "name": s.name,
                    "cells": list(s.cells),
                    "inputs": sorted(s.inputs),
                    "parameters": sorted(s.parameters),
                    "outputs": sorted(s.outputs),
                    "after": list(s.after),
                    **({"grouping": list(s.grouping)} if s.grouping else {}),
                    # why it runs after every earlier step (``model.external``)
                    **({"effects": [str(e) for e in s.effects]} if s.effects else {}),
                    **({"cache": self.cache[s.name].to_json()} if s.name in self.cache else {}),
                    **({"map": map_summary(self.step_maps(s)[0])} if self.step_maps(s) else {}),
                }
                for s in self.steps
            ],
            **({"learned": [c.to_json() for c in self.learned]} if self.learned else {}),
            # non-literal defaults as written (their "parameters" value is null)
            **(
                {"parameter_expressions": dict(self.parameter_expressions)}
                if self.parameter_expressions
                else {}
            ),
        }


def map_summary(m: MapSpec) -> dict[str, Any]:
    """How ``inspect`` shows a map cell."""
    return {
        "cell": m.cell,
        "line": m.line,
        "form": m.form,
        "over": m.iterable,
        "into": [m.result] if m.result else list(m.accumulators),
        "chunk": m.chunk if m.chunk is not None else "auto",
    }


def stable_order(graph: Mapping[str, Iterable[str]]) -> list[str]:
    """``graph``'s nodes (node -> the nodes it comes after) in an order that respects it, ties
    in ``graph``'s own order; graphlib.CycleError if there is none."""
    position = {n: i for i, n in enumerate(graph)}
    sorter: graphlib.TopologicalSorter[str] = graphlib.TopologicalSorter(graph)
    sorter.prepare()
    order: list[str] = []
    while sorter.is_active():
        ready = sorted(sorter.get_ready(), key=position.__getitem__)
        order.extend(ready)
        sorter.done(*ready)
    return order


def step_code(pipeline: Pipeline, step: Step) -> str:
    """The code the step's image runs: replayed definitions, then its cells."""
    parts = [d.source for d in step.replay] + [pipeline.python[i] for i in step.cells]
    return "\n".join(p.rstrip("\n") for p in parts) + "\n"


def code_hash(code: str) -> str:
    """What the catalog records of a step's code (a composition checks it still matches)."""
    return hashlib.sha256(code.encode()).hexdigest()
