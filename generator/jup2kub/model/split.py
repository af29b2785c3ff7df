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
from jup2kub.model.ipython import STEP_MAGIC, only_own_magics
from jup2kub.model.kale import (
    METRICS_TAG,
    NOTEBOOK_TAG,
    PARAMETER_TAGS,
    PARAMETERS_TAG,
    PRELUDE_TAGS,
    SKIP_TAG,
    KaleCell,
    PodSettings,
    SplitWarning,
    bindings,
    has_code,
    imported_names,
    literal_assignments,
    parse_cell,
    prelude_names,
    steps_defaults,
    unsupported_message,
)
from jup2kub.model.kale import STEP_TAG as _STEP_TAG
from jup2kub.model.names import MAX_NAME, RESERVED_STEP_NAMES, dns_label, step_label
from jup2kub.model.notebook import Cell, Notebook

SPLIT_MODES = ("auto", "tags", "markers", "headings", "cells")
#: nbclient's tag for cells it does not execute
NBCLIENT_SKIP_TAG = "skip-execution"
RAISES_EXCEPTION_TAG = "raises-exception"  # nbclient records the cell's error and goes on
IMPLICIT_FIRST_STEP = "setup"
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
    pod: PodSettings = field(default_factory=PodSettings)  # Kale's limit:/label:/annotation:
    #: the step this one continues: a Kale step name seen again after another step's cells
    continues: StepCells | None = None
    #: why automatic grouping put these cells together and started a step here
    grouping: list[str] = field(default_factory=list)


@dataclass
class Split:
    mode: str
    steps: list[StepCells]
    prelude: list[int] = field(default_factory=list)  # Kale imports/functions: run in every step
    parameters: list[int] = field(default_factory=list)
    skipped: list[int] = field(default_factory=list)
    metrics: list[int] = field(default_factory=list)
    warnings: list[SplitWarning] = field(default_factory=list)
    #: ``auto`` chose the mode (a ``cells`` split may then be grouped automatically)
    automatic: bool = False


def raising_cells(nb: Notebook) -> list[int]:
    """The code cells tagged ``raises-exception``: nbclient records their error and goes on."""
    return [c.index for c in nb.code_cells if RAISES_EXCEPTION_TAG in c.tags]


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
    """Quarto-style ``#|`` options at the top of a cell, parsed as YAML (empty if none/invalid).

    A first line ``%%step NAME`` (the IPython extension's cell magic) is ``#| step: NAME``."""
    all_lines = source.splitlines()
    magic = STEP_MAGIC.match(all_lines[0]) if all_lines else None
    lines = []
    for line in all_lines[1:] if magic else all_lines:
        m = _OPTION_LINE.match(line)
        if not m:
            break
        lines.append(m.group(1))
    data: object = {}
    if lines:
        try:
            data = yaml.safe_load("\n".join(lines))
        except yaml.YAMLError:
            data = {}
    options = data if isinstance(data, dict) else {}
    if magic:
        options = {**options, "step": (magic.group("name") or "").strip() or None}
    return options


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
    if any((m := _STEP_TAG.match(t)) and m.group(1).strip() for c in code for t in c.tags):
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
        #: what happened to names the user wrote (cut to MAX_NAME)
        self.warnings: list[SplitWarning] = []

    def start(self, source_name: str, cell: int, *, explicit: bool) -> StepCells:
        name = self._label(source_name, cell) if explicit else dns_label(source_name)
        if explicit and name in self._by_name and self._by_name[name].explicit:
            other = self._by_name[name]
            raise DuplicateStepError(
                self.path, name, [other.cells[0] if other.cells else cell, cell]
            )
        if not explicit:
            name = _unique(name, set(self._by_name) | RESERVED_STEP_NAMES)
        step = StepCells(name, source_name, [], explicit=explicit)
        self.steps.append(step)
        self._by_name[name] = step
        self.current = step
        return step

    def _label(self, written: str, cell: int) -> str:
        """The name of a step the user named: refused with the reason, or noted if cut."""
        try:
            name, note = step_label(written)
        except ValueError as exc:
            raise SplitError(
                str(exc), where=f"{self.path}: cell {cell}", hint="rename the step"
            ) from None
        if note is not None:
            self.warnings.append(SplitWarning(cell, note))
        return name

    def named(self, name: str) -> StepCells | None:
        """The explicit step called ``name`` (a DNS label), if one was started."""
        step = self._by_name.get(name)
        return step if step is not None and step.explicit else None

    def resume(self, base: StepCells) -> StepCells:
        """A new step continuing ``base``: same settings and ``prev:``, a derived name."""
        step = StepCells(
            _unique(base.name, {s.name for s in self.steps}),
            base.source_name,
            [],
            prev=list(base.prev),
            explicit=False,
            pod=base.pod,
            continues=base,
        )
        self.steps.append(step)
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
        taken = explicit | RESERVED_STEP_NAMES
        for s in steps:
            if not s.explicit:
                s.name = _unique(s.name, taken)
                taken.add(s.name)
        return steps


class KaleSplitter:
    """Kale's ``parse_notebook``, cell by cell, in Jup2Kub's terms.

    An untagged cell joins what the last tagged cell before it opened (Kale's
    ``prev_step_name``): a step, the prelude (``imports``/``functions``), the parameters
    (``pipeline-parameters``, when the cell only assigns literals, as Kale requires) or the
    metrics step. ``skip`` cells are transparent: the cells after one join what was open before
    it. Untagged cells after a ``notebook:`` reference wait for the next step cell. Where Kale
    would run cells out of notebook order (a step name seen again after another step's cells,
    cells after a parameters cell), the cells form a continuation step instead, so the pipeline
    keeps the notebook's order; and the cells before the first tag, which Kale drops, run in a
    first step. Each such difference is a warning.
    """

    def __init__(self, nb: Notebook) -> None:
        self.nb = nb
        self.b = _Builder(nb.path)
        self.split = Split("tags", [])
        self.block: str | None = None  # what untagged cells join; None before any tag
        self.barrier = False  # a parameters cell since the current step's last cell
        self.awaiting = False  # after a notebook: reference, until the next step cell
        self.pending: list[int] = []
        self.leading: list[int] = []
        #: warnings naming "{step}": the given step's final name, else the cell's step's
        self.later: list[tuple[int, str, StepCells | None]] = []
        self.bound: list[tuple[int, set[tuple[str, str]]]] | None = None  # cells' bindings
        self.modules: frozenset[str] = frozenset()  # names the prelude imports

    def split_notebook(self) -> Split:
        defaults, self.split.warnings = steps_defaults(self.nb)
        for cell in self.nb.cells:
            if cell.cell_type == "code":
                self._cell(cell, parse_cell(cell, self.nb.path))
        if self.pending:
            raise SplitError(
                "untagged cells after a notebook: cell must be followed by a step cell that "
                f"owns them (cells {', '.join(map(str, self.pending))}; Kale refuses it too)",
                where=f"{self.nb.path}: cell {self.pending[0]}",
                hint="tag the first of them step:NAME",
            )
        self.split.steps = self._finish()
        if not self.split.steps:
            _refuse_composition(self.nb)
        for step in self.split.steps:
            step.pod = step.pod.with_defaults(defaults)
        self._late_warnings()
        return self.split

    # ------------------------------------------------------------------ cells
    def _cell(self, cell: Cell, kc: KaleCell) -> None:
        code = _is_code(cell)
        if kc.notebook is not None:
            self._reference(cell, kc)
        elif kc.role == SKIP_TAG:
            if code:
                self.split.skipped.append(cell.index)
        elif kc.role in PRELUDE_TAGS:
            self._block("prelude", None, self.split.prelude)
            if code:
                self._prelude(cell)
        elif kc.role in PARAMETER_TAGS:
            self._block(kc.role, cell.index if code else None, self.split.parameters)
            self.barrier = True
        elif kc.role == METRICS_TAG:
            self._metrics(cell, code)
        elif kc.name is not None:
            self._step(cell, kc, code)
        elif code:
            self._untagged(cell)

    def _block(self, block: str, cell: int | None, into: list[int]) -> None:
        if cell is not None:
            into.append(cell)
        self.block = block
        self.awaiting = False

    def _reference(self, cell: Cell, kc: KaleCell) -> None:
        where = f"{self.nb.path}: cell {cell.index}"
        if has_code(cell.source):
            raise SplitError(
                f"the notebook:{kc.notebook} cell holds code; a cell that references a notebook "
                "holds none of its own (Kale refuses it too)",
                where=where,
                hint="move the code to a cell of its own tagged step:NAME",
            )
        if self.pending:
            raise SplitError(
                "untagged cells after a notebook: cell must be followed by a step cell that "
                f"owns them before the next notebook: cell (cells "
                f"{', '.join(map(str, self.pending))}; Kale refuses it too)",
                where=where,
                hint=f"tag cell {self.pending[0]} step:NAME",
            )
        if _is_code(cell):
            self.split.skipped.append(cell.index)
        self.split.warnings.append(
            SplitWarning(
                cell.index,
                f"tag 'notebook:{kc.notebook}': Kale runs the referenced notebook as a "
                "sub-pipeline here; Jupyter→Kubernetes runs only this notebook's cells",
            )
        )
        self.b.current = None
        self.block = None
        self.awaiting = True

    def _metrics(self, cell: Cell, code: bool) -> None:
        if code:
            self.split.metrics.append(cell.index)
        if len(self.split.metrics) == 1 and code:
            self.later.append(
                (
                    cell.index,
                    f"tag {METRICS_TAG!r}: Kale logs the printed values as Kubeflow pipeline "
                    "metrics; Jupyter→Kubernetes runs the cell in step '{step}' (its output is "
                    "in the results notebook)",
                    None,
                )
            )
        self._step(cell, KaleCell(name=METRICS_TAG), code)

    def _step(self, cell: Cell, kc: KaleCell, code: bool) -> None:
        assert kc.name is not None
        label = dns_label(kc.name)
        current = self.b.current
        if current is not None and not self.barrier and _base(current).name == label:
            step = current
        elif (existing := self.b.named(label)) is not None:
            step = self.b.resume(_base(existing))
            self.later.append(
                (
                    cell.index,
                    f"step {kc.name!r} continues here after other cells; Kale merges these "
                    f"cells into step {existing.name!r} and runs them together with its first "
                    "cells; Jupyter→Kubernetes runs them as step '{step}', in notebook order",
                    step,
                )
            )
        else:
            step = self.b.start(kc.name, cell.index, explicit=True)
            step.pod = kc.pod
            step.prev.extend((p, cell.index) for p in kc.prevs)
            self._unsupported(cell.index, kc.unsupported, step)
            kc = KaleCell(name=kc.name)  # its settings are taken
        if kc.settings:
            self.split.warnings.append(
                SplitWarning(
                    cell.index,
                    f"tags {', '.join(map(repr, kc.settings))} are ignored: Kale takes a "
                    f"step's settings from its first cell only (cell "
                    f"{_first_cell(_base(step))})",
                )
            )
        self.b.current = step
        step.cells.extend(self.pending)
        self.pending = []
        if code:
            step.cells.append(cell.index)
        self.block = "step"
        self.barrier = self.awaiting = False

    def _unsupported(self, cell: int, tags: list[str], step: StepCells) -> None:
        for tag in tags:
            kind = tag.split(":", 1)[0]
            self.later.append((cell, unsupported_message(tag, kind, "step '{step}'"), step))

    def _untagged(self, cell: Cell) -> None:
        if self.awaiting:
            self.pending.append(cell.index)
        elif self.block == "prelude":
            self._prelude(cell)
        elif self.block == PARAMETERS_TAG and literal_assignments(cell.source):
            self.split.parameters.append(cell.index)
        else:
            if self.block == PARAMETERS_TAG:
                self.later.append(
                    (
                        cell.index,
                        "this untagged cell follows a pipeline-parameters cell, so Kale reads it "
                        "as parameters and refuses it (it is not only literal assignments); it "
                        "runs in step '{step}'",
                        None,
                    )
                )
            self._add(cell.index)

    def _prelude(self, cell: Cell) -> None:
        """Kale runs the imports/functions block at the start of every step; so does the
        pipeline, when that cannot change what a step sees. Otherwise the cell runs once, in
        notebook order."""
        names = prelude_names(cell.source, self.modules)
        again = set() if names is None else self._bound_later(cell.index, names, cell.source)
        if names is not None and not again:
            self.split.prelude.append(cell.index)
            self.modules |= imported_names(cell.source)
            return
        why = (
            "holds more than imports, definitions, constants and module settings"
            if names is None
            else f"binds {', '.join(sorted(again))}, which a later cell binds again"
        )
        self.later.append(
            (
                cell.index,
                f"this cell of the imports/functions block {why}: Kale runs it at the start of "
                "every step; Jupyter→Kubernetes runs it once, in step '{step}', in notebook order",
                None,
            )
        )
        self._add(cell.index, keep_block=True)

    def _bound_later(self, index: int, names: set[str], source: str) -> set[str]:
        """Which of ``names`` (bound by the prelude cell ``index``) a code cell after it binds
        again outside the imports/functions block; importing the same thing again is fine."""
        if self.bound is None:
            self.bound = [
                (c.index, bindings(c.source))
                for c in self.nb.cells
                if c.cell_type == "code" and not ({SKIP_TAG, *PRELUDE_TAGS} & set(c.tags))
            ]
        own = {b for b in bindings(source) if b[1]}
        return {
            name
            for i, found in self.bound
            if i > index
            for name, how in found
            if name in names and (name, how) not in own
        }

    def _add(self, cell: int, *, keep_block: bool = False) -> None:
        if self.block in (None, _LEADING):
            self.leading.append(cell)
        elif self.barrier and self.b.current is not None:
            self.b.resume(_base(self.b.current))
        self.b.add(cell)
        if not keep_block:
            self.block = _LEADING if self.block in (None, _LEADING) else "step"
        self.barrier = False

    # ------------------------------------------------------------------ the end
    def _finish(self) -> list[StepCells]:
        empty = {s.name for s in self.b.steps if s.explicit and not s.cells}
        steps = self.b.finish()
        self.split.warnings += self.b.warnings
        for step in steps:
            step.prev = [(t, c) for t, c in step.prev if dns_label(t) not in empty]
            step.prev += [
                (later.name, c)
                for t, c in step.prev
                for later in steps
                if later is not step
                and later.continues is not None
                and later.continues.name == dns_label(t)
                and later.cells[0] < c
            ]
        return steps

    def _late_warnings(self) -> None:
        owner = {c: s.name for s in self.split.steps for c in s.cells}
        if self.leading:
            cells = ", ".join(map(str, self.leading))
            self.later.insert(
                0,
                (
                    self.leading[0],
                    f"cells {cells} come before the first tagged cell: Kale leaves them out of "
                    "the pipeline; Jupyter→Kubernetes runs them in step '{step}' (tag them "
                    "skip to leave them out)",
                    None,
                ),
            )
        for cell, message, step in self.later:
            name = step.name if step is not None else owner.get(cell, "?")
            self.split.warnings.append(SplitWarning(cell, message.replace("{step}", name)))
        self.split.warnings.sort(key=lambda w: -1 if w.cell is None else w.cell)


_LEADING = "leading"  # untagged cells before any tag: Kale drops them


def _base(step: StepCells) -> StepCells:
    return step.continues if step.continues is not None else step


def _first_cell(step: StepCells) -> str:
    return str(step.cells[0]) if step.cells else "?"


def _references(cell: Cell) -> bool:
    return cell.cell_type == "code" and any(NOTEBOOK_TAG.match(t) for t in cell.tags)


def _refuse_composition(nb: Notebook) -> None:
    """A notebook of only ``notebook:`` references is a Kale composition: nothing runs here."""
    refs = [c.index for c in nb.cells if _references(c)]
    if refs:
        raise SplitError(
            "the notebook only references other notebooks (notebook: cells "
            f"{', '.join(map(str, refs))}), which Kale runs as sub-pipelines; "
            "Jupyter→Kubernetes runs the cells of one notebook",
            where=f"{nb.path}: cell {refs[0]}",
            hint="build each referenced notebook on its own, or copy their cells into this one",
        )


def split_notebook(nb: Notebook, mode: str = "auto") -> Split:
    """Group the notebook's code cells into steps according to ``mode``."""
    if mode not in SPLIT_MODES:
        raise InputError(
            f"unknown split mode {mode!r}", hint="use one of: " + ", ".join(SPLIT_MODES)
        )
    if not any(_is_code(c) and not _references(c) for c in nb.cells):
        _refuse_composition(nb)
        raise NoCodeError(nb.path)
    chosen = detect_mode(nb) if mode == "auto" else mode
    split: Split = {
        "tags": _split_tags,
        "markers": _split_markers,
        "headings": _split_headings,
        "cells": _split_cells,
    }[chosen](nb)
    _leave_out_unexecuted(nb, split)
    split.automatic = mode == "auto"
    if not split.steps:
        raise NoCodeError(
            nb.path,
            "the notebook has no code outside parameter, skipped or "
            "imports/functions cells, so there is no step to run",
        )
    return split


def _leave_out_unexecuted(nb: Notebook, split: Split) -> None:
    """Cells tagged ``skip-execution`` are not run by nbclient (nor nbmake, papermill's engine):
    here they are skipped in every split mode, and the step they sat in goes on without them.
    So are cells holding only Jup2Kub's own magics (``%jup2kub inspect``): the editor's tool."""
    unexecuted = {
        c.index
        for c in nb.cells
        if _is_code(c) and (NBCLIENT_SKIP_TAG in c.tags or only_own_magics(c.source))
    }
    if not unexecuted:
        return
    for step in split.steps:
        step.cells = [i for i in step.cells if i not in unexecuted]
    split.steps = [s for s in split.steps if s.cells]
    split.prelude = [i for i in split.prelude if i not in unexecuted]
    split.parameters = [i for i in split.parameters if i not in unexecuted]
    split.skipped = sorted(set(split.skipped) | unexecuted)


def _split_tags(nb: Notebook) -> Split:
    return KaleSplitter(nb).split_notebook()


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
        options = _step_options(nb.path, cell)
        name = options.get("step")
        if name is not None:
            name = _marker_name(nb.path, cell, name)
            if b.current is None or b.current.source_name != name:
                b.start(name, cell.index, explicit=True)
        b.add(cell.index)
        assert b.current is not None
        b.current.prev.extend((p, cell.index) for p in _option_list(options.get("prev")))
    split.steps = b.finish()
    split.warnings += b.warnings
    return split


_STEP_OPTION = re.compile(r"^#\|\s?\s*(step|prev)\s*:")


def _step_options(path: str, cell: Cell) -> dict[str, object]:
    """A cell's ``#|`` options; a ``step:``/``prev:`` line in options YAML cannot read is an
    error (``#| step: -``), not a marker silently ignored."""
    options = cell_options(cell.source)
    first = cell.source.split("\n", 1)[0]
    if "step" in options and options["step"] is None and STEP_MAGIC.match(first):
        raise SplitError(
            "'%%step' needs a step name",
            where=f"{path}: cell {cell.index}",
            hint="write e.g. '%%step load-data' as the cell's first line",
        )
    if options or not any(_STEP_OPTION.match(line) for line in cell.source.splitlines()):
        return options
    raise SplitError(
        "the cell's '#|' options are not valid YAML, so its step marker cannot be read",
        where=f"{path}: cell {cell.index}",
        hint="write the step name as a YAML string, e.g. '#| step: \"load-data\"'",
    )


def _marker_name(path: str, cell: Cell, value: object) -> str:
    if isinstance(value, (str, int, float)) and not isinstance(value, bool):
        return str(value).strip()
    raise SplitError(
        f"'#| step:' needs a name, not {value!r}",
        where=f"{path}: cell {cell.index}",
        hint="write e.g. '#| step: load-data'",
    )


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
