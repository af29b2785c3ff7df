"""Throwaway Go modules: a go.mod requiring what is built, ``go mod tidy``, ``go build`` into
``<cache>/bin``, and a stamp per component so the build runs once."""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

from e2e.build import stamps
from e2e.host.commands import log

GO_SOURCES = Path(__file__).resolve().parents[1] / "go"
GO_ENV = {"CGO_ENABLED": "0", "GOFLAGS": "-buildvcs=false -trimpath", "GOTOOLCHAIN": "local"}


def go(args: list[str], cwd: Path) -> None:
    env = dict(os.environ)
    env.update(GO_ENV)
    subprocess.run(["go", *args], cwd=cwd, env=env, check=True)


def stamp_ok(cache: Path, name: str, want: str, outputs: list[str]) -> bool:
    bin_dir = cache / "bin"
    return stamps.current(bin_dir / f".{name}.built", want, *(bin_dir / o for o in outputs))


def write_stamp(cache: Path, name: str, want: str) -> None:
    stamps.record(cache / "bin" / f".{name}.built", want)


def module(dirpath: Path, go_mod: str, files: dict[str, str] | None = None) -> None:
    """A fresh module directory: ``go_mod`` and ``files`` (name -> text), nothing else."""
    shutil.rmtree(dirpath, ignore_errors=True)
    dirpath.mkdir(parents=True)
    (dirpath / "go.mod").write_text(go_mod)
    for name, text in (files or {}).items():
        (dirpath / name).write_text(text)


def build_main_module(cache: Path, name: str, module_path: str, version: str, pkg: str) -> None:
    """Builds package ``pkg`` of ``module_path@version`` (a module without replace directives)."""
    want = f"{name} {module_path} {version}"
    if stamp_ok(cache, name, want, [name]):
        return
    work = cache / "src" / name
    go_mod = f"module j2k.local/{name}build\n\ngo 1.24.0\n\nrequire {module_path} {version}\n"
    tools = f'//go:build tools\n\npackage tools\n\nimport _ "{pkg}"\n'
    module(work, go_mod, {"tools.go": tools})
    log(f"building {name} {version} from the Go module proxy (first time only)")
    go(["mod", "tidy"], work)
    go(["build", "-ldflags", "-s -w", "-o", str(cache / "bin" / name), pkg], work)
    write_stamp(cache, name, want)


def build_local_main(cache: Path, name: str) -> None:
    """Builds e2e/go/<name>/main.go, a dependency-free program, as ``<cache>/bin/<name>``."""
    want = f"{name} 1"
    if stamp_ok(cache, name, want, [name]):
        return
    work = cache / "src" / name
    module(
        work,
        f"module j2k.local/{name}\n\ngo 1.24.0\n",
        {"main.go": (GO_SOURCES / name / "main.go").read_text()},
    )
    go(["build", "-ldflags", "-s -w", "-o", str(cache / "bin" / name), "."], work)
    write_stamp(cache, name, want)
