"""Traced capture: each step run under ``reprozip trace`` to find what static analysis
missed (packages imported at run time, data files read).

ReproZip records the environment of every process it sees, so neither its raw output nor any
environment value ever leaves the temporary trace directory: only the summary built here does."""

from __future__ import annotations

import importlib.metadata as md
import json
import os
import shutil
import sqlite3
import subprocess
import sys
import tempfile
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from packaging.utils import canonicalize_name

import jup2kub_runtime
from jup2kub import version
from jup2kub.build.deps.capture import check_local, close_dependencies, installed
from jup2kub.build.deps.findings import DataFile, Dependencies
from jup2kub.errors import InputError, UsageError
from jup2kub.files import file_sha256
from jup2kub.plan import PipelinePlan
from jup2kub_runtime import STEP_RUN_MODULE
from jup2kub_runtime.contract.spec import Cell, StepSpec

#: Data files larger than this go to the shared volume even with ``--data-files copy``.
DEFAULT_COPY_LIMIT = 64 * 1024 * 1024

_SYSTEM_PREFIXES = (
    "/proc/",
    "/sys/",
    "/dev/",
    "/run/",
    "/etc/",
    "/usr/",
    "/lib",
    "/bin/",
    "/sbin/",
    "/var/lib/",
    "/var/cache/",
    "/opt/conda/",
)


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
    own_dirs = [os.path.realpath(str(Path(m.__file__).parent)) + os.sep for m in _own_modules()]
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
                [
                    *command,
                    "trace",
                    "-d",
                    str(trace_dir),
                    "--dont-identify-packages",
                    sys.executable,
                    "-m",
                    STEP_RUN_MODULE,
                    "--spec",
                    str(spec_dir),
                    "--state",
                    str(state),
                    "--run-id",
                    "trace",
                    "--params",
                    params,
                ],
                cwd=cwd,
                env=_scrubbed_env(home),
                capture_output=True,
                text=True,
                timeout=timeout,
                check=False,
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
        baseline = {
            owners[r]
            for r in (
                os.path.realpath(p)
                for p, m in run("jup2kub-baseline", tmp / "baseline")
                if m & 0x01
            )
            if r in owners and not _metadata_file(r)
        }
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
                dist = installed(d)
                if dist is None:
                    continue
                check_local(deps, step_name, d, dist)
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
        placement = (
            "image"
            if (data_files == "copy" and relative is None and size <= copy_limit)
            else "volume"
        )
        df = DataFile(path, relative, size, file_sha256(p), tuple(dict.fromkeys(steps)), placement)
        for s in df.steps:
            deps.steps[s].data_files.append(df)
    close_dependencies(deps)
    deps.trace_summary = {
        "tool": f"reprozip {_reprozip_version()}",
        "generator": f"jup2kub {version.__version__}",
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
    """Jup2Kub's own packages (the generator's through a module of its own: the package itself
    loads the magics, which import this module)."""
    return [version, jup2kub_runtime]


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
