"""Pipelines composed from steps of several notebooks (or of the catalog): a YAML file that lists
the steps and wires each input to an upstream step's output.

The composition is turned into one notebook, held in memory, that does what running the steps'
code by hand would do: a parameters cell (the source notebooks' parameters cells, then the
composition's values), then per step, in an order that respects the wiring, one marked cell with
the code the step re-runs from its notebook (imports, functions) and the renamings
(``readings = values``), then the step's own cells. Everything downstream (analysis, chart,
images, local and Kafka runs) works on that notebook as on any other; the pipeline built from
it is checked to read each input from the step the composition wires it to.

Refused with exit 2, naming the step and the variable: inputs not wired, wires to steps or
values that do not exist, cycles, duplicate step names, type mismatches the catalog knows,
parameters given different defaults by two notebooks.

The source notebooks are read through the ``Loader`` that ``model.load`` hands in (a source may
itself be a composition); catalogued steps are asked of a ``StepCatalog``, which the catalog
implements: nothing here imports the catalog or the api.
"""

from __future__ import annotations

import graphlib
import hashlib
import re
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

import jsonschema

from jup2kub.errors import CompositionError
from jup2kub.model.kale import NOTEBOOK_TAG
from jup2kub.model.names import DNS_LABEL, MAX_NAME, dns_label
from jup2kub.model.notebook import Cell, Notebook, new_code_cell, new_notebook, writes
from jup2kub.model.parameters import parameter_defaults
from jup2kub.model.pipeline import Pipeline, code_hash, stable_order, step_code
from jup2kub.model.split import SPLIT_MODES
from jup2kub_runtime.execution.randomness import RANDOM_STATE

SUFFIXES = (".yaml", ".yml")
#: a value's type when no run has observed it
UNKNOWN = "unknown"


#: the check a composition's pipeline must pass: each input read from the step it is wired to
Verify = Callable[[Pipeline], None]


#: how a step's own notebook (or composition) is read and cut into steps: path, split, name
Loader = Callable[[Path, str, "str | None"], tuple[Notebook, Pipeline]]


class CataloguedStep(Protocol):
    """A step as the catalog recorded it (``catalog.records.StepRecord``)."""

    @property
    def key(self) -> str: ...  # PIPELINE/STEP
    @property
    def pipeline(self) -> str: ...
    @property
    def step(self) -> str: ...
    @property
    def notebook(self) -> str: ...
    @property
    def code_sha256(self) -> str: ...  # ``code_hash(step_code(..))`` when recorded
    @property
    def inputs(self) -> Mapping[str, Mapping[str, str]]: ...  # variable -> {"type": ...}
    @property
    def outputs(self) -> Mapping[str, str]: ...  # variable -> observed type or UNKNOWN


class StepCatalog(Protocol):
    """What a composition asks the step catalog (``catalog.store.Catalog`` answers)."""

    def find(self, name: str) -> CataloguedStep: ...  # PIPELINE/STEP, or raises

    def steps(self) -> Sequence[CataloguedStep]: ...


def is_composition(path: str | Path) -> bool:
    """A composition file (YAML) rather than a notebook: a cheap check made on every read."""
    return Path(path).suffix.lower() in SUFFIXES


def kale_references(nb: Notebook) -> list[tuple[int, str]] | None:
    """The ``notebook:NAME`` cells of a notebook made only of them (Kale 2.3's composition),
    else None."""
    refs: list[tuple[int, str]] = []
    for cell in nb.cells:
        if cell.cell_type != "code":
            continue
        names = [m.group(1).strip() for t in cell.tags if (m := NOTEBOOK_TAG.match(t))]
        if names and names[0]:
            refs.append((cell.index, names[0]))
        elif cell.source.strip():
            return None
    return refs or None


SCHEMA: dict[str, Any] = {
    "$schema": "https://json-schema.org/draft/2020-12/schema",
    "title": "jup2kub composition",
    "type": "object",
    "additionalProperties": False,
    "required": ["steps"],
    "properties": {
        "name": {"type": "string", "pattern": DNS_LABEL.pattern, "maxLength": MAX_NAME},
        "parameters": {"type": "object"},
        "steps": {
            "type": "array",
            "minItems": 1,
            "items": {
                "type": "object",
                "additionalProperties": False,
                "properties": {
                    "name": {"type": "string", "pattern": DNS_LABEL.pattern, "maxLength": MAX_NAME},
                    "notebook": {"type": "string", "minLength": 1},
                    "step": {"type": "string", "minLength": 1},
                    "split": {"enum": list(SPLIT_MODES)},
                    "catalog": {"type": "string", "minLength": 1},
                    "inputs": {
                        "type": "object",
                        "additionalProperties": {"type": "string", "minLength": 1},
                    },
                    "after": {"type": "array", "items": {"type": "string", "minLength": 1}},
                },
            },
        },
    },
}


@dataclass
class _Source:
    """One composed step: where its code comes from and how its inputs are wired."""

    name: str
    line: int
    nb: Notebook
    pipeline: Pipeline
    step: str  # its name in the source pipeline
    #: input variable -> (upstream composed step, the upstream's variable)
    wires: dict[str, tuple[str, str]] = field(default_factory=dict)
    wire_lines: dict[str, int] = field(default_factory=dict)
    #: steps it runs after without reading their values (files, Kale's notebook order)
    after: list[str] = field(default_factory=list)

    @property
    def where(self) -> str:
        return f"{self.nb.path}, step {self.step!r}"


class _Document:
    """The parsed YAML with the line of every node (for errors that name the line)."""

    def __init__(self, path: Path) -> None:
        self.path = path
        try:
            text = path.read_text(encoding="utf-8")
        except OSError as exc:
            raise CompositionError(
                f"cannot read the file ({exc.strerror})", where=str(path)
            ) from None
        from ruamel.yaml import YAML  # ruamel.yaml loads for compositions only (start-up time)
        from ruamel.yaml.error import MarkedYAMLError

        try:
            self.data = YAML(typ="rt").load(text)
        except MarkedYAMLError as exc:
            mark = exc.problem_mark
            line = mark.line + 1 if mark is not None else 1
            raise CompositionError(f"not valid YAML: {exc.problem}", where=self.at(line)) from None

    def at(self, line: int) -> str:
        return f"{self.path}, line {line}"

    def line(self, keys: Sequence[Any]) -> int:
        """The line of the node at ``keys`` (its key's line in a mapping), 1-based."""
        node, line = self.data, 1
        for key in keys:
            lc = getattr(node, "lc", None)
            try:
                if lc is not None:
                    pos = lc.key(key) if isinstance(key, str) else lc.item(key)
                    line = pos[0] + 1
                node = node[key]
            except (KeyError, IndexError, TypeError, AttributeError):
                break
        return line

    def check(self) -> None:
        if not isinstance(self.data, dict):
            raise CompositionError("a composition is a mapping with 'steps:'", where=self.at(1))
        validator = jsonschema.Draft202012Validator(SCHEMA)
        errors = sorted(validator.iter_errors(self.data), key=lambda e: list(map(str, e.path)))
        if errors:
            error = errors[0]
            keys = list(error.path)
            what = ".".join(str(k) for k in keys) or "the file"
            line = keys
            if error.validator == "additionalProperties" and isinstance(error.instance, dict):
                known = error.schema.get("properties", {})
                line = [*keys, next(k for k in error.instance if k not in known)]  # its line
            raise CompositionError(
                f"{what}: {error.message}",
                where=self.at(self.line(line)),
                hint="see the README: The step catalog and compositions",
            )


def load_composition(
    path: str | Path,
    load: Loader,
    catalog: StepCatalog | None,
    name: str | None = None,
) -> tuple[Notebook, str, Verify]:
    """The composed notebook, its pipeline name, and the check to run on the pipeline built
    from it (every input comes from the step it is wired to)."""
    doc = _Document(Path(path))
    doc.check()
    return _compose(doc, load, catalog, name)


def _compose(
    doc: _Document,
    load: Loader,
    catalog: StepCatalog | None,
    name: str | None,
) -> tuple[Notebook, str, Verify]:
    sources = _sources(doc, load, catalog)
    order = _order(doc, sources)
    parameters = _parameters(doc, sources, order)
    _check_types(doc, sources, catalog)
    nb = _notebook(doc.path, [sources[n] for n in order], parameters)
    pipeline_name = name or doc.data.get("name") or dns_label(doc.path.stem, fallback="composed")

    def verify(pipeline: Pipeline) -> None:
        _verify(doc, sources, pipeline)

    return nb, str(pipeline_name), verify


# ------------------------------------------------------------------- Kale's notebook: cells
class _KaleDocument(_Document):
    """A Kale composition read as a composition file: each referenced notebook's steps, named
    ``NOTEBOOK-STEP``, wired as in that notebook; each notebook runs after the one before."""

    def __init__(self, nb: Notebook, refs: list[tuple[int, str]], load: Loader) -> None:
        self.path = Path(nb.path)
        self.cells: list[int] = []
        steps: list[dict[str, Any]] = []
        previous: list[str] = []
        for cell, ref in refs:
            target = self.path.parent / (ref if ref.endswith(".ipynb") else f"{ref}.ipynb")
            if not target.is_file():
                raise CompositionError(
                    f"notebook:{ref} refers to {target}, which is not there (a notebook of only "
                    "notebook: cells is Kale's composition of the notebooks it names)",
                    where=f"{self.path}: cell {cell}",
                    hint="put the referenced notebook next to this one, or fix the tag",
                )
            _, pipeline = load(target, "auto", None)
            prefix = dns_label(Path(ref).name.removesuffix(".ipynb"), max_len=MAX_NAME // 2)
            names = {st.name: dns_label(f"{prefix}-{st.name}") for st in pipeline.steps}
            for st in pipeline.steps:
                steps.append(
                    {
                        "name": names[st.name],
                        "notebook": str(target),
                        "step": st.name,
                        "inputs": {v: f"{names[up]}.{v}" for v, up in st.inputs.items()},
                        "after": [names[a] for a in st.after] or previous,
                    }
                )
                self.cells.append(cell)
            downstream = {a for st in pipeline.steps for a in st.after}
            previous = [names[st.name] for st in pipeline.steps if st.name not in downstream]
        self.data = {"steps": steps}

    def at(self, line: int) -> str:
        return f"{self.path}: cell {line}"

    def line(self, keys: Sequence[Any]) -> int:
        if len(keys) >= 2 and keys[0] == "steps" and isinstance(keys[1], int):
            return self.cells[keys[1]]
        return self.cells[0]


def load_kale_composition(
    nb: Notebook,
    refs: list[tuple[int, str]],
    load: Loader,
    catalog: StepCatalog | None,
    name: str | None = None,
) -> tuple[Notebook, str, Verify]:
    """Kale 2.3's composition (a notebook of ``notebook:NAME`` cells) as a composed pipeline:
    the referenced notebooks' steps, each notebook after the one before, no value shared."""
    doc = _KaleDocument(nb, refs, load)
    name = name or dns_label(Path(nb.path).name.removesuffix(".ipynb"), fallback="composed")
    return _compose(doc, load, catalog, name)


# ------------------------------------------------------------------------------- the steps
def _sources(doc: _Document, load: Loader, catalog: StepCatalog | None) -> dict[str, _Source]:
    sources: dict[str, _Source] = {}
    loaded: dict[tuple[str, str, str | None], tuple[Notebook, Pipeline]] = {}
    for i, item in enumerate(doc.data["steps"]):
        line = doc.line(["steps", i])
        nb, pipeline, step = _source_step(doc, item, line, load, catalog, loaded)
        name = str(item.get("name") or step)
        if name in sources:
            raise CompositionError(
                f"duplicate step name {name!r} (also on line {sources[name].line})",
                where=doc.at(line),
                hint="give one of them another 'name:'",
            )
        source = _Source(name, line, nb, pipeline, step)
        for var, wire in (item.get("inputs") or {}).items():
            upstream, _, upstream_var = str(wire).partition(".")
            source.wires[str(var)] = (upstream, upstream_var or str(var))
            source.wire_lines[str(var)] = doc.line(["steps", i, "inputs", var])
        source.after = [str(a) for a in item.get("after") or []]
        sources[name] = source
    for source in sources.values():
        _check_wires(doc, source, sources)
        for upstream in source.after:
            if upstream not in sources:
                raise CompositionError(
                    f"step {source.name!r} runs after step {upstream!r}, which is not in the "
                    "composition",
                    where=doc.at(source.line),
                )
    return sources


def _source_step(
    doc: _Document,
    item: dict[str, Any],
    line: int,
    load: Loader,
    catalog: StepCatalog | None,
    loaded: dict[tuple[str, str, str | None], tuple[Notebook, Pipeline]],
) -> tuple[Notebook, Pipeline, str]:
    if ("catalog" in item) == ("notebook" in item or "step" in item):
        raise CompositionError(
            "a step is either 'notebook:' and 'step:', or 'catalog: PIPELINE/STEP'",
            where=doc.at(line),
        )
    if "catalog" in item:
        return _catalog_step(doc, str(item["catalog"]), line, load, catalog, loaded)
    if "step" not in item:
        raise CompositionError("'notebook:' needs 'step:' (which of its steps)", where=doc.at(line))
    path = Path(str(item["notebook"]))
    path = path if path.is_absolute() else doc.path.parent / path
    key = (str(path), str(item.get("split") or "auto"), None)
    if key not in loaded:
        loaded[key] = load(path, key[1], None)
    nb, pipeline = loaded[key]
    step = str(item["step"])
    if step not in [s.name for s in pipeline.steps]:
        raise CompositionError(
            f"{nb.path} has no step {step!r} (its steps: "
            + ", ".join(s.name for s in pipeline.steps)
            + ")",
            where=doc.at(doc.line(["steps", doc.data["steps"].index(item), "step"])),
        )
    return nb, pipeline, step


def _catalog_step(
    doc: _Document,
    ref: str,
    line: int,
    load: Loader,
    catalog: StepCatalog | None,
    loaded: dict[tuple[str, str, str | None], tuple[Notebook, Pipeline]],
) -> tuple[Notebook, Pipeline, str]:
    if catalog is None:
        raise CompositionError(
            f"step {ref!r} comes from the catalog, and there is no catalog here",
            where=doc.at(line),
            hint="set JUP2KUB_CATALOG (or build --catalog URL), or record the notebook first "
            "(jup2kub catalog add NOTEBOOK)",
        )
    record = catalog.find(ref)
    key = (record.notebook, "auto", record.pipeline)
    if key not in loaded:
        loaded[key] = load(Path(record.notebook), "auto", record.pipeline)
    nb, pipeline = loaded[key]
    steps = {s.name: s for s in pipeline.steps}
    if (
        record.step not in steps
        or code_hash(step_code(pipeline, steps[record.step])) != record.code_sha256
    ):
        raise CompositionError(
            f"catalogued step {record.key!r} is no longer in {record.notebook} as catalogued "
            "(its code changed)",
            where=doc.at(line),
            hint=f"record it again: jup2kub catalog add {record.notebook}",
        )
    return nb, pipeline, record.step


def _check_wires(doc: _Document, source: _Source, sources: dict[str, _Source]) -> None:
    original = source.pipeline.step(source.step)
    for var, (upstream, upstream_var) in source.wires.items():
        at = doc.at(source.wire_lines[var])
        if var not in original.inputs:
            raise CompositionError(
                f"step {source.name!r} does not read {var!r} "
                f"(its inputs: {', '.join(sorted(original.inputs)) or 'none'})",
                where=at,
            )
        if upstream not in sources:
            raise CompositionError(
                f"step {source.name!r}: input {var!r} is wired to step {upstream!r}, which is "
                "not in the composition",
                where=at,
            )
        up = sources[upstream]
        made = up.pipeline.step(up.step)
        if upstream_var not in made.outputs | made.changes:
            raise CompositionError(
                f"step {source.name!r}: input {var!r} is wired to {upstream}.{upstream_var}, "
                f"and step {upstream!r} does not write {upstream_var!r}",
                where=at,
            )
    for var, from_step in sorted(original.inputs.items()):
        if var not in source.wires and var != RANDOM_STATE:
            raise CompositionError(
                f"step {source.name!r}: input {var!r} is not connected (in {source.nb.path} it "
                f"came from step {from_step!r})",
                where=doc.at(source.line),
                hint=f"wire it: inputs: {{{var}: STEP.VARIABLE}}",
            )


def _order(doc: _Document, sources: dict[str, _Source]) -> list[str]:
    """The steps in an order that respects the wiring (the file's order where free)."""
    graph = {
        n: sorted({up for up, _ in s.wires.values()} | set(s.after)) for n, s in sources.items()
    }
    try:
        return stable_order(graph)
    except graphlib.CycleError as exc:
        cycle = list(reversed(exc.args[1]))
        first = sources[cycle[0]]
        raise CompositionError(
            "the wiring has a cycle: " + " -> ".join(cycle), where=doc.at(first.line)
        ) from None


# ------------------------------------------------------------------------------ parameters
def _parameters(doc: _Document, sources: dict[str, _Source], order: list[str]) -> dict[str, Any]:
    """The composition's parameter values. The notebooks' parameters cells run one after the
    other (in ``order``), so a later notebook's default wins: a step whose own notebook gives
    one of its parameters another default (or one that is not a literal), with no value here,
    is refused, since its value would change silently."""
    given = dict(doc.data.get("parameters") or {})
    defaults: dict[str, dict[str, Any]] = {}
    final: dict[str, tuple[Any, str]] = {}
    for name in order:
        nb = sources[name].nb
        if nb.path not in defaults:
            mine: dict[str, Any] = {}
            for i in sources[name].pipeline.parameter_cells:
                mine.update(parameter_defaults(nb.cells[i].source))
            defaults[nb.path] = mine
            final.update({p: (v, nb.path) for p, v in mine.items()})
    for name in order:
        source = sources[name]
        secret = {s.name for s in source.pipeline.secret_parameters}
        for param in sorted(source.pipeline.step(source.step).parameters - set(given)):
            value = defaults[source.nb.path].get(param)
            won, where = final.get(param, (value, source.nb.path))
            if where == source.nb.path or (won == value and value is not None):
                continue
            shown = "" if param in secret else f" {value!r}"
            other = "" if param in secret else f" {won!r}"
            raise CompositionError(
                f"step {source.name!r}: parameter {param!r} defaults to{shown} in "
                f"{source.nb.path} and to{other} in {where}",
                where=doc.at(source.line),
                hint=f"choose its value: parameters: {{{param}: VALUE}}",
            )
    every = {p for s in sources.values() for p in s.pipeline.parameters}
    for param in given:
        if param not in every:
            raise CompositionError(
                f"parameters: {param!r} is no parameter of the composed steps' notebooks",
                where=doc.at(doc.line(["parameters", param])),
            )
    return given


# ------------------------------------------------------------------------------ types
def _check_types(doc: _Document, sources: dict[str, _Source], catalog: StepCatalog | None) -> None:
    """A wire whose two ends have different types in the catalog (observed by runs) is refused."""
    wired = [
        (s, var, up, up_var) for s in sources.values() for var, (up, up_var) in s.wires.items()
    ]
    if not wired or catalog is None:
        return
    records = {r.key: r for r in catalog.steps()}

    def recorded(source: _Source) -> CataloguedStep | None:
        return records.get(f"{source.pipeline.name}/{source.step}")

    for source, var, upstream, up_var in wired:
        reader, writer = recorded(source), recorded(sources[upstream])
        if reader is None or writer is None:
            continue
        wanted = reader.inputs.get(var, {}).get("type", UNKNOWN)
        made = writer.outputs.get(up_var, UNKNOWN)
        if UNKNOWN not in (wanted, made) and wanted != made:
            raise CompositionError(
                f"step {source.name!r}: input {var!r} was a {wanted} in its runs, and "
                f"{upstream}.{up_var} is a {made}",
                where=doc.at(source.wire_lines[var]),
                hint="wire a value of the same type, or convert it in a step of its own",
            )


# ------------------------------------------------------------------------------ the notebook
_OPTION = re.compile(r"^#\|\s*(step|prev|tags)\s*:.*\n?", re.MULTILINE)


def _strip_options(source: str) -> str:
    """The cell without its own step options (the composition names the steps)."""
    lines = source.splitlines(keepends=True)
    kept = []
    leading = True
    for line in lines:
        if leading and _OPTION.match(line):
            continue
        leading = leading and line.startswith("#|")
        kept.append(line)
    return "".join(kept)


def _notebook(path: Path, order: list[_Source], parameters: dict[str, Any]) -> Notebook:
    node = new_notebook()
    node.metadata = {
        "kernelspec": {"name": "python3", "display_name": "Python 3", "language": "python"},
        "jup2kub": {"composition": str(path)},
    }
    cells: list[Any] = []
    params: list[str] = []
    seen: set[tuple[str, int]] = set()
    for source in order:
        for i in source.pipeline.parameter_cells:
            if (source.nb.path, i) not in seen:
                seen.add((source.nb.path, i))
                params.append(_strip_options(source.nb.cells[i].source).rstrip("\n"))
    params += [f"{k} = {v!r}" for k, v in parameters.items()]
    if params:
        cell = new_code_cell("\n".join(params))
        cell.metadata["tags"] = ["parameters"]
        cells.append(cell)
    for source in order:
        cells.extend(_step_cells(source))
    for i, cell in enumerate(cells):
        cell["id"] = f"c{i}"
    node.cells = cells
    raw = writes(node).encode()
    return Notebook(
        path=str(path),
        cells=tuple(
            Cell(i, c.cell_type, c.source, tuple(c.metadata.get("tags", ())), dict(c.metadata))
            for i, c in enumerate(cells)
        ),
        node=node,
        sha256=hashlib.sha256(raw).hexdigest(),
    )


def _step_cells(source: _Source) -> list[Any]:
    step = source.pipeline.step(source.step)
    marker = f"#| step: {source.name}\n"
    if source.after:
        marker += f"#| prev: [{', '.join(source.after)}]\n"
    head = [d.source.rstrip("\n") for d in step.replay]
    head += [
        f"{var} = {up_var}" for var, (_, up_var) in sorted(source.wires.items()) if var != up_var
    ]
    # The marker gets a cell of its own, so the step's cells stay as they were (a cell magic
    # must stay first); ``pass`` last: a replayed setup call's value is not displayed.
    cells = [new_code_cell(marker + "\n".join([*head, "pass"]))]
    for index in step.cells:
        cells.append(new_code_cell(_strip_options(source.nb.cells[index].source)))
    return cells


def _verify(doc: _Document, sources: dict[str, _Source], pipeline: Pipeline) -> None:
    """Each wired input is read from the step it is wired to (not from another step that
    happens to bind the same name before it)."""
    for source in sources.values():
        step = pipeline.step(source.name)
        wired = {up_var for _, up_var in source.wires.values()} | {RANDOM_STATE}
        for var, writer in sorted(step.inputs.items()):
            if var not in wired:
                raise CompositionError(
                    f"step {source.name!r} reads {var!r}, which its notebook does not give it "
                    f"there, from step {writer!r} of the composition",
                    where=doc.at(source.line),
                    hint=f"in {source.nb.path} the step reads {var!r} from no step of its own; "
                    "define it there, or make it a parameter",
                )
        for var, (upstream, up_var) in source.wires.items():
            got = step.inputs.get(up_var)
            if got is not None and got != upstream:
                raise CompositionError(
                    f"step {source.name!r}: input {var!r} wired to {upstream}.{up_var} would be "
                    f"read from step {got!r}, which also binds {up_var!r}",
                    where=doc.at(source.wire_lines[var]),
                    hint="wire it to the latest step that writes it, or rename in between",
                )
