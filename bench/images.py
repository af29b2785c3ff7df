"""Image size and rebuild: Jup2Kub's step images of a pandas notebook vs the image
``reprounzip docker`` makes from a ReproZip pack of the same notebook's run (the approach the
original Jup2Kub took), on the same base image; then the time to rebuild after changing one
step (unchanged steps must be reused).

Needs a Docker engine and the locally built base image (tests/setup.d/40-docker.sh, exported
as J2K_BASE_IMAGE), and for the ReproZip side ``reprozip``, ``reprounzip`` and
``reprounzip-docker`` from PyPI, installed here into their own virtualenv under
``$JUP2KUB_CACHE/bench/reprozip-venv``.

reprounzip's ``docker setup`` downloads three static helper binaries (busybox, rpzsudo,
rpztar) from the ReproZip project's server, which cannot be reached here. The bench gives
reprounzip local stand-ins instead (no download is attempted): Debian's busybox, and small
shell scripts for rpzsudo/rpztar (rpztar extracts the listed files of the pack with GNU tar,
which is what the real one does). They add a few MB at most; everything else in the image is
what reprounzip writes: the base image, the packed data, and the files unpacked from it.

    python -m bench.images [--quick]
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path
from typing import Any

import nbformat
from nbformat import v4

from bench.stats import summary

REPO = Path(__file__).resolve().parents[1]
CACHE = Path(os.environ.get("JUP2KUB_CACHE", Path.home() / ".cache" / "jup2kub"))
RZ_VENV = CACHE / "bench" / "reprozip-venv"
RZ_PACKAGES = ["reprozip==1.3.2", "reprounzip==1.3.2", "reprounzip-docker==1.2"]

PANDAS_CELLS = [
    "#| step: load\nimport numpy as np\nimport pandas as pd\n"
    "rng = np.random.default_rng(0)\n"
    "df = pd.DataFrame({'region': rng.choice(list('NSEW'), 5000), "
    "'sales': rng.random(5000) * 100})",
    "#| step: summarize\ntotals = df.groupby('region')['sales'].agg(['sum', 'mean', 'count'])",
    "#| step: report\nprint(totals.round(1).to_string())\nbest = totals['sum'].idxmax()\n"
    "print('best region:', best)",
]

RPZTAR_SHIM = """#!/bin/sh
# Stand-in for ReproZip's static rpztar (not downloadable here): extract the files listed
# (NUL-separated) in $2 from the pack's DATA/ tree in $1 into the current directory.
set -e
tr '\\000' '\\n' < "$2" | sed 's|^|DATA/|' > /tmp/rpz-files.txt
tar -xzf "$1" --strip-components=1 --no-recursion -T /tmp/rpz-files.txt
rm -f /tmp/rpz-files.txt
"""
DOCKER_WRAPPER = """#!/bin/sh
# 'docker build' on an engine without a bridge network: builds run with --network=none.
if [ "$1" = build ]; then shift; exec docker build --network=none "$@"; fi
exec docker "$@"
"""
RPZSUDO_SHIM = """#!/bin/sh
# Stand-in for ReproZip's rpzsudo (only used by 'reprounzip docker run', not measured here).
exec "$@"
"""

# Runs reprounzip with its downloader pointed at the local stand-ins.
UNPACK = """
import shutil, sys
from reprounzip.unpackers import docker
stand_ins = dict(arg.split('=', 1) for arg in sys.argv[1:4])
def local(url, dest, cachename=None, ssl_verify=None):
    shutil.copy(stand_ins[cachename.rsplit('-', 1)[0]], str(dest))
docker.download_file = local
sys.argv = ['reprounzip', 'docker'] + sys.argv[4:]
from reprounzip.main import main
main()
"""

TRACE_RUNNER = """
import sys, nbformat
from nbclient import NotebookClient
nb = nbformat.read(sys.argv[1], as_version=4)
NotebookClient(nb, timeout=600, kernel_name='python3').execute()
"""


def notebook(extra: str = "") -> nbformat.NotebookNode:
    nb = v4.new_notebook()
    nb.metadata = {
        "kernelspec": {"name": "python3", "display_name": "Python 3", "language": "python"}
    }
    cells = list(PANDAS_CELLS)
    cells[-1] += extra
    nb.cells = [v4.new_code_cell(c) for c in cells]
    return nb


def base_image() -> str:
    if os.environ.get("J2K_BASE_IMAGE"):
        return os.environ["J2K_BASE_IMAGE"]
    out = subprocess.run(
        [
            "bash",
            "-c",
            f'set -euo pipefail; source "{REPO}/tests/setup.d/40-docker.sh" >&2; '
            'echo "$J2K_BASE_IMAGE"',
        ],
        check=True,
        capture_output=True,
        text=True,
        timeout=1800,
    )
    os.environ["J2K_BASE_IMAGE"] = out.stdout.strip().splitlines()[-1]
    return os.environ["J2K_BASE_IMAGE"]


def image_size(ref: str) -> int:
    out = subprocess.run(
        ["docker", "image", "inspect", "--format", "{{.Size}}", ref],
        check=True,
        capture_output=True,
        text=True,
        timeout=60,
    )
    return int(out.stdout.strip())


def jup2kub_build(nb: Path, out: Path, base: str) -> tuple[float, str]:
    cmd = [
        sys.executable,
        "-m",
        "jup2kub.cli",
        "build",
        str(nb),
        "-o",
        str(out),
        "--base-image",
        base,
    ]
    t = time.perf_counter()
    proc = subprocess.run(cmd, capture_output=True, text=True, cwd=nb.parent, timeout=3600)
    seconds = time.perf_counter() - t
    if proc.returncode:
        raise RuntimeError(f"jup2kub build failed:\n{proc.stdout[-2000:]}{proc.stderr[-3000:]}")
    return seconds, proc.stdout + proc.stderr


def measure_jup2kub(root: Path, base: str, rebuilds: int) -> dict[str, Any]:
    nb = root / "pandas_nb.ipynb"
    nb.write_text(nbformat.writes(notebook()))
    first_s, log = jup2kub_build(nb, root / "chart", base)
    built = json.loads((root / "chart" / "images" / "images.json").read_text())
    sizes = {s: int(v["size"]) for s, v in built["steps"].items()}
    totals, changed, reused = [], [], True
    for _ in range(rebuilds):
        # A per-run change to one step, so no warm cache can hide the rebuild.
        nb.write_text(nbformat.writes(notebook(f"\nprint('build {uuid.uuid4().hex}')")))
        seconds, log = jup2kub_build(nb, root / "chart", base)
        totals.append(seconds)
        # the code is in the chart, not the image: a code change alone rebuilds no image
        m = re.search(r"step report: built in ([0-9.]+)s", log)
        changed.append(float(m.group(1)) if m else 0.0)
        for step in sizes:
            if step != "report" and f"step {step}: built in" in log:
                reused = False
    return {
        "images": sizes,
        "step_image_bytes": max(sizes.values()),
        "first_build_s": round(first_s, 2),
        "rebuild_s": summary(totals, 3),
        "changed_step_s": summary(changed, 3),
        "unchanged_overhead_s": summary([t - c for t, c in zip(totals, changed, strict=True)], 3),
        "unchanged_reused": reused,
        "last_log": log[-1500:],
    }


def rz_venv() -> Path:
    py = RZ_VENV / "bin" / "python"
    if not (RZ_VENV / ".complete").exists():
        subprocess.run([sys.executable, "-m", "venv", str(RZ_VENV)], check=True, timeout=300)
        subprocess.run(
            [str(py), "-m", "pip", "install", "-q", *RZ_PACKAGES], check=True, timeout=1200
        )
        (RZ_VENV / ".complete").write_text("")
    return RZ_VENV / "bin"


def measure_reprounzip(root: Path, base: str) -> dict[str, Any]:
    rz = rz_venv()
    nb = root / "rz_nb.ipynb"
    nb.write_text(nbformat.writes(notebook()))
    runner = root / "run_nb.py"
    runner.write_text(TRACE_RUNNER)
    trace_dir, pack = root / "rz-trace", root / "nb.rpz"
    env = {
        **os.environ,
        "PATH": f"{Path(sys.executable).parent}:{os.environ['PATH']}",
        "XDG_CACHE_HOME": str(root / "xdg"),
        # bundled parameters, no usage report: nothing is fetched from ReproZip's server
        "REPROZIP_PARAMETERS": "off",
        "REPROZIP_USAGE_STATS": "off",
    }
    t = time.perf_counter()
    subprocess.run(
        [str(rz / "reprozip"), "trace", "-d", str(trace_dir), sys.executable, str(runner), str(nb)],
        check=True,
        capture_output=True,
        cwd=root,
        env=env,
        timeout=1800,
    )
    trace_s = time.perf_counter() - t
    subprocess.run(
        [str(rz / "reprozip"), "pack", "-d", str(trace_dir), str(pack)],
        check=True,
        capture_output=True,
        cwd=root,
        env=env,
        timeout=1800,
    )
    shims = root / "shims"
    shims.mkdir()
    (shims / "rpztar").write_text(RPZTAR_SHIM)
    (shims / "rpzsudo").write_text(RPZSUDO_SHIM)
    (shims / "docker").write_text(DOCKER_WRAPPER)
    (shims / "docker").chmod(0o755)
    busybox = shutil.which("busybox") or "/bin/busybox"
    unpack = root / "unpack.py"
    unpack.write_text(UNPACK)
    image = f"j2k-bench-reprounzip:{uuid.uuid4().hex[:8]}"
    target = root / "rz-docker"
    t = time.perf_counter()
    proc = subprocess.run(
        [
            str(rz / "python"),
            str(unpack),
            f"busybox={busybox}",
            f"rpzsudo={shims / 'rpzsudo'}",
            f"rpztar={shims / 'rpztar'}",
            "--docker-cmd",
            str(shims / "docker"),
            "setup",
            "--base-image",
            base,
            "--image-name",
            image,
            str(pack),
            str(target),
        ],
        capture_output=True,
        text=True,
        cwd=root,
        env=env,
        timeout=3600,
    )
    setup_s = time.perf_counter() - t
    if proc.returncode:
        raise RuntimeError(f"reprounzip docker setup failed:\n{proc.stderr[-3000:]}")
    try:
        size = image_size(image)
    finally:
        subprocess.run(["docker", "image", "rm", "-f", image], capture_output=True, timeout=300)
    return {
        "image_bytes": size,
        "pack_bytes": pack.stat().st_size,
        "trace_s": round(trace_s, 2),
        "setup_s": round(setup_s, 2),
        "note": "busybox/rpzsudo/rpztar are local stand-ins (not downloadable here)",
    }


def run(root: Path, quick: bool = False) -> dict[str, Any]:
    root.mkdir(parents=True, exist_ok=True)
    base = base_image()
    res: dict[str, Any] = {"base_image": base, "base_image_bytes": image_size(base)}
    for key, fn in (
        ("jup2kub", lambda: measure_jup2kub(root / "j2k", base, 1 if quick else 3)),
        ("reprounzip", lambda: measure_reprounzip(root / "rz", base)),
    ):
        (root / ("j2k" if key == "jup2kub" else "rz")).mkdir(exist_ok=True)
        try:
            res[key] = fn()
        except Exception as exc:  # recorded with the reason, the other side still measured
            res[key] = {"error": f"{type(exc).__name__}: {exc}"[-3000:]}
    return res


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    ap.add_argument("--quick", action="store_true")
    args = ap.parse_args(argv)
    with tempfile.TemporaryDirectory(prefix="j2k-bench-img-") as tmp:
        print(json.dumps(run(Path(tmp), args.quick), indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
