"""Static capture: each step's imports mapped to the distributions installed here, at their
exact versions. Versions come from the environment the notebook runs in
(``importlib.metadata``), because that is the set of packages the notebook is known to work
with."""

from __future__ import annotations

import ast
import hashlib
import importlib.metadata as md
import importlib.util
import json
import os
import sys
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

from packaging.markers import Marker
from packaging.requirements import InvalidRequirement, Requirement
from packaging.utils import NormalizedName, canonicalize_name

from jup2kub.build.deps.findings import DataFile, Dependencies, StepDeps
from jup2kub.build.deps.target import Target
from jup2kub.errors import InputError
from jup2kub.model.analysis.modules import module_file_of
from jup2kub.model.pipeline import Pipeline

#: What ``python -m jup2kub_runtime`` imports (pyproject's "runtime" dependencies).
RUNTIME_DISTRIBUTIONS = (
    "kafka-python",
    "flask",
    "cloudpickle",
    "prometheus-client",
    "opentelemetry-api",
    "opentelemetry-sdk",
    "opentelemetry-exporter-otlp-proto-http",
)

#: Steps whose code calls ``get_ipython()`` (magics, ``!cmd``) also need IPython.
IPYTHON_DISTRIBUTION = "ipython"

#: Our own packages are copied into the image from source, never installed from an index.
OWN_MODULES = frozenset({"jup2kub", "jup2kub_runtime"})

_IMPORT_ERRORS = frozenset({"ImportError", "ModuleNotFoundError", "Exception", "BaseException"})


def _handled(node: ast.AST, parents: Mapping[ast.AST, ast.AST]) -> bool:
    """Whether an import sits in a ``try`` that catches ImportError (an optional import)."""
    child, cur = node, parents.get(node)
    while cur is not None:
        if isinstance(cur, ast.Try) and child in cur.body:
            for h in cur.handlers:
                names = [h.type] if not isinstance(h.type, ast.Tuple) else list(h.type.elts)
                if h.type is None or any(
                    isinstance(n, ast.Name) and n.id in _IMPORT_ERRORS for n in names
                ):
                    return True
        child, cur = cur, parents.get(cur)
    return False


@dataclass(frozen=True)
class _Import:
    module: str  # dotted
    cell: int
    line: int
    optional: bool


def imports_of(source: str, cell: int) -> tuple[list[_Import], list[tuple[int, str]]]:
    """Absolute imports in ``source`` (incl. literal ``import_module``/``__import__`` calls),
    and the lines of dynamic imports static analysis cannot resolve."""
    try:
        tree = ast.parse(source)
    except SyntaxError:
        return [], []
    parents = {c: p for p in ast.walk(tree) for c in ast.iter_child_nodes(p)}
    found: list[_Import] = []
    dynamic: list[tuple[int, str]] = []
    for node in ast.walk(tree):
        names: list[str] = []
        if isinstance(node, ast.Import):
            names = [a.name for a in node.names]
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            names = [node.module]
        elif isinstance(node, ast.Call) and node.args:
            f = node.func
            callee = (
                f.attr if isinstance(f, ast.Attribute) else f.id if isinstance(f, ast.Name) else ""
            )
            if callee in ("import_module", "__import__"):
                arg = node.args[0]
                if isinstance(arg, ast.Constant) and isinstance(arg.value, str):
                    if not arg.value.startswith("."):
                        names = [arg.value]
                else:
                    dynamic.append((node.lineno, callee))
        for n in names:
            found.append(_Import(n, cell, getattr(node, "lineno", 0), _handled(node, parents)))
    return found, dynamic


def _module_distributions() -> Mapping[str, list[str]]:
    return md.packages_distributions()


def installed(name: str) -> md.Distribution | None:
    try:
        return md.distribution(name)
    except md.PackageNotFoundError:
        return None


def _local_install(dist: md.Distribution) -> str | None:
    """The file:// or VCS URL a distribution was installed from, if not from an index."""
    text = dist.read_text("direct_url.json")
    if not text:
        return None
    try:
        info = json.loads(text)
    except ValueError:
        return None
    url = str(info.get("url", ""))
    if "vcs_info" in info or url.startswith("file:"):
        return url
    return None


def closure(roots: Iterable[str], target: Target, *, step: str | None = None) -> dict[str, str]:
    """``roots`` and everything they require (markers evaluated for ``target``), with the
    versions installed here. A requirement that is not installed is an error naming it."""
    env = target.marker_environment()
    todo: list[tuple[str, frozenset[str], str | None]] = [
        (r, frozenset(), None) for r in sorted(roots)
    ]
    seen: dict[NormalizedName, frozenset[str]] = {}
    out: dict[str, str] = {}
    while todo:
        raw, extras, parent = todo.pop()
        key = canonicalize_name(raw)
        if key in seen and extras <= seen[key]:
            continue
        seen[key] = seen.get(key, frozenset()) | extras
        dist = installed(raw)
        if dist is None:
            where = f"step {step!r}" if step else "the runtime"
            via = f" (required by {parent})" if parent else ""
            raise InputError(
                f"{where} needs the package {raw!r}{via}, which is not installed in this "
                "environment",
                where=where,
                hint=f"`pip install {raw}` where you run jup2kub (the lock pins what is installed)",
            )
        out[str(key)] = dist.version
        for text in dist.requires or []:
            try:
                req = Requirement(text)
            except InvalidRequirement:
                continue
            if req.marker is not None and not _marker_ok(req.marker, env, extras):
                continue
            todo.append((req.name, frozenset(req.extras), str(key)))
    return dict(sorted(out.items()))


def _marker_ok(marker: Marker, env: dict[str, str], extras: frozenset[str]) -> bool:
    return any(marker.evaluate({**env, "extra": e}) for e in (extras or {""}))


def _step_sources(pipeline: Pipeline, step_name: str) -> list[tuple[int, str, bool]]:
    """The code ``step_name`` runs: (cell, source, written by the user). The replayed import
    of submodules (``dataflow``) is Jup2Kub's own: its computed names are the submodules of
    packages the notebook imports, each import guarded, so nothing about it is worth a
    warning."""
    step = pipeline.step(step_name)
    sources = [(d.cell, d.source, d.kind != "submodules") for d in step.replay]
    sources += [(i, pipeline.python[i], True) for i in step.cells]
    sources += [(i, pipeline.python[i], True) for i in pipeline.parameter_cells]
    return sources


def _cell_name(cell: int) -> str:
    """Where code comes from in a message: its cell, or the replayed code no cell holds."""
    return f"cell {cell}" if cell >= 0 else "(replayed imports)"


def capture(
    pipeline: Pipeline,
    target: Target | None = None,
    *,
    search_path: Sequence[str] | None = None,
) -> Dependencies:
    """Static capture: each step's imports mapped to the distributions installed here.

    A module that no installed distribution provides and that cannot be imported is an error
    naming the step (unless the import is guarded by ``except ImportError``). A local module
    (a file under ``search_path``, default: the current directory) is read like a data file:
    listed for the shared volume where the step runs; one the notebook writes needs nothing.
    """
    target = target or Target.host()
    name = pipeline.name
    providers = _module_distributions()
    runtime = closure(RUNTIME_DISTRIBUTIONS, target)
    deps = Dependencies(
        name, target, runtime, {}, inputs={s.name: dict(s.inputs) for s in pipeline.steps}
    )
    written = _written_files(pipeline)
    for step in pipeline.steps:
        sd = StepDeps(step.name)
        uses_ipython = False
        for cell, source, by_user in _step_sources(pipeline, step.name):
            if "get_ipython" in source:
                uses_ipython = True
            found, dynamic = imports_of(source, cell)
            for line, callee in dynamic if by_user else []:
                deps.warnings.append(
                    f"step {step.name!r}, {_cell_name(cell)}, line {line}: {callee}() with a "
                    "computed name; static analysis cannot see which package it loads "
                    "(use --trace)"
                )
            for imp in found:
                top = imp.module.split(".")[0]
                if top in sys.stdlib_module_names or top in OWN_MODULES:
                    continue
                dists = providers.get(top, [])
                if not dists and not any(module_file_of(w, [top]) for w in written):
                    _unprovided(deps, sd, imp, top, search_path)
                if not dists:
                    continue
                for d in dists:
                    dist = installed(d)
                    if dist is None:
                        continue
                    check_local(deps, step.name, d, dist)
                    sd.direct.setdefault(str(canonicalize_name(d)), set()).add(
                        f"import {top} ({_cell_name(imp.cell)})"
                    )
        if uses_ipython:
            sd.direct.setdefault(IPYTHON_DISTRIBUTION, set()).add(
                "get_ipython() (magics or shell commands)"
            )
        deps.steps[step.name] = sd
    close_dependencies(deps)
    return deps


def _written_files(pipeline: Pipeline) -> set[str]:
    """The files the notebook writes under names the analysis knows."""
    written = {w for c in pipeline.cache.values() for w in getattr(c, "writes", ())}
    return written | {p for s in pipeline.steps for ps in s.file_deps.values() for p in ps}


def _local_module(sd: StepDeps, origin: str, search_path: Sequence[str]) -> DataFile | None:
    """A local module's file (a package: its directory's ``__init__.py``) under one of
    ``search_path``, as a data file of the step, on the volume where the step runs."""
    path = Path(origin).resolve()
    for base in (Path(b).resolve() for b in search_path):
        if base in path.parents:
            data = path.read_bytes()
            relative = os.path.relpath(path, os.getcwd())
            found = DataFile(
                str(path),
                None if relative.startswith("..") else relative,
                len(data),
                hashlib.sha256(data).hexdigest(),
                (sd.step,),
                "volume",
            )
            sd.data_files.append(found)
            return found
    return None


def _unprovided(
    deps: Dependencies, sd: StepDeps, imp: _Import, top: str, search_path: Sequence[str] | None
) -> None:
    step = sd.step
    where = f"step {step!r}, {_cell_name(imp.cell)}, line {imp.line}"
    spec = None
    old = sys.path[:]
    try:
        sys.path[:0] = list(search_path or [os.getcwd()])
        spec = importlib.util.find_spec(top)
    except (ImportError, ValueError):
        spec = None
    finally:
        sys.path[:] = old
    if spec is not None and spec.origin not in (None, "built-in", "frozen"):
        if _local_module(sd, spec.origin, list(search_path or [os.getcwd()])) is not None:
            return
        deps.warnings.append(
            f"{where}: module {top!r} is a local file ({spec.origin}), not an installed "
            "package; it is not copied into the image (package and install it to ship it)"
        )
    elif spec is not None:
        return
    elif imp.optional:
        deps.warnings.append(f"{where}: optional import of {top!r}, which is not installed")
    else:
        raise InputError(
            f"the code imports {top!r}, which no installed package provides",
            where=where,
            hint=f"install the package that provides {top!r} in the environment you run "
            "jup2kub in (the notebook must run there), then build again",
        )


def check_local(deps: Dependencies, step: str, name: str, dist: md.Distribution) -> None:
    url = _local_install(dist)
    if url:
        raise InputError(
            f"step {step!r} needs the package {name!r}, which was installed from {url}, "
            "not from a package index; its wheel cannot be fetched for the image",
            where=f"step {step!r}",
            hint=f"install {name} from the index (pip install {name}==VERSION), or publish it",
        )


def close_dependencies(deps: Dependencies) -> None:
    """Each step's closure: its own needs, plus those of the steps whose values it loads
    (unpickling a DataFrame needs pandas even where the code never imports it)."""
    carried: dict[str, set[str]] = {}
    for sd in deps.steps.values():  # notebook order: inputs come from earlier steps
        sd.inherited = {}
        for var, src in sorted(deps.inputs.get(sd.step, {}).items()):
            for dist in sorted(
                (set(deps.steps[src].direct) | carried[src]) - {IPYTHON_DISTRIBUTION}
            ):
                sd.inherited.setdefault(dist, set()).add(f"loads {var} from step {src}")
        carried[sd.step] = set(sd.inherited)
        sd.closure = closure(
            [*sd.direct, *sd.inherited, *RUNTIME_DISTRIBUTIONS], deps.target, step=sd.step
        )
