"""The model's way in: a notebook, or a composition, read and made into the pipeline every later
stage works from, in one call.

A notebook is split into steps (``split``), each map cell made a step of its own (``mapping``),
its code cells analysed (``analysis``), the data flow between the steps resolved (``dataflow``)
and the steps acting outside the pipeline's values ordered (``external``); without explicit
steps its cells are grouped first (``grouping``, from the per-cell pipeline). A composition (a
YAML file, or Kale's notebook of ``notebook:`` cells) is made into a notebook in memory
(``compose``) and cut at its steps' markers.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path

from jup2kub.errors import NoCodeError
from jup2kub.model.analysis import CellAnalysis, Event, analyze_cell, written_scripts
from jup2kub.model.compose import (
    StepCatalog,
    Verify,
    is_composition,
    kale_references,
    load_composition,
    load_kale_composition,
)
from jup2kub.model.dataflow import build_pipeline
from jup2kub.model.external import order_effects
from jup2kub.model.grouping import group_cells
from jup2kub.model.learned import NOTHING_LEARNED, InPlaceChange, Learned, cell_sha256
from jup2kub.model.mapping import isolate_maps
from jup2kub.model.notebook import Notebook, load_notebook
from jup2kub.model.pipeline import Pipeline
from jup2kub.model.split import (
    SPLIT_MODES,
    Split,
    code_cells,
    raising_cells,
    split_notebook,
)

__all__ = ["SPLIT_MODES", "load"]


def load(
    path: str | Path,
    split: str = "auto",
    name: str | None = None,
    steps: StepCatalog | None = None,
    learned: Learned = NOTHING_LEARNED,
) -> tuple[Notebook, Pipeline]:
    """The notebook at ``path`` (for a composition: the notebook made from it) and its pipeline,
    named ``name`` (default: from the file name). ``steps``: the catalog a composition's
    catalogued steps and wire types come from (None: there is none). ``learned``: what earlier
    runs saw the cells do that the analysis cannot (``model.learned``)."""

    def source(at: Path, source_split: str, source_name: str | None) -> tuple[Notebook, Pipeline]:
        return load(at, source_split, source_name, steps, learned)

    if is_composition(path):
        return _composed(*load_composition(path, source, steps, name), learned)
    nb = load_notebook(path)
    references = kale_references(nb)
    if references is not None:  # Kale 2.3: a notebook of notebook:NAME cells
        return _composed(*load_kale_composition(nb, references, source, steps, name), learned)
    return nb, _notebook_pipeline(nb, split, name, learned)


def _notebook_pipeline(nb: Notebook, split: str, name: str | None, learned: Learned) -> Pipeline:
    parts = isolate_maps(nb, _split(nb, split))  # a map cell is a step of its own
    analyses = _analyses(nb, parts, learned)
    if parts.automatic and parts.mode == "cells":  # no explicit steps: group the cells
        per_cell = build_pipeline(nb, parts, analyses, name, assess=False)
        parts = isolate_maps(nb, group_cells(parts, per_cell))
    pipeline = build_pipeline(nb, parts, analyses, name, learned=_applied(nb, parts, learned))
    return order_effects(pipeline, analyses)


def _split(nb: Notebook, mode: str) -> Split:
    try:
        return split_notebook(nb, mode)
    except NoCodeError:
        for cell in nb.code_cells:  # a syntax error (in a parameters cell) explains more
            analyze_cell(nb.path, cell.index, cell.source)
        raise


def _analyses(nb: Notebook, parts: Split, learned: Learned) -> list[CellAnalysis]:
    """The code cells' analyses, in order: a ``%run`` finds the scripts earlier cells wrote;
    a cell tagged ``raises-exception`` may stop anywhere; a cell runs saw change a value in
    place changes it (``learned``)."""
    out: list[CellAnalysis] = []
    scripts: dict[str, str | None] = {}
    raising = raising_cells(nb)
    for i in sorted(code_cells(parts)):
        analysis = analyze_cell(nb.path, i, nb.cells[i].source, scripts)
        scripts = written_scripts(scripts, analysis)
        analysis = _changes_in_place(analysis, learned.variables(nb.cells[i].source))
        out.append(_may_stop(analysis) if i in raising else analysis)
    return out


def _changes_in_place(analysis: CellAnalysis, variables: list[str]) -> CellAnalysis:
    """The cell as if its last statement changed ``variables`` in place (what a run saw)."""
    if not variables or not analysis.statements:
        return analysis
    last = analysis.statements[-1]
    events = [*last.events, *(Event("mutate", v, last.line) for v in variables)]
    return dataclasses.replace(
        analysis, statements=[*analysis.statements[:-1], dataclasses.replace(last, events=events)]
    )


def _applied(nb: Notebook, parts: Split, learned: Learned) -> list[InPlaceChange]:
    """The learned changes of this notebook's code cells, at the cells' current positions."""
    if not learned.changes:
        return []
    cells = {cell_sha256(nb.cells[i].source): i for i in sorted(code_cells(parts), reverse=True)}
    return [
        dataclasses.replace(c, cell=cells[c.cell_sha256], notebook=Path(nb.path).name)
        for c in learned.changes
        if c.cell_sha256 in cells
    ]


def _may_stop(analysis: CellAnalysis) -> CellAnalysis:
    """A cell that may raise anywhere may leave any name it binds unbound (or as it was)."""

    def uncertain(e: Event) -> Event:
        return dataclasses.replace(e, certain=False) if e.kind in ("def", "del") else e

    statements = [
        dataclasses.replace(st, events=[uncertain(e) for e in st.events])
        for st in analysis.statements
    ]
    return dataclasses.replace(analysis, statements=statements)


def _composed(
    nb: Notebook, name: str, verify: Verify, learned: Learned
) -> tuple[Notebook, Pipeline]:
    """A composition's notebook, cut at its steps' markers; its steps are neither mapped nor
    cached (``assess=False``)."""
    parts = split_notebook(nb, "markers")
    analyses = _analyses(nb, parts, learned)
    applied = _applied(nb, parts, learned)
    pipeline = build_pipeline(nb, parts, analyses, name, assess=False, learned=applied)
    pipeline = order_effects(pipeline, analyses)
    verify(pipeline)
    return nb, pipeline
