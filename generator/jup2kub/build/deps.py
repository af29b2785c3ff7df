"""What each step needs installed, pinned: static import capture, an optional ReproZip trace,
and per-step ``requirements.lock`` files with sha256 hashes of the target platform's wheels.

Versions come from the environment the notebook runs in (``importlib.metadata``), because that
is the set of packages the notebook is known to work with; the lock keeps later builds from
drifting. Wheels are resolved here, on the build host, for the *image's* Python and platform
(not the host's), so image builds need no network and install exactly the locked files.

The trace runs each step under ``reprozip trace`` with a scrubbed environment; ReproZip records
the environment of every process it sees, so neither its raw output nor any environment value
ever leaves the temporary trace directory: only the summary built here does.
"""

from __future__ import annotations

import ast
import hashlib
import importlib.metadata as md
import importlib.util
import json
import os
import platform
import re
import shutil
import sqlite3
import subprocess
import sys
import tempfile
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from packaging.markers import Marker
from packaging.requirements import InvalidRequirement, Requirement
from packaging.tags import Tag, compatible_tags, cpython_tags
from packaging.utils import (
    InvalidWheelFilename,
    NormalizedName,
    canonicalize_name,
    parse_wheel_filename,
)
from packaging.version import Version

from jup2kub import __version__
from jup2kub.errors import InputError, UsageError
from jup2kub.files import atomic_write_text
from jup2kub.model.pipeline import Pipeline
from jup2kub.plan import PipelinePlan
from jup2kub_runtime import STEP_RUN_MODULE
from jup2kub_runtime.spec import Cell, StepSpec

#: What ``python -m jup2kub_runtime`` imports (pyproject's "runtime" dependencies).
RUNTIME_DISTRIBUTIONS = ("kafka-python", "flask", "cloudpickle")
#: Steps whose code calls ``get_ipython()`` (magics, ``!cmd``) also need IPython.
IPYTHON_DISTRIBUTION = "ipython"
#: Our own packages are copied into the image from source, never installed from an index.
OWN_MODULES = frozenset({"jup2kub", "jup2kub_runtime"})
#: Data files larger than this go to the shared volume even with ``--data-files copy``.
DEFAULT_COPY_LIMIT = 64 * 1024 * 1024
_ARCHES = {"linux/amd64": "x86_64", "linux/arm64": "aarch64", "linux/arm64/v8": "aarch64"}
_MANYLINUX_LEGACY = {(2, 17): "manylinux2014", (2, 12): "manylinux2010", (2, 5): "manylinux1"}
_IMPORT_ERRORS = frozenset({"ImportError", "ModuleNotFoundError", "Exception", "BaseException"})


# --------------------------------------------------------------------------- target platform


@dataclass(frozen=True)
class Target:
    """The image's interpreter and platform, which the wheels must match (not the host's)."""

    python: tuple[int, int] = (3, 11)
    platform: str = "linux/amd64"
    glibc: tuple[int, int] = (2, 36)

    def __post_init__(self) -> None:
        if self.platform not in _ARCHES:
            raise UsageError(
                f"platform {self.platform!r} is not supported",
                hint="use one of: " + ", ".join(sorted(_ARCHES)),
            )

    @classmethod
    def host(cls, platform_: str | None = None) -> Target:
        """This interpreter's version and glibc: right when the base image matches the host."""
        libc, version = platform.libc_ver()
        glibc = (2, 17)
        if libc == "glibc" and re.match(r"^\d+\.\d+", version):
            major, minor = version.split(".")[:2]
            glibc = (int(major), int(minor))
        return cls(sys.version_info[:2], platform_ or "linux/amd64", glibc)

    @property
    def machine(self) -> str:
        return _ARCHES[self.platform]

    @property
    def abi(self) -> str:
        return f"cp{self.python[0]}{self.python[1]}"

    def platforms(self) -> list[str]:
        """manylinux platform tags this glibc accepts, best (newest) first."""
        out = []
        for minor in range(self.glibc[1], 4, -1):
            out.append(f"manylinux_2_{minor}_{self.machine}")
            legacy = _MANYLINUX_LEGACY.get((2, minor))
            if legacy:
                out.append(f"{legacy}_{self.machine}")
        return out

    def tags(self) -> list[Tag]:
        """Every wheel tag the target accepts, in pip's order of preference."""
        plats = self.platforms()
        return [
            *cpython_tags(self.python, abis=[self.abi], platforms=plats),
            *compatible_tags(self.python, interpreter=self.abi, platforms=plats),
        ]

    def marker_environment(self) -> dict[str, str]:
        major, minor = self.python
        return {
            "implementation_name": "cpython",
            "implementation_version": f"{major}.{minor}.0",
            "os_name": "posix",
            "platform_machine": self.machine,
            "platform_python_implementation": "CPython",
            "platform_release": "",
            "platform_system": "Linux",
            "platform_version": "",
            "python_full_version": f"{major}.{minor}.0",
            "python_version": f"{major}.{minor}",
            "sys_platform": "linux",
        }

    def describe(self) -> str:
        py, libc = self.python, self.glibc
        return f"CPython {py[0]}.{py[1]}, {self.platform}, glibc {libc[0]}.{libc[1]}"


# --------------------------------------------------------------------------- results


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
        return {"path": self.path, "relative": self.relative, "size": self.size,
                "sha256": self.sha256, "steps": list(self.steps), "placement": self.placement}


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


# --------------------------------------------------------------------------- static capture


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
            callee = (f.attr if isinstance(f, ast.Attribute)
                      else f.id if isinstance(f, ast.Name) else "")
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


def _installed(name: str) -> md.Distribution | None:
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


def closure(
    roots: Iterable[str], target: Target, *, step: str | None = None
) -> dict[str, str]:
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
        dist = _installed(raw)
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


def _step_sources(pipeline: Pipeline, step_name: str) -> list[tuple[int, str]]:
    step = pipeline.step(step_name)
    sources = [(d.cell, d.source) for d in step.replay]
    sources += [(i, pipeline.python[i]) for i in step.cells]
    sources += [(i, pipeline.python[i]) for i in pipeline.parameter_cells]
    return sources


def capture(
    pipeline: Pipeline,
    target: Target | None = None,
    *,
    search_path: Sequence[str] | None = None,
) -> Dependencies:
    """Static capture: each step's imports mapped to the distributions installed here.

    A module that no installed distribution provides and that cannot be imported is an error
    naming the step (unless the import is guarded by ``except ImportError``); one that is a
    local file is a warning (it is not shipped). ``search_path`` is where the notebook's own
    modules would be found (default: the current directory).
    """
    target = target or Target.host()
    name = pipeline.name
    providers = _module_distributions()
    runtime = closure(RUNTIME_DISTRIBUTIONS, target)
    deps = Dependencies(name, target, runtime, {},
                        inputs={s.name: dict(s.inputs) for s in pipeline.steps})
    for step in pipeline.steps:
        sd = StepDeps(step.name)
        uses_ipython = False
        for cell, source in _step_sources(pipeline, step.name):
            if "get_ipython" in source:
                uses_ipython = True
            found, dynamic = imports_of(source, cell)
            for line, callee in dynamic:
                deps.warnings.append(
                    f"step {step.name!r}, cell {cell}, line {line}: {callee}() with a computed "
                    "name; static analysis cannot see which package it loads (use --trace)"
                )
            for imp in found:
                top = imp.module.split(".")[0]
                if top in sys.stdlib_module_names or top in OWN_MODULES:
                    continue
                dists = providers.get(top, [])
                if not dists:
                    _unprovided(deps, step.name, imp, top, search_path)
                    continue
                for d in dists:
                    dist = _installed(d)
                    if dist is None:
                        continue
                    _check_local(deps, step.name, d, dist)
                    sd.direct.setdefault(str(canonicalize_name(d)), set()).add(
                        f"import {top} (cell {imp.cell})"
                    )
        if uses_ipython:
            sd.direct.setdefault(IPYTHON_DISTRIBUTION, set()).add(
                "get_ipython() (magics or shell commands)"
            )
        deps.steps[step.name] = sd
    _close(deps)
    return deps


def _unprovided(deps: Dependencies, step: str, imp: _Import, top: str,
                search_path: Sequence[str] | None) -> None:
    where = f"step {step!r}, cell {imp.cell}, line {imp.line}"
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


def _check_local(deps: Dependencies, step: str, name: str, dist: md.Distribution) -> None:
    url = _local_install(dist)
    if url:
        raise InputError(
            f"step {step!r} needs the package {name!r}, which was installed from {url}, "
            "not from a package index; its wheel cannot be fetched for the image",
            where=f"step {step!r}",
            hint=f"install {name} from the index (pip install {name}==VERSION), or publish it",
        )


def _close(deps: Dependencies) -> None:
    """Each step's closure: its own needs, plus those of the steps whose values it loads
    (unpickling a DataFrame needs pandas even where the code never imports it)."""
    carried: dict[str, set[str]] = {}
    for sd in deps.steps.values():  # notebook order: inputs come from earlier steps
        sd.inherited = {}
        for var, src in sorted(deps.inputs.get(sd.step, {}).items()):
            for dist in sorted((set(deps.steps[src].direct) | carried[src])
                               - {IPYTHON_DISTRIBUTION}):
                sd.inherited.setdefault(dist, set()).add(f"loads {var} from step {src}")
        carried[sd.step] = set(sd.inherited)
        sd.closure = closure([*sd.direct, *sd.inherited, *RUNTIME_DISTRIBUTIONS], deps.target,
                             step=sd.step)


# --------------------------------------------------------------------------- traced capture


_SYSTEM_PREFIXES = ("/proc/", "/sys/", "/dev/", "/run/", "/etc/", "/usr/", "/lib", "/bin/",
                    "/sbin/", "/var/lib/", "/var/cache/", "/opt/conda/")


def reprozip_command() -> list[str]:
    """How to start ReproZip: its script beside this interpreter, or on PATH."""
    if not sys.platform.startswith("linux"):
        raise UsageError("--trace needs Linux (ReproZip traces system calls with ptrace)")
    here = Path(sys.executable).parent / "reprozip"
    found = str(here) if here.exists() else shutil.which("reprozip")
    if not found:
        raise UsageError(
            "--trace needs ReproZip, which is not installed",
            hint="pip install 'jup2kub[trace]' (or pip install reprozip)",
        )
    return [found]


def _scrubbed_env(home: Path) -> dict[str, str]:
    """The only environment the traced run sees: ReproZip records it, secrets live in it."""
    bindir = str(Path(sys.executable).parent)
    return {
        "PATH": f"{bindir}:/usr/local/bin:/usr/bin:/bin",
        "HOME": str(home),
        "LANG": "C.UTF-8",
        "MPLBACKEND": "Agg",
        "PYTHONUNBUFFERED": "1",
        "PYTHONDONTWRITEBYTECODE": "1",
        "REPROZIP_USAGE_STATS": "off",
    }


def _file_owners() -> dict[str, str]:
    """Every installed file (resolved path) -> its distribution."""
    owners: dict[str, str] = {}
    for dist in md.distributions():
        dname = dist.metadata["Name"]
        if not dname:
            continue
        key = str(canonicalize_name(dname))
        for f in dist.files or []:
            try:
                owners[os.path.realpath(str(dist.locate_file(f)))] = key
            except (OSError, ValueError):
                continue
    return owners


def _python_dirs() -> list[str]:
    dirs = {sys.prefix, sys.base_prefix, sys.exec_prefix, sys.base_exec_prefix}
    dirs.update(p for p in sys.path if p and os.path.isdir(p))
    return sorted({os.path.realpath(d) + os.sep for d in dirs if d}, key=len, reverse=True)


def _sha256(path: Path) -> str:
    h = hashlib.sha256()
    with path.open("rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def trace(
    deps: Dependencies,
    plan: PipelinePlan,
    *,
    cwd: Path | None = None,
    data_files: str = "copy",
    copy_limit: int = DEFAULT_COPY_LIMIT,
    parameters: Mapping[str, Any] | None = None,
    timeout: float = 1800.0,
) -> Dependencies:
    """Run every step under ``reprozip trace`` (in notebook order, over a temporary state
    store, from ``cwd`` like ``jup2kub run``) and add to ``deps`` what static analysis missed:
    distributions loaded at run time, and data files read outside system and Python dirs.

    ``data_files``: "copy" puts files up to ``copy_limit`` bytes into the image (at their
    absolute path) and lists the rest, and every file under ``cwd``, for the shared volume
    (the step's working directory on the cluster); "volume" lists them all.
    """
    if data_files not in ("copy", "volume"):
        raise UsageError(f"--data-files must be copy or volume, not {data_files!r}")
    command = reprozip_command()
    cwd = Path(cwd or os.getcwd()).resolve()
    owners = _file_owners()
    python_dirs = _python_dirs()
    own_dirs = [os.path.realpath(str(Path(m.__file__).parent)) + os.sep
                for m in _own_modules()]
    written: set[str] = set()
    read_by: dict[str, list[str]] = {}
    summary_steps: dict[str, Any] = {}
    with tempfile.TemporaryDirectory(prefix="jup2kub-trace-") as tmp_name:
        tmp = Path(tmp_name)
        home = tmp / "home"
        home.mkdir()
        bundles = plan.write_bundles(tmp / "bundles")
        state = tmp / "state"
        tmp_prefix = os.path.realpath(tmp_name) + os.sep
        params = json.dumps(dict(parameters or {}))

        def run(step_name: str, spec_dir: Path) -> list[tuple[str, int]]:
            trace_dir = tmp / "trace" / step_name
            trace_dir.parent.mkdir(exist_ok=True)
            proc = subprocess.run(
                [*command, "trace", "-d", str(trace_dir), "--dont-identify-packages",
                 sys.executable, "-m", STEP_RUN_MODULE, "--spec", str(spec_dir),
                 "--state", str(state), "--run-id", "trace", "--params", params],
                cwd=cwd, env=_scrubbed_env(home), capture_output=True, text=True,
                timeout=timeout, check=False,
            )
            db = trace_dir / "trace.sqlite3"
            if proc.returncode != 0 or not db.exists():
                tail = "\n".join(_scrub_text(proc.stderr).splitlines()[-15:])
                raise InputError(
                    f"the traced run of step {step_name!r} failed (exit {proc.returncode})",
                    where=f"step {step_name!r}",
                    hint="the notebook must run here for --trace (try `jup2kub run` first)"
                    + (f"; last lines:\n{tail}" if tail else ""),
                )
            try:
                return _opened_files(db)
            finally:
                shutil.rmtree(trace_dir, ignore_errors=True)  # holds environments: never kept

        # What the runtime itself loads for any step is not the notebook's need.
        empty = StepSpec(pipeline=deps.pipeline, step="jup2kub-baseline", cells=[Cell(0, "")])
        (tmp / "baseline").mkdir()
        empty.dump(tmp / "baseline")
        baseline = {owners[r] for r in (os.path.realpath(p) for p, m in
                                        run("jup2kub-baseline", tmp / "baseline") if m & 0x01)
                    if r in owners and not _metadata_file(r)}
        for step_name in plan.order:
            files = run(step_name, bundles[step_name])
            loaded: set[str] = set()
            data: list[str] = []
            system_reads = 0
            for path, mode in files:
                real = os.path.realpath(path)
                if mode & 0x02:
                    written.add(real)
                if not mode & 0x01:
                    continue
                owner = owners.get(real)
                if owner is not None:
                    # Reading metadata (entry points, versions) or a site-wide .pth file does
                    # not mean the package's code ran.
                    if not _metadata_file(real):
                        loaded.add(owner)
                    continue
                if real.startswith(tmp_prefix) or any(real.startswith(d) for d in own_dirs):
                    continue
                if any(real.startswith(d) for d in python_dirs) or real.startswith(
                    _SYSTEM_PREFIXES
                ):
                    system_reads += 1
                    continue
                if real in written or not os.path.isfile(real):
                    continue
                data.append(real)
                read_by.setdefault(real, []).append(step_name)
            sd = deps.steps[step_name]
            static = set(sd.closure)
            new = sorted(d for d in loaded - baseline - OWN_DIST_NAMES if d not in static)
            for d in new:
                dist = _installed(d)
                if dist is None:
                    continue
                _check_local(deps, step_name, d, dist)
                sd.direct.setdefault(d, set()).add("loaded at run time (trace)")
                sd.traced.add(d)
            summary_steps[step_name] = {
                "distributions_loaded": sorted(loaded - baseline - OWN_DIST_NAMES),
                "found_only_by_trace": new,
                "data_files_read": sorted(set(data)),
                "system_and_python_files_read": system_reads,
            }
    for path, steps in sorted(read_by.items()):
        p = Path(path)
        size = p.stat().st_size
        relative = os.path.relpath(path, cwd) if path.startswith(str(cwd) + os.sep) else None
        placement = "image" if (data_files == "copy" and relative is None
                                and size <= copy_limit) else "volume"
        df = DataFile(path, relative, size, _sha256(p), tuple(dict.fromkeys(steps)), placement)
        for s in df.steps:
            deps.steps[s].data_files.append(df)
    _close(deps)
    deps.trace_summary = {
        "tool": f"reprozip {_reprozip_version()}",
        "generator": f"jup2kub {__version__}",
        "environment": "scrubbed: the traced run saw only PATH, HOME, LANG and Python/"
        "matplotlib settings; ReproZip's raw records (which hold environments) were deleted",
        "data_files_mode": data_files,
        "copy_limit_bytes": copy_limit,
        "steps": summary_steps,
        "data_files": [f.to_json() for f in deps.data_files],
    }
    return deps


OWN_DIST_NAMES = frozenset({"jup2kub"})


def _own_modules() -> list[Any]:
    import jup2kub
    import jup2kub_runtime

    return [jup2kub, jup2kub_runtime]


def _metadata_file(path: str) -> bool:
    parent = os.path.basename(os.path.dirname(path))
    return parent.endswith((".dist-info", ".egg-info")) or path.endswith(".pth")


def _opened_files(db: Path) -> list[tuple[str, int]]:
    """(path, mode) of every file any traced process opened (ReproZip's trace database)."""
    con = sqlite3.connect(f"file:{db}?mode=ro", uri=True)
    try:
        rows = con.execute(
            "SELECT name, mode FROM opened_files WHERE is_directory = 0 ORDER BY id"
        ).fetchall()
    finally:
        con.close()
    return [(str(n), int(m)) for n, m in rows]


def _reprozip_version() -> str:
    try:
        return md.version("reprozip")
    except md.PackageNotFoundError:
        return "unknown"


def _scrub_text(text: str) -> str:
    """Remove every environment value of this process from ``text`` (error messages)."""
    for value in sorted(set(os.environ.values()), key=len, reverse=True):
        if len(value) >= 6:
            text = text.replace(value, "<env>")
    return text


# --------------------------------------------------------------------------- wheels and locks


def default_wheel_cache() -> Path:
    return Path(os.environ.get("JUP2KUB_CACHE") or Path.home() / ".cache" / "jup2kub") / "wheels"


def _cached_wheels(cache: Path, target: Target) -> dict[tuple[str, Version], Path]:
    rank = {t: i for i, t in enumerate(target.tags())}
    best: dict[tuple[str, Version], tuple[int, Path]] = {}
    for path in sorted(cache.glob("*.whl")):
        try:
            name, version, _build, tags = parse_wheel_filename(path.name)
        except InvalidWheelFilename:
            continue
        score = min((rank[t] for t in tags if t in rank), default=None)
        if score is None:
            continue
        key = (str(name), version)
        if key not in best or score < best[key][0]:
            best[key] = (score, path)
    return {k: v[1] for k, v in best.items()}


def _pip(args: Sequence[str], timeout: float = 1800.0) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "pip", "--disable-pip-version-check", *args],
                          capture_output=True, text=True, timeout=timeout, check=False)


def resolve_wheels(
    packages: Mapping[str, str],
    target: Target,
    cache: Path | None = None,
    *,
    used_by: Mapping[str, Sequence[str]] | None = None,
) -> dict[str, Wheel]:
    """A wheel for the target of every ``name -> version``, from ``cache`` or downloaded into
    it with pip (binary only, for the target's platform and Python). A package with only an
    sdist is built here when it is pure Python; otherwise it is an error naming the package
    and the steps that need it."""
    cache = cache or default_wheel_cache()
    cache.mkdir(parents=True, exist_ok=True)
    want = {n: Version(v) for n, v in sorted(packages.items())}
    have = _cached_wheels(cache, target)
    missing = [n for n, v in want.items() if (n, v) not in have]
    if missing:
        platform_args = [a for p in target.platforms() for a in ("--platform", p)]
        base = ["download", "--no-deps", "--only-binary=:all:", "--dest", str(cache),
                "--python-version", f"{target.python[0]}.{target.python[1]}",
                "--implementation", "cp", "--abi", target.abi, *platform_args]
        if _pip([*base, *(f"{n}=={want[n]}" for n in missing)]).returncode != 0:
            for n in missing:  # one by one, so that one bad package does not hide the rest
                if _pip([*base, f"{n}=={want[n]}"]).returncode != 0:
                    _build_pure_wheel(n, str(want[n]), cache, target, used_by)
        have = _cached_wheels(cache, target)
    out: dict[str, Wheel] = {}
    for n, v in want.items():
        path = have.get((n, v))
        if path is None:
            raise _no_wheel(n, str(v), target, used_by)
        out[n] = Wheel(n, str(v), path, _sha256(path))
    return out


def _build_pure_wheel(name: str, version: str, cache: Path, target: Target,
                      used_by: Mapping[str, Sequence[str]] | None) -> None:
    dist = _installed(name)
    wheel_info = (dist.read_text("WHEEL") or "") if dist is not None else ""
    if "Root-Is-Purelib: true" not in wheel_info:  # compiled: a host build would not fit
        raise _no_wheel(name, version, target, used_by)
    with tempfile.TemporaryDirectory(prefix="jup2kub-wheel-") as tmp:
        proc = _pip(["wheel", "--no-deps", "--wheel-dir", tmp, f"{name}=={version}"])
        built = list(Path(tmp).glob("*.whl"))
        if proc.returncode != 0 or not built:
            raise _no_wheel(name, version, target, used_by)
        for w in built:
            _n, _v, _b, tags = parse_wheel_filename(w.name)
            if not set(tags) & set(target.tags()):
                raise _no_wheel(name, version, target, used_by,
                                extra=" (it builds only for this host's platform)")
            shutil.copy2(w, cache / w.name)


def _no_wheel(name: str, version: str, target: Target,
              used_by: Mapping[str, Sequence[str]] | None, extra: str = "") -> InputError:
    steps = list((used_by or {}).get(name, []))
    who = ("steps " + ", ".join(repr(s) for s in steps)) if steps else "the image"
    return InputError(
        f"{who} need {name}=={version}, which has no wheel for {target.describe()}{extra}",
        where=f"package {name}",
        hint="pick a version with wheels for the target (pip install it here and rebuild), "
        "or use a base image/--platform that its wheels support",
    )


def lock_text(
    title: str,
    packages: Mapping[str, str],
    wheels: Mapping[str, Wheel],
    target: Target,
    reasons: Mapping[str, Iterable[str]] | None = None,
) -> str:
    """A pip requirements file pinning every package to one version and its wheel's hash."""
    lines = [
        f"# {title}",
        f"# generated by jup2kub {__version__} from the environment the notebook ran in;",
        f"# wheels for {target.describe()}. Install with:",
        "#   pip install --no-index --find-links WHEELHOUSE --require-hashes -r THIS_FILE",
    ]
    for name in sorted(packages):
        w = wheels[name]
        lines.append(f"{name}=={packages[name]} \\")
        lines.append(f"    --hash=sha256:{w.sha256}")
        why = sorted((reasons or {}).get(name, []))
        lines.append(f"    # {w.path.name}" + (f"; {'; '.join(why)}" if why else ""))
    return "\n".join(lines) + "\n"


@dataclass
class Locks:
    """Per-step and runtime lock files plus the wheels they name."""

    target: Target
    runtime: str
    steps: dict[str, str]
    wheels: dict[str, Wheel]
    step_packages: dict[str, dict[str, str]]

    def write(self, directory: Path) -> dict[str, Path]:
        """``<directory>/runtime.lock`` and ``<directory>/<step>/requirements.lock``."""
        out = {"runtime": directory / "runtime.lock"}
        atomic_write_text(out["runtime"], self.runtime)
        for step, text in self.steps.items():
            out[step] = directory / step / "requirements.lock"
            atomic_write_text(out[step], text)
        return out


def lock(deps: Dependencies, cache: Path | None = None) -> Locks:
    """Resolve wheels for every step's closure and the runtime's and write nothing yet."""
    everything: dict[str, str] = dict(deps.runtime)
    used_by: dict[str, list[str]] = {}
    for sd in deps.steps.values():
        for n, v in sd.closure.items():
            if everything.setdefault(n, v) != v:  # pragma: no cover - one environment
                raise InputError(f"package {n} has two versions ({v}, {everything[n]})")
            used_by.setdefault(n, []).append(sd.step)
    wheels = resolve_wheels(everything, deps.target, cache, used_by=used_by)
    runtime = lock_text(
        "runtime layer: python -m jup2kub_runtime", deps.runtime, wheels, deps.target,
        {n: ["runtime"] for n in RUNTIME_DISTRIBUTIONS},
    )
    steps = {}
    for sd in deps.steps.values():
        reasons = {n: sorted(sd.direct.get(n, set()) | sd.inherited.get(n, set()))
                   for n in {*sd.direct, *sd.inherited}}
        for n in RUNTIME_DISTRIBUTIONS:
            reasons.setdefault(n, []).append("runtime")
        steps[sd.step] = lock_text(
            f"step {sd.step!r} of pipeline {deps.pipeline!r}", sd.closure, wheels, deps.target,
            reasons,
        )
    return Locks(deps.target, runtime, steps, wheels,
                 {sd.step: dict(sd.closure) for sd in deps.steps.values()})


def write_trace_summary(deps: Dependencies, path: Path) -> Path | None:
    """The audit record of ``trace`` (no environment values in it), as JSON."""
    if deps.trace_summary is None:
        return None
    atomic_write_text(path, json.dumps(deps.trace_summary, indent=2, sort_keys=True) + "\n")
    return path
