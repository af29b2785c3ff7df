"""Benchmark (not a test): what sharing and provenance add to ``build`` and ``run`` (issue 31).

Side by side in each round, the order alternating by round, against a real registry (CNCF
distribution on loopback) with the test base image:

- ``build --push`` of a 3-step notebook, step images reused (the usual rebuild), in-process
  through the api: with the SBOMs (generated, written, attached or found attached) vs with the
  SBOM stage replaced by nothing;
- ``package --oci`` vs ``sign --oci`` (3 images, chart packaged with its .prov, pushed and
  signed) vs ``verify``, as fresh commands;
- ``jup2kub run`` of the same notebook (no step cache), in-process: with its RO-Crate vs without.

    python -m bench.sharing [--repeat 5] [--out DIR]
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

from bench.stats import summary
from bench.vs_notebook import chain_notebook, write
from tests.support import docker_engine
from tests.support.registry import running_registry

PASSWORD = "bench-sharing-pw"


@contextlib.contextmanager
def _patched(module: Any, name: str, value: Any) -> Iterator[None]:
    before = getattr(module, name)
    setattr(module, name, value)
    try:
        yield
    finally:
        setattr(module, name, before)


def _timed(fn: Callable[[], object]) -> float:
    t = time.perf_counter()
    fn()
    return time.perf_counter() - t


def _cli(*args: str | Path, cwd: Path) -> float:
    env = {**os.environ, "COSIGN_PASSWORD": PASSWORD}
    t = time.perf_counter()
    proc = subprocess.run(
        [sys.executable, "-m", "jup2kub.cli", *map(str, args)],
        cwd=cwd,
        env=env,
        capture_output=True,
        text=True,
        timeout=900,
    )
    if proc.returncode:
        raise RuntimeError(f"jup2kub {args[0]} failed: {proc.stderr[-2000:]}")
    return time.perf_counter() - t


def _builds(notebook: Path, out: Path, registry: str, repeat: int) -> dict[str, list[float]]:
    from jup2kub import api
    from jup2kub.build import sbom
    from jup2kub.chart.options import ChartOptions

    image_build = api.ImageBuild(base_image=docker_engine.base_image(), push=True)
    options = ChartOptions(image_registry=f"{registry}/bench")

    def once() -> object:
        return api.build(notebook, out, options=options, image_build=image_build)

    once()  # the images built and pushed, their SBOMs attached: later builds reuse them
    samples: dict[str, list[float]] = {"with": [], "without": []}
    for k in range(repeat):
        for side in ("with", "without") if k % 2 == 0 else ("without", "with"):
            if side == "with":
                samples[side].append(_timed(once))
            else:
                with _patched(sbom, "for_build", lambda *_a, **_k: {}):
                    samples[side].append(_timed(once))
    return samples


def _signing(out: Path, registry: str, work: Path, repeat: int) -> dict[str, list[float]]:
    _cli("keygen", work / "team", cwd=work)
    oci = f"oci://{registry}/charts"
    samples: dict[str, list[float]] = {"package": [], "sign": [], "verify": []}
    for _ in range(repeat):
        samples["package"].append(_cli("package", out, "-d", work / "dist", "--oci", oci, cwd=work))
        samples["sign"].append(_cli("sign", out, "--key", work / "team.key", cwd=work))
        samples["verify"].append(_cli("verify", out, "--key", work / "team.pub", cwd=work))
    return samples


def _runs(notebook: Path, work: Path, repeat: int) -> dict[str, list[float]]:
    from jup2kub import api

    def once() -> object:
        return api.run(notebook, workdir=work / "wd", cache=False)

    once()  # warm: imports, the forkserver's first start
    samples: dict[str, list[float]] = {"with": [], "without": []}
    for k in range(repeat):
        for side in ("with", "without") if k % 2 == 0 else ("without", "with"):
            if side == "with":
                samples[side].append(_timed(once))
            else:
                with _patched(api, "_run_crate", lambda *_a, **_k: None):
                    samples[side].append(_timed(once))
    return samples


def run(repeat: int, work: Path) -> dict[str, Any]:
    work.mkdir(parents=True, exist_ok=True)
    notebook = write(chain_notebook(3), work / "chain3.ipynb")
    with running_registry(work / "registry") as reg:
        out = work / "out"
        builds = _builds(notebook, out, reg.host, repeat)
        signing = _signing(out, reg.host, work, repeat)
    runs = _runs(notebook, work, repeat)
    return {
        "build_push_s": {k: summary(v) for k, v in builds.items()},
        "sbom_adds_to_build_s": summary(
            [a - b for a, b in zip(builds["with"], builds["without"], strict=True)]
        ),
        "signing_s": {k: summary(v) for k, v in signing.items()},
        "sign_adds_to_package_s": summary(
            [a - b for a, b in zip(signing["sign"], signing["package"], strict=True)]
        ),
        "run_s": {k: summary(v) for k, v in runs.items()},
        "crate_adds_to_run_s": summary(
            [a - b for a, b in zip(runs["with"], runs["without"], strict=True)]
        ),
        "samples": {"build": builds, "signing": signing, "run": runs},
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeat", type=int, default=5)
    parser.add_argument("--out", type=Path, default=None)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="j2k-bench-sharing-") as tmp:
        result = run(args.repeat, Path(tmp))
    text = json.dumps(result, indent=2)
    if args.out:
        args.out.mkdir(parents=True, exist_ok=True)
        (args.out / "sharing.json").write_text(text + "\n")
    print(text)


if __name__ == "__main__":
    main()
