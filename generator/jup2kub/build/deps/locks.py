"""Wheels and locks: wheels resolved on the build host for the *image's* Python and platform
(not the host's), and per-step ``requirements.lock`` files with their sha256 hashes, so image
builds need no network and install exactly the locked files."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

from packaging.utils import InvalidWheelFilename, parse_wheel_filename
from packaging.version import Version

from jup2kub.build.deps.capture import RUNTIME_DISTRIBUTIONS, installed
from jup2kub.build.deps.findings import Dependencies, Wheel
from jup2kub.build.deps.target import Target
from jup2kub.build.deps.trace import file_sha256
from jup2kub.errors import InputError
from jup2kub.files import atomic_write_text
from jup2kub.version import __version__


def cache_root() -> Path:
    """Where builds keep what they can make again (``$JUP2KUB_CACHE``, else
    ``~/.cache/jup2kub``): wheels, the base images' OS package lists."""
    return Path(os.environ.get("JUP2KUB_CACHE") or Path.home() / ".cache" / "jup2kub")


def default_wheel_cache() -> Path:
    return cache_root() / "wheels"


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
    return subprocess.run(
        [sys.executable, "-m", "pip", "--disable-pip-version-check", *args],
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )


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
        base = [
            "download",
            "--no-deps",
            "--only-binary=:all:",
            "--dest",
            str(cache),
            "--python-version",
            f"{target.python[0]}.{target.python[1]}",
            "--implementation",
            "cp",
            "--abi",
            target.abi,
            *platform_args,
        ]
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
        out[n] = Wheel(n, str(v), path, file_sha256(path))
    return out


def _build_pure_wheel(
    name: str,
    version: str,
    cache: Path,
    target: Target,
    used_by: Mapping[str, Sequence[str]] | None,
) -> None:
    dist = installed(name)
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
                raise _no_wheel(
                    name,
                    version,
                    target,
                    used_by,
                    extra=" (it builds only for this host's platform)",
                )
            shutil.copy2(w, cache / w.name)


def _no_wheel(
    name: str,
    version: str,
    target: Target,
    used_by: Mapping[str, Sequence[str]] | None,
    extra: str = "",
) -> InputError:
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
        "runtime layer: python -m jup2kub_runtime",
        deps.runtime,
        wheels,
        deps.target,
        {n: ["runtime"] for n in RUNTIME_DISTRIBUTIONS},
    )
    steps = {}
    for sd in deps.steps.values():
        reasons = {
            n: sorted(sd.direct.get(n, set()) | sd.inherited.get(n, set()))
            for n in {*sd.direct, *sd.inherited}
        }
        for n in RUNTIME_DISTRIBUTIONS:
            reasons.setdefault(n, []).append("runtime")
        steps[sd.step] = lock_text(
            f"step {sd.step!r} of pipeline {deps.pipeline!r}",
            sd.closure,
            wheels,
            deps.target,
            reasons,
        )
    return Locks(
        deps.target,
        runtime,
        steps,
        wheels,
        {sd.step: dict(sd.closure) for sd in deps.steps.values()},
    )


def write_trace_summary(deps: Dependencies, path: Path) -> Path | None:
    """The audit record of ``trace`` (no environment values in it), as JSON."""
    if deps.trace_summary is None:
        return None
    atomic_write_text(path, json.dumps(deps.trace_summary, indent=2, sort_keys=True) + "\n")
    return path
