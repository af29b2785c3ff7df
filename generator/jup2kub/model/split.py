"""Cutting a notebook into steps.

Five modes, chosen with ``--split``: Kale cell tags, Quarto-style ``#| step:`` markers, markdown
headings, one step per code cell, and ``auto`` (the first of those that the notebook uses).
A split only groups cells; which values flow between the groups is ``analysis``'s job.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass, field

import yaml

from jup2kub.errors import DuplicateStepError, InputError, NoCodeError, SplitError
from jup2kub.model.names import MAX_NAME, dns_label
from jup2kub.model.notebook import Cell, Notebook

SPLIT_MODES = ("auto", "tags", "markers", "headings", "cells")
IMPLICIT_FIRST_STEP = "setup"

PARAMETER_TAGS = frozenset({"parameters", "pipeline-parameters"})
PRELUDE_TAGS = frozenset({"imports", "functions"})
METRICS_TAG = "pipeline-metrics"
SKIP_TAG = "skip"
_STEP_TAG = re.compile(r"^(?:step|block):(.+)$")
_PREV_TAG = re.compile(r"^prev:(.+)$")
_OPTION_LINE = re.compile(r"^#\|\s?(.*)$")
_HEADING = re.compile(r"^(#{1,6})\s+(.+?)\s*#*\s*$")
_FENCE = re.compile(r"^\s*(```|~~~)")


@dataclass
class StepCells:
    """One step as the split sees it: a name and the code cells that run in it, in order."""

    name: str
    source_name: str
    cells: list[int]
    prev: list[tuple[str, int]] = field(default_factory=list)  # (target as written, cell index)
    explicit: bool = True  # named by the user (tags, markers) rather than derived


@dataclass
class Split:
    mode: str
    steps: list[StepCells]
    prelude: list[int] = field(default_factory=list)  # Kale imports/functions: run in every step
    parameters: list[int] = field(default_factory=list)
    skipped: list[int] = field(default_factory=list)
    metrics: list[int] = field(default_factory=list)


def _unique(name: str, taken: set[str]) -> str:
    if name not in taken:
        return name
    n = 2
    while True:
        suffix = f"-{n}"
        candidate = name[: MAX_NAME - len(suffix)].rstrip("-") + suffix
        if candidate not in taken:
            return candidate
        n += 1


def _is_code(cell: Cell) -> bool:
    return cell.cell_type == "code" and bool(cell.source.strip())


def cell_options(source: str) -> dict[str, object]:
    """Quarto-style ``#|`` options at the top of a cell, parsed as YAML (empty if none/invalid)."""
    lines = []
    for line in source.splitlines():
        m = _OPTION_LINE.match(line)
        if not m:
            break
        lines.append(m.group(1))
    if not lines:
        return {}
    try:
        data = yaml.safe_load("\n".join(lines))
    except yaml.YAMLError:
        return {}
    return data if isinstance(data, dict) else {}


def _option_list(value: object) -> list[str]:
    if value is None:
        return []
    if isinstance(value, (list, tuple)):
        return [str(v) for v in value]
    return [str(value)]


def _is_parameters(cell: Cell) -> bool:
    if PARAMETER_TAGS.intersection(cell.tags):
        return True
    return "parameters" in _option_list(cell_options(cell.source).get("tags"))


def _step_tag(cell: Cell, path: str) -> str | None:
    names = [m.group(1).strip() for t in cell.tags if (m := _STEP_TAG.match(t))]
    if len(set(names)) > 1:
        raise SplitError(
            f"the cell has several step tags: {', '.join('step:' + n for n in names)}",
            where=f"{path}: cell {cell.index}",
            hint="keep one step tag per cell",
        )
    return names[0] if names else None


def _marker(cell: Cell) -> str | None:
    value = cell_options(cell.source).get("step")
    return None if value is None else str(value).strip()


def headings(cell: Cell) -> list[tuple[int, str]]:
    """ATX headings of a markdown cell, outside fenced code: (level, text)."""
    found: list[tuple[int, str]] = []
    fenced = False
    for line in cell.source.splitlines():
        if _FENCE.match(line):
            fenced = not fenced
            continue
        if fenced:
            continue
        m = _HEADING.match(line)
        if m:
            found.append((len(m.group(1)), _plain(m.group(2))))
    return found


def _plain(markdown: str) -> str:
    text = re.sub(r"!?\[([^\]]*)\]\([^)]*\)", r"\1", markdown)  # links and images
    text = re.sub(r"<[^>]+>", "", text)  # inline html such as anchors
    return re.sub(r"[*_`~]", "", text).strip()


def step_heading_level(nb: Notebook) -> int | None:
    """The shallowest heading level that occurs more than once, if any."""
    counts: dict[int, int] = {}
    for cell in nb.cells:
        if cell.cell_type == "markdown":
            for level, _ in headings(cell):
                counts[level] = counts.get(level, 0) + 1
    repeated = [level for level, n in counts.items() if n > 1]
    return min(repeated) if repeated else None


def detect_mode(nb: Notebook) -> str:
    code = [c for c in nb.cells if c.cell_type == "code"]
    if any(_STEP_TAG.match(t) for c in code for t in c.tags):
        return "tags"
    if any(_marker(c) for c in code):
        return "markers"
    if step_heading_level(nb) is not None:
        return "headings"
    return "cells"


class _Builder:
    """Accumulates steps in notebook order and enforces unique, contiguous names."""

    def __init__(self, path: str) -> None:
        self.path = path
        self.steps: list[StepCells] = []
        self._by_name: dict[str, StepCells] = {}
        self.current: StepCells | None = None

    def start(self, source_name: str, cell: int, *, explicit: bool) -> StepCells:
        name = dns_label(source_name)
        if explicit and name in self._by_name:
            other = self._by_name[name]
            raise DuplicateStepError(
                self.path, name, [other.cells[0] if other.cells else cell, cell]
            )
        if not explicit:
            name = _unique(name, set(self._by_name))
        step = StepCells(name, source_name, [], explicit=explicit)
        self.steps.append(step)
        self._by_name[name] = step
        self.current = step
        return step

    def add(self, cell: int) -> None:
        if self.current is None:
            self.start(IMPLICIT_FIRST_STEP, cell, explicit=False)
        assert self.current is not None
        self.current.cells.append(cell)

    def finish(self) -> list[StepCells]:
        steps = [s for s in self.steps if s.cells]
        # Implicit names were made unique against names seen so far; an explicit name seen later
        # may still clash with one, so rename implicit steps at the end when needed.
        explicit = {s.name for s in steps if s.explicit}
        taken = set(explicit)
        for s in steps:
            if not s.explicit:
                s.name = _unique(s.name, taken)
                taken.add(s.name)
        return steps


def split_notebook(nb: Notebook, mode: str = "auto") -> Split:
    """Group the notebook's code cells into steps according to ``mode``."""
    if mode not in SPLIT_MODES:
        raise InputError(
            f"unknown split mode {mode!r}", hint="use one of: " + ", ".join(SPLIT_MODES)
        )
    if not any(_is_code(c) for c in nb.cells):
        raise NoCodeError(nb.path)
    chosen = detect_mode(nb) if mode == "auto" else mode
    split = {
        "tags": _split_tags,
        "markers": _split_markers,
        "headings": _split_headings,
        "cells": _split_cells,
    }[chosen](nb)
    if not split.steps:
        raise NoCodeError(
            nb.path,
            "the notebook has no code outside parameter, skipped or "
            "imports/functions cells, so there is no step to run",
        )
    return split


def _split_tags(nb: Notebook) -> Split:
    b = _Builder(nb.path)
    split = Split("tags", [])
    role = "step"  # what an untagged cell joins: Kale lets cells inherit the previous tag
    for cell in nb.cells:
        if not _is_code(cell):
            continue
        tags = set(cell.tags)
        name = _step_tag(cell, nb.path)
        prevs = [m.group(1).strip() for t in cell.tags if (m := _PREV_TAG.match(t))]
        if SKIP_TAG in tags:
            split.skipped.append(cell.index)
            role = "skip"
            continue
        if tags & PARAMETER_TAGS:
            split.parameters.append(cell.index)
            role = "step"
            continue
        if tags & PRELUDE_TAGS and name is None:
            split.prelude.append(cell.index)
            role = "prelude"
            continue
        if name is None and METRICS_TAG in tags:
            name = METRICS_TAG
            split.metrics.append(cell.index)
        if name is not None:
            if b.current is None or b.current.source_name != name:
                b.start(name, cell.index, explicit=True)
            role = "step"
        elif role == "skip":
            split.skipped.append(cell.index)
            continue
        elif role == "prelude":
            split.prelude.append(cell.index)
            continue
        b.add(cell.index)
        assert b.current is not None
        b.current.prev.extend((p, cell.index) for p in prevs)
    split.steps = b.finish()
    return split


def _step_cells(nb: Notebook, split: Split) -> Iterator[Cell]:
    """The code cells that belong to steps; parameter cells are recorded in ``split`` instead."""
    for cell in nb.cells:
        if not _is_code(cell):
            continue
        if _is_parameters(cell):
            split.parameters.append(cell.index)
            continue
        yield cell


def _split_markers(nb: Notebook) -> Split:
    b = _Builder(nb.path)
    split = Split("markers", [])
    for cell in _step_cells(nb, split):
        options = cell_options(cell.source)
        name = options.get("step")
        if name is not None:
            name = str(name).strip()
            if b.current is None or b.current.source_name != name:
                b.start(name, cell.index, explicit=True)
        b.add(cell.index)
        assert b.current is not None
        b.current.prev.extend((p, cell.index) for p in _option_list(options.get("prev")))
    split.steps = b.finish()
    return split


def _split_headings(nb: Notebook) -> Split:
    level = step_heading_level(nb)
    if level is None:
        raise SplitError(
            "no markdown heading level occurs more than once, so headings cannot split it",
            where=nb.path,
            hint="add a heading (e.g. '## Load data') before each step, or use --split cells",
        )
    b = _Builder(nb.path)
    split = Split("headings", [])
    for cell in nb.cells:
        if cell.cell_type == "markdown":
            for lvl, text in headings(cell):
                if lvl == level:
                    b.start(text, cell.index, explicit=False)
            continue
        if not _is_code(cell):
            continue
        if _is_parameters(cell):
            split.parameters.append(cell.index)
            continue
        b.add(cell.index)
    split.steps = b.finish()
    return split


def _split_cells(nb: Notebook) -> Split:
    b = _Builder(nb.path)
    split = Split("cells", [])
    for cell in _step_cells(nb, split):
        b.start(f"cell-{cell.index}", cell.index, explicit=False)
        b.add(cell.index)
    split.steps = b.finish()
    return split


def code_cells(split: Split) -> Iterable[int]:
    """Every cell index that runs somewhere: parameters, prelude and step cells."""
    yield from split.parameters
    yield from split.prelude
    for s in split.steps:
        yield from s.cells


def step_names(steps: Sequence[StepCells]) -> list[str]:
    return [s.name for s in steps]
