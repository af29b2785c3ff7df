"""Importing what steps will import, ahead and quietly, so that a step does not pay for it.

A long-lived process (the local fork server, a Kafka step process) imports the installed
packages and standard modules a step's code imports at top level. Only imports that show
nothing are done ahead: a module that prints, warns (any warning, whatever the filters: a cell
may change them first), fails, draws from a global random generator or starts a thread when
imported is left to the cell that imports it, so that the cell still shows what it shows under
a kernel. Modules of the notebook's own directory (or the working directory) are never imported
ahead: their import side effects belong to the cell, as in the notebook.

An import cannot be undone, so a noisy one makes the process start again (``os.execv``, before
it forked or started serving) with that module named in ``J2K_PREIMPORT_SKIP``.
``J2K_PREIMPORT=off`` turns pre-importing off.
"""

from __future__ import annotations

import ast
import contextlib
import importlib.util
import io
import logging
import os
import random
import site
import sys
import sysconfig
import threading
import warnings
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any

from ..contract.spec import StepSpec
from . import cell_runner, kernel_imports
from .shell import create_shell

SKIP_ENV = "J2K_PREIMPORT_SKIP"
SWITCH_ENV = "J2K_PREIMPORT"


def enabled() -> bool:
    return os.environ.get(SWITCH_ENV, "on").strip().lower() not in ("off", "0", "no", "false")


def skipped() -> set[str]:
    """The modules an earlier incarnation of this process found noisy."""
    return {m for m in os.environ.get(SKIP_ENV, "").split(",") if m}


def _top_level_imports(source: str) -> list[ast.Import | ast.ImportFrom]:
    """The import statements of ``source`` outside function and class bodies."""
    try:
        tree = ast.parse(source)
    except (SyntaxError, ValueError):  # a magic or a syntax error: the cell reports it
        return []
    found: list[ast.Import | ast.ImportFrom] = []
    todo: list[ast.AST] = list(tree.body)
    while todo:
        node = todo.pop(0)
        if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef | ast.ClassDef | ast.Lambda):
            continue
        if isinstance(node, ast.Import | ast.ImportFrom):
            found.append(node)
        elif isinstance(node, ast.stmt):
            todo[:0] = [c for c in ast.iter_child_nodes(node) if isinstance(c, ast.stmt)]
    return found


def imports_in(source: str) -> list[str]:
    """The absolute modules ``source`` imports outside function and class bodies."""
    return _imported(_top_level_imports(source))


def _imported(nodes: Iterable[ast.Import | ast.ImportFrom]) -> list[str]:
    found: list[str] = []
    for node in nodes:
        if isinstance(node, ast.Import):
            found += [alias.name for alias in node.names]
        elif node.level == 0 and node.module:
            found.append(node.module)
    return found


def _taken(nodes: Iterable[ast.Import | ast.ImportFrom]) -> list[str]:
    """``X.a`` for each absolute ``from X import a``: the import of a submodule when ``a`` is
    one (``from scipy import stats`` imports ``scipy.stats``, most of the cost; ``scipy`` alone
    is cheap)."""
    return [
        f"{node.module}.{alias.name}"
        for node in nodes
        if isinstance(node, ast.ImportFrom) and node.level == 0 and node.module
        for alias in node.names
        if alias.name != "*"
    ]


def is_submodule(name: str) -> bool:
    """Whether dotted ``name`` is a module file or package on disk below its installed top-level
    package, found without importing anything (the import itself is left to ``warm``)."""
    top, *rest = name.split(".")
    if not rest:
        return False
    try:
        spec = importlib.util.find_spec(top)
    except (ImportError, ValueError):
        return False
    for location in (spec.submodule_search_locations or []) if spec else []:
        here = Path(location).joinpath(*rest[:-1])
        leaf = rest[-1]
        if (here / leaf / "__init__.py").is_file() or (here / f"{leaf}.py").is_file():
            return True
        if any(here.glob(f"{leaf}.*.so")):
            return True
    return False


def modules_needed(specs: Iterable[StepSpec]) -> list[str]:
    """What the steps import at top level (parameters, replayed definitions, cells), in order;
    each source's submodules taken by ``from X import a`` after its other imports."""
    seen: dict[str, None] = {}
    for spec in specs:
        sources = [spec.parameters_source, *(r.source for r in spec.replay)]
        sources += [c.source for c in spec.cells]
        for source in sources:
            nodes = _top_level_imports(source)  # parsed once for both
            for name in _imported(nodes):
                seen.setdefault(name)
            for name in _taken(nodes):
                if name not in seen and is_submodule(name):
                    seen.setdefault(name)
    return list(seen)


def _installed_roots() -> list[Path]:
    paths = {sys.prefix, sys.base_prefix, sys.exec_prefix, *site.getsitepackages()}
    with contextlib.suppress(Exception):
        paths.add(site.getusersitepackages())
    paths.update(p for p in sysconfig.get_paths().values() if p)
    return [Path(p).resolve() for p in paths]


def _under(path: Path, roots: Iterable[Path]) -> bool:
    return any(path == r or r in path.parents for r in roots)


def outside(name: str, local_dirs: Iterable[Path]) -> bool:
    """Whether ``name``'s top-level package resolves outside ``local_dirs`` (installed
    packages and the standard library count as outside even when they lie below one)."""
    top = name.partition(".")[0]
    if top in sys.builtin_module_names:
        return True
    local = [Path(d).resolve() for d in local_dirs]
    if any(_shadows(top, d) for d in local):  # found there first when the cell imports it
        return False
    try:
        spec = importlib.util.find_spec(top)
    except (ImportError, ValueError):
        return False
    if spec is None:
        return False
    places = [spec.origin] if spec.origin and spec.has_location else []
    places += list(spec.submodule_search_locations or [])
    installed = _installed_roots()
    for place in places:
        path = Path(place).resolve()
        if not _under(path, installed) and _under(path, local):
            return False
    return True


def _shadows(top: str, directory: Path) -> bool:
    """Whether ``directory`` holds a module or package ``top`` (whether or not it is on
    ``sys.path`` now: a cell's import finds it in the working directory)."""
    if (directory / f"{top}.py").is_file() or (directory / top).is_dir():
        return True
    return any(directory.glob(f"{top}.*.so")) or any(directory.glob(f"{top}.*.pyd"))


def candidates(specs: Iterable[StepSpec], local_dirs: Iterable[Path]) -> list[str]:
    """The modules worth importing ahead for ``specs``: numpy and matplotlib first (so that a
    later module's draw from NumPy's global generator, or change to matplotlib's settings,
    shows), then in the steps' order."""
    local = [Path.cwd(), *local_dirs]
    skip = skipped()
    names = [m for m in modules_needed(specs) if m not in skip and outside(m, local)]
    first = {"numpy": 0, "matplotlib": 1}
    return sorted(names, key=lambda m: first.get(m.partition(".")[0], 2))


def _random_states(alone: bool) -> dict[str, Any]:
    """The global generators' states that can be read now (NumPy's once it is imported)."""
    states: dict[str, Any] = {"random": random.getstate()} if alone else {}
    numpy_random = sys.modules.get("numpy.random")
    if numpy_random is not None:
        with contextlib.suppress(Exception):
            kind, keys, pos, has_gauss, gauss = numpy_random.get_state()
            states["numpy"] = (kind, keys.tobytes(), pos, has_gauss, gauss)
    return states


def _drew(before: dict[str, Any], after: dict[str, Any]) -> bool:
    return any(after.get(k, v) != v for k, v in before.items())


def _settings() -> tuple[Any, ...]:
    """Process-wide settings an import could change for the cells before it: the root
    logger's handlers and level, sys.path, matplotlib's rcParams (once imported)."""
    root = logging.getLogger()
    matplotlib: Any = sys.modules.get("matplotlib")
    rc = dict(matplotlib.rcParams) if hasattr(matplotlib, "rcParams") else None
    return (list(root.handlers), root.level, list(sys.path), rc)


def _changed(before: tuple[Any, ...], after: tuple[Any, ...]) -> bool:
    """Whether settings changed (matplotlib's only if it was imported before)."""
    *rest_before, rc_before = before
    *rest_after, rc_after = after
    return rest_before != rest_after or (rc_before is not None and rc_before != rc_after)


def import_quietly(name: str, *, alone: bool = True, draws_matter: bool = True) -> bool:
    """Import ``name``; False if that printed, warned, raised, drew from NumPy's global
    generator, changed the process' logging, sys.path or matplotlib's settings, replaced
    ``warnings.showwarning`` or, ``alone`` (no other thread of this process works meanwhile),
    drew from Python's or left a new thread running; draws count only if ``draws_matter``
    (the notebook seeds a global generator). Python-level output only: the runtime
    does not show what C code writes to the file descriptors in cells either. The warning
    filters the module installs stay, as when a cell imports it."""
    before_threads = {t.ident for t in threading.enumerate()}
    before_random = _random_states(alone)
    before_settings = _settings()
    sink = io.StringIO()
    with (
        warnings.catch_warnings(record=True) as caught,
        contextlib.redirect_stdout(sink),
        contextlib.redirect_stderr(sink),
    ):
        warnings.simplefilter("always")
        ours, showwarning = warnings.filters[0], warnings.showwarning
        try:
            # from a frame named __main__, as a cell's import (a warning's stacklevel lands here)
            exec(compile(f"import {name}", "<preimport>", "exec"), {"__name__": "__main__"})
        except BaseException:
            return False
        installed = [f for f in warnings.filters if f is not ours]
        replaced = warnings.showwarning is not showwarning
    # catch_warnings put the filters back: the module's own (numpy's, say) must stay
    warnings.filters[:] = installed  # type: ignore[index]
    warnings._filters_mutated()  # type: ignore[attr-defined]
    drew = draws_matter and _drew(before_random, _random_states(alone))
    if sink.getvalue() or caught or replaced or drew:
        return False
    if _changed(before_settings, _settings()):
        return False
    return not alone or {t.ident for t in threading.enumerate()} <= before_threads


def first_noisy(
    names: Iterable[str], *, alone: bool = True, draws_matter: bool = True
) -> str | None:
    """Import each of ``names`` quietly; the first one that was not quiet (then stop)."""
    for name in names:
        if name in sys.modules:
            continue
        if not import_quietly(name, alone=alone, draws_matter=draws_matter):
            return name
    return None


def restart_without(name: str) -> None:
    """Start this process again with ``name`` added to the modules not imported ahead."""
    os.environ[SKIP_ENV] = ",".join(sorted(skipped() | {name}))
    with contextlib.suppress(Exception):
        sys.stdout.flush()
        sys.stderr.flush()
    os.execv(sys.executable, [sys.executable, *sys.orig_argv[1:]])


def warm(
    specs: Iterable[StepSpec],
    local_dirs: Iterable[Path] = (),
    *,
    alone: bool = True,
    restart: Callable[[str], None] = restart_without,
) -> None:
    """Import ahead what ``specs`` need; a noisy module stops it and calls ``restart`` with its
    name (default: start the process again now without it; ``alone``: see
    ``import_quietly``).

    The kernel's import hooks, IPython's display and the shell stand-in come first, as when
    a cell imports (``kernel_imports`` sets MPLBACKEND and the import hooks that give pandas a
    kernel's answers before pandas is imported)."""
    kernel_imports.install()  # the hooks and MPLBACKEND before anything else
    with contextlib.suppress(Exception):
        import IPython.display  # noqa: F401
    create_shell()  # as a cell's import finds it
    if not enabled():
        return
    specs = list(specs)
    # An import that draws from a global generator changes what a seeded notebook draws
    # next; in a notebook that never seeds, the draw is not observable.
    seeded = any(s.random_seeded for s in specs)
    noisy = first_noisy(candidates(specs, local_dirs), alone=alone, draws_matter=seeded)
    if noisy is not None:
        restart(noisy)
    else:  # done: the steps' code sees the environment the process was started with
        os.environ.pop(SKIP_ENV, None)


def warm_up(
    spec: StepSpec, *, imports: bool = True, restart: Callable[[str], None] | None = None
) -> None:
    """What every execution of ``spec`` needs, done ahead (a step process calls it while it
    joins its consumer group): IPython's display machinery imported, the cells compiled, the
    IPython shell stand-in created and, with ``imports``, the installed modules the cells
    import, where that is quiet (``warm``: a noisy one restarts the process without it, or is
    handed to ``restart``). Holds the execution lock meanwhile: an execution waits, and the
    capture of the imports' output sees no cell's."""
    cell_runner.prepare(spec)
    with cell_runner.execution_lock():
        create_shell()
        if imports:
            warm([spec], alone=False, restart=restart or restart_without)
