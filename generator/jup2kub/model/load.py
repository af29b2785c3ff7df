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
) -> tuple[Notebook, Pipeline]:
    """The notebook at ``path`` (for a composition: the notebook made from it) and its pipeline,
    named ``name`` (default: from the file name). ``steps``: the catalog a composition's
    catalogued steps and wire types come from (None: there is none)."""

    def source(at: Path, source_split: str, source_name: str | None) -> tuple[Notebook, Pipeline]:
        return load(at, source_split, source_name, steps)

    if is_composition(path):
        return _composed(*load_composition(path, source, steps, name))
    nb = load_notebook(path)
    references = kale_references(nb)
    if references is not None:  # Kale 2.3: a notebook of notebook:NAME cells
        return _composed(*load_kale_composition(nb, references, source, steps, name))
    return nb, _notebook_pipeline(nb, split, name)


def _notebook_pipeline(nb: Notebook, split: str, name: str | None) -> Pipeline:
    parts = isolate_maps(nb, _split(nb, split))  # a map cell is a step of its own
    analyses = _analyses(nb, parts)
    if parts.automatic and parts.mode == "cells":  # no explicit steps: group the cells
        per_cell = build_pipeline(nb, parts, analyses, name, assess=False)
        parts = isolate_maps(nb, group_cells(parts, per_cell))
    return order_effects(build_pipeline(nb, parts, analyses, name), analyses)


def _split(nb: Notebook, mode: str) -> Split:
    try:
        return split_notebook(nb, mode)
    except NoCodeError:
        for cell in nb.code_cells:  # a syntax error (in a parameters cell) explains more
            analyze_cell(nb.path, cell.index, cell.source)
        raise


def _analyses(nb: Notebook, parts: Split) -> list[CellAnalysis]:
    """The code cells' analyses, in order: a ``%run`` finds the scripts earlier cells wrote;
    a cell tagged ``raises-exception`` may stop anywhere."""
    out: list[CellAnalysis] = []
    scripts: dict[str, str | None] = {}
    raising = raising_cells(nb)
    for i in sorted(code_cells(parts)):
        analysis = analyze_cell(nb.path, i, nb.cells[i].source, scripts)
        scripts = written_scripts(scripts, analysis)
        out.append(_may_stop(analysis) if i in raising else analysis)
    return out


def _may_stop(analysis: CellAnalysis) -> CellAnalysis:
    """A cell that may raise anywhere may leave any name it binds unbound (or as it was)."""

    def uncertain(e: Event) -> Event:
        return dataclasses.replace(e, certain=False) if e.kind in ("def", "del") else e

    statements = [
        dataclasses.replace(st, events=[uncertain(e) for e in st.events])
        for st in analysis.statements
    ]
    return dataclasses.replace(analysis, statements=statements)


def _composed(nb: Notebook, name: str, verify: Verify) -> tuple[Notebook, Pipeline]:
    """A composition's notebook, cut at its steps' markers; its steps are neither mapped nor
    cached (``assess=False``)."""
    parts = split_notebook(nb, "markers")
    analyses = _analyses(nb, parts)
    pipeline = order_effects(build_pipeline(nb, parts, analyses, name, assess=False), analyses)
    verify(pipeline)
    return nb, pipeline
