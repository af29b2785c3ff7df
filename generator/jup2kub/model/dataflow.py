"""The step graph: which values cross which step boundary, and in what order steps may run.

Cells are replayed in notebook order, step by step. A read resolves to this step's own earlier
definition or else to the latest definer before this step, which makes it an *input* (a value
that travels through storage), a *parameter*, or *code* (an import, ``def`` or ``class`` that is
re-executed in the reading step instead of shipped). A step that only conditionally defines a
value another step reads must pass the older value on, so it reads it too.
"""

from __future__ import annotations

import graphlib
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any

from jup2kub.errors import CycleError, UnknownStepError
from jup2kub.model import cacheability
from jup2kub.model.analysis import BUILTIN_NAMES, CellAnalysis, Event, Statement, Summary
from jup2kub.model.analysis.calls import call_effects, changed_by
from jup2kub.model.analysis.effects import DRAW, SEED, AliasClasses, random_effect
from jup2kub.model.analysis.modules import module_file_of, module_reads
from jup2kub.model.kale import SplitWarning
from jup2kub.model.learned import InPlaceChange
from jup2kub.model.mapping import plan_maps
from jup2kub.model.names import check_pipeline_name, dns_label, pipeline_name_for
from jup2kub.model.notebook import Notebook
from jup2kub.model.parameters import parameter_defaults, parameter_expressions
from jup2kub.model.pipeline import Definition, Diagnostic, Pipeline, Step, Unshippable
from jup2kub.model.secrets import find_secrets, redact
from jup2kub.model.split import Split, StepCells, raising_cells
from jup2kub_runtime.contract.mapspec import MapSpec
from jup2kub_runtime.execution.randomness import RANDOM_STATE

#: seeding calls of generators the runtime does not carry (torch, TensorFlow, ...)
FOREIGN_SEEDERS = ("manual_seed", "set_seed", "set_random_seed", "manual_seed_all")


@dataclass
class _Definer:
    step: str | None  # None: a parameters cell
    kind: str  # "value" | "param" | "code" | "deleted" | "rerun" (re-run by every step)
    certain: bool
    prior: _Definer | None = None
    definition: Definition | None = None
    def_reads: tuple[str, ...] = ()
    summary: Summary | None = None
    unshippable: tuple[str, int, int] | None = None  # (what, cell, line)


class _Builder:
    def __init__(
        self, nb: Notebook, split: Split, cells: dict[int, CellAnalysis], name: str
    ) -> None:
        self.nb = nb
        self.name = name
        self.split = split
        self.cells = cells
        self.env: dict[str, _Definer] = {}
        self.stars: list[Definition] = []
        self.setups: list[tuple[Definition, tuple[str, ...]]] = []
        self.steps: dict[str, Step] = {}
        self.warnings: list[Diagnostic] = []
        self.unshippable: list[Unshippable] = []
        self.aliases = AliasClasses()
        #: names bound by imports so far -> what they stand for (``np`` -> ``numpy``)
        self.imports: dict[str, str] = {}
        #: import statements so far, by top-level package (replayed together)
        self.package_imports: dict[str, list[Definition]] = {}
        self.order: dict[str, int] = {}

    # ---------------------------------------------------------------- resolution
    def build(self, assess: bool, learned: Sequence[InPlaceChange]) -> Pipeline:
        self._resolve()
        steps = [self.steps[s.name] for s in self.split.steps]
        self._file_dependencies(steps)
        self._edges(steps)
        secrets = [s for i in self.split.parameters for s in find_secrets(i, self.cells[i].python)]
        secret_names = [s.name for s in secrets]
        python = {i: c.python for i, c in self.cells.items()}
        for i in self.split.parameters:  # no secret literal in anything written from here on
            python[i] = redact(python[i], set(secret_names))
        maps, cache = self._assess(steps, python, set(secret_names)) if assess else ({}, {})
        return Pipeline(
            name=self.name,
            notebook=self.nb.path,
            split=self.split.mode,
            parameters=self._defaults(secret_names),
            parameter_cells=list(self.split.parameters),
            steps=steps,
            prelude=list(self.split.prelude),
            skipped=list(self.split.skipped),
            python=python,
            notebook_sha256=self.nb.sha256,
            warnings=self.warnings,
            unshippable=self.unshippable,
            split_warnings=[
                *self.split.warnings,
                *(SplitWarning(s.cell, s.warning()) for s in secrets),
            ],
            secret_parameters=secrets,
            cache=dict(cache),
            parameter_expressions=self._expressions(python, set(secret_names)),
            maps=maps,
            raising_cells=raising_cells(self.nb),
            learned=list(learned),
        )

    def _assess(
        self, steps: list[Step], python: dict[int, str], secrets: set[str]
    ) -> tuple[dict[int, MapSpec], dict[str, cacheability.StepCache]]:
        """The map cells of the steps, and whether each step may be cached."""
        in_steps = {i for s in steps for i in s.cells}
        maps = plan_maps(self.nb, self.cells.values())
        cache = cacheability.assess(self.nb, steps, python, secrets, self.cells.values())
        return {i: m for i, m in maps.items() if i in in_steps}, cache

    def _resolve(self) -> None:
        """Parameters cells and steps, in notebook order."""
        units: list[tuple[int, StepCells | None]] = [(i, None) for i in self.split.parameters]
        units += [(s.cells[0], s) for s in self.split.steps]
        units.sort(key=lambda u: u[0])
        for first_cell, sc in units:
            if sc is None:
                self._parameters_cell(first_cell)
            else:
                self._step(sc)

    def _defaults(self, secrets: list[str]) -> dict[str, Any]:
        """Each parameter's literal default (None: not a literal, or a secret)."""
        parameters: dict[str, Any] = {}
        for i in self.split.parameters:
            parameters.update(parameter_defaults(self.cells[i].python))
        parameters.update(dict.fromkeys(secrets))
        return parameters

    def _expressions(self, python: dict[int, str], secrets: set[str]) -> dict[str, str]:
        expressions: dict[str, str] = {}
        for i in self.split.parameters:  # a later cell's assignment wins
            written = parameter_expressions(python[i])
            for key in parameter_defaults(python[i]):
                expressions.pop(key, None)
                if key in written and key not in secrets:
                    expressions[key] = written[key]
        return expressions

    def _parameters_cell(self, index: int) -> None:
        for st in self.cells[index].statements:
            self.imports.update(st.imports)
            for e in st.events:
                if e.kind == "call" and random_effect(e.name, e.keywords, self.imports) == SEED:
                    self.seeded_in_every_step()
                elif e.kind == "def":
                    if e.name in st.code_names:
                        self.env[e.name] = _Definer(None, "code", True, definition=_definition(st))
                    else:
                        self.env[e.name] = _Definer(None, "param", True)

    def seeded_in_every_step(self) -> None:
        """A seed in code every step re-runs (the parameters cell, a Kale prelude): the first
        step that draws starts from it; later ones continue from the step that drew before."""
        if RANDOM_STATE not in self.env:
            self.env[RANDOM_STATE] = _Definer(None, "rerun", True)

    def _step(self, sc: StepCells) -> None:
        step = Step(sc.name, sc.source_name, list(sc.cells))
        step.prev = [p for p, _ in sc.prev]
        step.pod = sc.pod
        step.grouping = list(sc.grouping)
        self.steps[sc.name] = step
        self.order[sc.name] = len(self.order)
        step.seeded_before = RANDOM_STATE in self.env
        aliased_at_start = self.aliases.snapshot()
        r = _StepResolver(self, step)
        for setup, reads in self.setups:
            step.replay.append(setup)
            for name in reads:
                r.read(name, setup.cell, setup.line, env_only=True)
        r.in_prelude = True
        for index in self.split.prelude:
            for st in self.cells[index].statements:
                step.replay.append(_definition(st, "prelude"))
                r.statement(st)
        r.in_prelude = False
        for index in sc.cells:
            for st in self.cells[index].statements:
                r.statement(st)
        if r.submodules:
            step.replay.append(_submodule_imports(sorted(r.submodules)))
        step.replay = sorted(set(step.replay), key=lambda d: (d.cell, d.line))
        step.changes = {n for n, local in r.local.items() if local.kind == "value"}
        step.aliases = self.aliases.snapshot()
        self._one_source_per_object(step, aliased_at_start)
        sts = [st for i in sc.cells for st in self.cells[i].statements]
        opaque = next(((st.cell, st.opaque) for st in sts if st.opaque), None)
        step.barrier = opaque
        step.opaque_read = any(st.opaque_read for st in sts)
        step.written_files = sorted({w for st in sts for w in st.file_writes})
        step.writes_files = opaque is not None or bool(step.written_files)
        for name, local in r.local.items():
            prior = self.env.get(name)
            self.env[name] = _Definer(
                sc.name,
                local.kind,
                local.certain,
                prior,
                local.definition,
                local.def_reads,
                local.summary,
                local.unshippable,
            )
        step.seeded_after = RANDOM_STATE in self.env
        for st in r.new_setups:
            reads = tuple(dict.fromkeys(e.name for e in st.events if e.kind == "read"))
            self.setups.append((_definition(st, "setup"), reads))
        self.stars.extend(r.new_stars)

    def _one_source_per_object(self, step: Step, aliased: list[frozenset[str]]) -> None:
        """Names that may share an object reach ``step`` from one stored group, so that it sees
        one object as the notebook does: from the latest of their definers, which then passes
        the others on."""
        for group in aliased:
            members = sorted(group.intersection(step.inputs))
            if len(members) < 2:
                continue
            sources = {step.inputs[n] for n in members}
            if len(sources) < 2:
                continue
            latest = max(sources, key=self.order.__getitem__)
            for name in members:
                if step.inputs[name] != latest:
                    definer = self.env[name]
                    self.add_input(self.steps[latest], name, definer)
                    step.inputs[name] = latest
                    self.steps[latest].outputs.add(name)

    def add_input(self, step: Step, name: str, definer: _Definer, *, carried: bool = False) -> None:
        """``step`` reads ``name`` from ``definer`` (``carried``: only to hand it on, in case
        its own conditional definition does not happen)."""
        if definer.kind == "param":
            step.parameters.add(name)
            return
        assert definer.step is not None
        step.inputs[name] = definer.step
        source = self.steps[definer.step]
        source.outputs.add(name)
        if definer.unshippable is not None and carried:
            # needed only if the carrying step's definition does not happen: the runtime stores
            # a placeholder that fails loudly when used, instead of refusing a correct notebook
            source.placeholders.add(name)
        elif definer.unshippable is not None:
            what, cell, line = definer.unshippable
            problem = Unshippable(name, what, definer.step, step.name, cell, line)
            if problem not in self.unshippable:
                self.unshippable.append(problem)
        prior = definer.prior
        if (
            not definer.certain
            and prior is not None
            and prior.kind in ("value", "param")
            and name not in source.inputs
        ):
            # The defining step may leave the name untouched: it must carry the older value on.
            self.add_input(source, name, prior, carried=True)

    # ---------------------------------------------------------------- edges
    def _file_dependencies(self, steps: list[Step]) -> None:
        writes: dict[str, set[str]] = {}
        literals: dict[str, set[str]] = {}
        modules: dict[str, set[str]] = {}
        for s in steps:
            sts = [st for i in s.cells for st in self.cells[i].statements]
            writes[s.name] = {w for st in sts for w in st.file_writes if len(w) >= 3}
            literals[s.name] = {lit for st in sts for lit in st.literals}
            replayed = [(d.cell, d.line) for d in s.replay]
            modules[s.name] = module_reads(s.cells, replayed, self.cells)

        def used(paths: set[str], reader: Step) -> set[str]:
            return {
                p
                for p in paths
                if any(p in lit for lit in literals[reader.name])
                or module_file_of(p, modules[reader.name])
            }

        for j, later in enumerate(steps):
            for earlier in steps[:j]:
                if not writes[earlier.name] and not writes[later.name]:
                    continue  # most pairs: neither writes a file
                shared = used(writes[earlier.name], later) | used(writes[later.name], earlier)
                if shared:
                    later.file_deps[earlier.name] = shared

    def _edges(self, steps: list[Step]) -> None:
        names = [s.name for s in steps]
        order = {n: i for i, n in enumerate(names)}
        known = set(names)
        for j, s in enumerate(steps):
            after = set(s.inputs.values()) | set(s.file_deps)
            after |= _opaque_order(steps, j)
            sc = next(x for x in self.split.steps if x.name == s.name)
            for target, cell in sc.prev:
                label = dns_label(target)
                if label not in known:
                    raise UnknownStepError(self.nb.path, cell, s.name, target, names)
                after.add(label)
            s.after = sorted(after, key=order.__getitem__)
        graph = {s.name: s.after for s in steps}
        try:
            graphlib.TopologicalSorter(graph).prepare()
        except graphlib.CycleError as exc:
            cycle = list(reversed(exc.args[1]))
            raise CycleError(self.nb.path, cycle) from None


@dataclass
class _Local:
    kind: str  # "value" | "code" | "deleted"
    certain: bool
    definition: Definition | None = None
    def_reads: tuple[str, ...] = ()
    summary: Summary | None = None
    unshippable: tuple[str, int, int] | None = None


class _StepResolver:
    """Replays one step's statements against what earlier steps defined."""

    def __init__(self, builder: _Builder, step: Step) -> None:
        self.b = builder
        self.step = step
        self.local: dict[str, _Local] = {}
        self.expanded: set[str] = set()
        self.new_setups: list[Statement] = []
        self.new_stars: list[Definition] = []
        self.cell = 0
        self.in_prelude = False
        self.submodules: set[str] = set()

    def statement(self, st: Statement) -> None:
        self.cell = st.cell
        code = set(st.code_names)
        definition = _definition(st) if code else None
        def_reads = tuple(e.name for e in st.events if e.kind == "read") if code else ()
        if definition is not None and st.imports:
            self._imports(st, definition)
        seeds = any(
            e.kind == "call" and random_effect(e.name, e.keywords, self.b.imports) == SEED
            for e in st.events
        )
        foreign = [e for e in st.events if e.kind == "call" and e.name.endswith(FOREIGN_SEEDERS)]
        for e in foreign:
            self._warn(
                st.cell,
                e.line,
                f"{e.name}(...) seeds a generator whose state is not carried between steps "
                "(only random's and NumPy's are): it is re-run at the start of every later "
                "step, so draws there restart its stream; keep the draws in this step",
            )
        if (
            st.setup_root is not None
            and not seeds  # the random state travels as a value instead (RANDOM_STATE)
            and (st.setup_root == "%" or self._kind(st.setup_root) == "code")
        ):
            self.new_setups.append(st)
        for e in st.events:
            if e.kind == "read":
                self.read(e.name, st.cell, e.line)
            elif e.kind == "def":
                self.define(e, st, definition, def_reads, code)
            elif e.kind == "del":
                if e.certain:
                    self.local[e.name] = _Local("deleted", True)
                    self.b.aliases.rebind(e.name)
                elif e.name in self.local and not self.local[e.name].certain:
                    # maybe deleted, maybe never bound here (an ``except ... as`` name)
                    del self.local[e.name]
            elif e.kind == "mutate":
                self.mutate(e.name, st.cell, e.line, bound_here=e.bound_here)
            elif e.kind == "alias":
                values = [n for n in e.sources if self._kind(n) in ("value", "param")]
                self.b.aliases.join(e.name, values)
            elif e.kind == "call":
                self.call(e, st.cell)
        if st.star_import:
            self.new_stars.append(_definition(st, "star"))
        self._submodules(st)

    def _submodules(self, st: Statement) -> None:
        """Submodules the step's attribute chains may reach (``matplotlib.pyplot`` after an
        implicit import by seaborn): imported before the cells when they exist."""
        explicit = set(self.b.imports.values())
        for chain in st.chains:
            head, *parts = chain.split(".")
            module = self.b.imports.get(head)
            if module is None or self._kind(head) != "code" or module.startswith("."):
                continue
            # a prefix followed by another attribute: ``matplotlib.pyplot`` in ``..pyplot.figure``
            for depth in range(1, min(len(parts) - 1, 3) + 1):
                candidate = ".".join([module, *parts[:depth]])
                if candidate not in explicit:
                    self.submodules.add(candidate)

    def define(
        self,
        e: Event,
        st: Statement,
        definition: Definition | None,
        def_reads: tuple[str, ...],
        code: set[str],
    ) -> None:
        if e.certain and not e.in_place:
            self.b.aliases.rebind(e.name)  # a new object: no longer shares the old one's
        if e.name in code:
            self.local[e.name] = _Local(
                "code", True, definition, def_reads, st.summaries.get(e.name)
            )
            return
        previous = self.local.get(e.name)
        certain = e.certain or (
            previous is not None and previous.certain and previous.kind == "value"
        )
        what = (e.unshippable, st.cell, e.line) if e.unshippable else None
        self.local[e.name] = _Local("value", certain, unshippable=what)

    def _imports(self, st: Statement, definition: Definition) -> None:
        """Record what the import binds; replay earlier imports of the same packages, since
        ``import matplotlib`` alone reaches ``matplotlib.pyplot`` only if it was imported."""
        for bound, module in st.imports.items():
            self.b.imports[bound] = module
            package = module.lstrip(".").split(".")[0]
            earlier = self.b.package_imports.setdefault(package, [])
            self.step.replay.extend(d for d in earlier if d not in self.step.replay)
            earlier.append(definition)

    def call(self, e: Event, cell: int) -> None:
        effect = random_effect(e.name, e.keywords, self.b.imports)
        if effect == SEED and self.in_prelude:
            self.b.seeded_in_every_step()
        elif effect == SEED:
            self.local[RANDOM_STATE] = _Local("value", e.certain)
        elif effect == DRAW:
            self.mutate(RANDOM_STATE, cell, e.line)
        changed = changed_by(e.site, self._summary, self._methods) if e.site else set()
        for name in sorted(changed):
            self.mutate(name, cell, e.line)

    def _methods(self, receiver: str, method: str) -> set[str]:
        """The notebook classes in scope whose method ``receiver.method`` may be (none for a
        module's function: ``np.append``)."""
        if receiver in self.b.imports:
            return set()
        names = set(self.local) | set(self.b.env)
        return {
            name
            for name in names
            if (s := self._summary(name)) is not None
            and s.kind == "class"
            and method in dict(s.inner)
        }

    def _summary(self, name: str) -> Summary | None:
        local = self.local.get(name)
        if local is not None:
            return local.summary if local.kind == "code" else None
        definer = self.b.env.get(name)
        return definer.summary if definer is not None and definer.kind == "code" else None

    def _kind(self, name: str) -> str | None:
        if name in self.local:
            return self.local[name].kind
        definer = self.b.env.get(name)
        return definer.kind if definer else None

    def mutate(self, name: str, cell: int, line: int, *, bound_here: bool = False) -> None:
        """Changing an object changes it under every name that may share it (``bound_here``:
        ``name`` itself holds an object bound in this loop body or branch, not an input)."""
        for member in sorted(self.b.aliases.members(name)):
            if member == name:
                if not bound_here:
                    self._mutate_one(member, cell, line)
            elif not self._unshippable(member):  # a file or lock shares no data with a list
                self._mutate_one(member, cell, line)

    def _unshippable(self, name: str) -> bool:
        local = self.local.get(name)
        if local is not None:
            return local.unshippable is not None
        definer = self.b.env.get(name)
        return definer is not None and definer.unshippable is not None

    def _mutate_one(self, name: str, cell: int, line: int) -> None:
        local = self.local.get(name)
        if local is not None and local.certain and local.kind != "deleted":
            return
        definer = self.b.env.get(name)
        if definer is not None and definer.kind == "rerun":
            self.local[name] = _Local("value", True)  # starts from the re-run seed
            return
        if definer is None or definer.kind not in ("value", "param"):
            return
        self.read(name, cell, line)
        self.local[name] = _Local("value", True)

    def read(self, name: str, cell: int, line: int, *, env_only: bool = False) -> None:
        local = None if env_only else self.local.get(name)
        if local is not None:
            if local.kind == "deleted":
                self._warn(cell, line, f"reads {name!r} after deleting it")
                return
            if local.kind == "code":
                self._expand(name, local.summary, cell, line)
                return
            if local.certain:
                return
        definer = self.b.env.get(name)
        if definer is None or definer.kind == "deleted":
            if local is not None or name in BUILTIN_NAMES or name == RANDOM_STATE:
                return
            if self.b.stars or self.new_stars:
                self.step.replay.extend(self.b.stars)
                return
            if definer is not None:
                self._warn(cell, line, f"reads {name!r}, which step {definer.step!r} deleted")
            else:
                self._warn(cell, line, f"reads {name!r}, which no earlier cell defines")
            return
        if definer.kind == "code":
            assert definer.definition is not None
            if definer.definition not in self.step.replay:
                self.step.replay.append(definer.definition)
                package = self.b.imports.get(name, "").lstrip(".").split(".")[0]
                for sibling in self.b.package_imports.get(package, []) if package else []:
                    if sibling not in self.step.replay:
                        self.step.replay.append(sibling)
                for dependency in definer.def_reads:
                    self.read(
                        dependency, definer.definition.cell, definer.definition.line, env_only=True
                    )
            self._expand(name, definer.summary, cell, line)
            return
        self.b.add_input(self.step, name, definer)

    def _expand(self, name: str, summary: Summary | None, cell: int, line: int) -> None:
        """Using a function or class reads its body's free names (transitively) at this point."""
        if summary is None or name in self.expanded:
            return
        self.expanded.add(name)
        for dependency in sorted(summary.reads):
            self.read(dependency, cell, line)
        changes = call_effects((name,), self._summary, self._methods)
        through = changes.globals if changes is not None else frozenset()
        for written in sorted(summary.writes | through):
            if written in self.b.imports and self._kind(written) == "code":
                continue  # ``re.compile(..)`` in the body: a call on a module, not a change
            if written in through:  # changed in place by a function it calls: for every alias
                self.mutate(written, cell, line)
            if written not in self.local or not self.local[written].certain:
                self.local[written] = _Local("value", False)
        effects = {random_effect(c, k, self.b.imports) for c, k in summary.calls}
        if SEED in effects:
            self.local[RANDOM_STATE] = _Local("value", True)
        elif DRAW in effects:
            self.mutate(RANDOM_STATE, cell, line)

    def _warn(self, cell: int, line: int, message: str) -> None:
        diag = Diagnostic(self.step.name, cell, line, message)
        if diag not in self.b.warnings:
            self.b.warnings.append(diag)


def _opaque_order(steps: list[Step], j: int) -> set[str]:
    """Steps that ``steps[j]`` must follow because of effects the analysis cannot follow: a
    barrier (shell command, file written under a computed name) runs after every earlier step
    and before every later one; a read under a computed name follows earlier writers."""
    s = steps[j]
    earlier = steps[:j]
    if s.barrier is not None:
        return {e.name for e in earlier}
    barriers = [e.name for e in earlier if e.barrier is not None]
    after = set(barriers[-1:])  # the latest barrier already follows every step before it
    if s.opaque_read:
        after |= {e.name for e in earlier if e.writes_files}
    return after


def _submodule_imports(modules: list[str]) -> Definition:
    """Replayed code importing ``modules`` where they exist, binding no name."""
    source = (
        f"for _j2k_module in {tuple(modules)!r}:  # submodules the notebook may have loaded\n"
        "    try:\n"
        "        __import__(_j2k_module)\n"
        "    except ImportError:\n"
        "        pass\n"
        "del _j2k_module"
    )
    return Definition(-1, 0, source, (), "submodules")


def _definition(st: Statement, kind: str = "code") -> Definition:
    names = st.code_names or tuple(dict.fromkeys(e.name for e in st.events if e.kind == "def"))
    return Definition(st.cell, st.line, st.source, names, kind)


def build_pipeline(
    nb: Notebook,
    split: Split,
    cells: Iterable[CellAnalysis],
    name: str | None = None,
    *,
    assess: bool = True,
    learned: Sequence[InPlaceChange] = (),
) -> Pipeline:
    """Resolve data flow across the steps of ``split``; raise on bad ``prev:`` or cycles. Then,
    with ``assess``, plan its map cells and decide each step's cacheability (without: the
    per-cell pipeline automatic grouping starts from, and a composition's, whose steps are
    neither mapped nor cached).

    ``name`` is the pipeline's name (default: from the notebook's file name); ``learned``: the
    in-place changes runs saw that ``cells`` include (recorded in the pipeline)."""
    name = check_pipeline_name(name) if name is not None else pipeline_name_for(nb.path)
    return _Builder(nb, split, {c.index: c for c in cells}, name).build(assess, learned)
