"""``pip install .`` (a real wheel, not the editable install) gives a working ``jup2kub``."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import zipfile
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


def test_wheel_installs_a_working_command(tmp_path: Path) -> None:
    wheels = tmp_path / "wheels"
    build = subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "--no-deps", "-q", "-w", str(wheels), str(REPO)],
        capture_output=True,
        text=True,
        check=False,
        timeout=600,
    )
    assert build.returncode == 0, build.stderr
    (wheel,) = wheels.glob("jup2kub-*.whl")
    names = zipfile.ZipFile(wheel).namelist()
    assert "jup2kub/cli/__init__.py" in names and "jup2kub/cli/__main__.py" in names
    assert "jup2kub_runtime/__init__.py" in names
    assert any(n.startswith("jup2kub/chart/skeleton/templates/") for n in names)
    assert "jup2kub/chart/skeleton/.helmignore" in names
    assert any(n.startswith("jup2kub/build/dockerfiles/") for n in names)
    assert not any(n.startswith(("tests/", "generator/", "runtime/")) for n in names)
    # the prebuilt JupyterLab extension and its server half's switch, where Jupyter finds them
    data = "jup2kub-0.1.0.data/data/"
    assert f"{data}share/jupyter/labextensions/jup2kub-labextension/package.json" in names
    assert f"{data}etc/jupyter/jupyter_server_config.d/jup2kub.json" in names

    target = tmp_path / "site"
    install = subprocess.run(
        [
            sys.executable,
            "-m",
            "pip",
            "install",
            "--no-deps",
            "-q",
            "--target",
            str(target),
            str(wheel),
        ],
        capture_output=True,
        text=True,
        check=False,
        timeout=600,
    )
    assert install.returncode == 0, install.stderr
    env = {**os.environ, "PYTHONPATH": str(target)}
    workdir = tmp_path / "elsewhere"
    workdir.mkdir()
    where = subprocess.run(
        [sys.executable, "-c", "import jup2kub; print(jup2kub.__file__)"],
        capture_output=True,
        text=True,
        env=env,
        cwd=workdir,
        check=True,
    )
    assert where.stdout.strip().startswith(str(target))
    proc = subprocess.run(
        [
            str(target / "bin" / "jup2kub"),
            "inspect",
            "--json",
            str(REPO / "tests" / "corpus" / "digits_kale.ipynb"),
        ],
        capture_output=True,
        text=True,
        env=env,
        cwd=workdir,
        check=False,
        timeout=120,
    )
    assert proc.returncode == 0, proc.stderr
    assert json.loads(proc.stdout)["steps"][0]["name"] == "load-data"

    # the chart templates come from inside the wheel, not from this checkout
    out = workdir / "chart"
    built = subprocess.run(
        [
            str(target / "bin" / "jup2kub"),
            "build",
            "--no-images",
            "-o",
            str(out),
            str(REPO / "tests" / "corpus" / "plain_cells.ipynb"),
        ],
        capture_output=True,
        text=True,
        env=env,
        cwd=workdir,
        check=False,
        timeout=120,
    )
    assert built.returncode == 0, built.stderr
    shipped = sorted(
        n.removeprefix("jup2kub/chart/skeleton/")
        for n in names
        if n.startswith("jup2kub/chart/skeleton/")
        and not n.endswith(".j2")
        and not n.endswith("values.schema.base.json")
    )
    assert shipped
    for name in shipped:
        assert (out / name).is_file(), name
