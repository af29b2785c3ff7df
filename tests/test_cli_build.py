"""``jup2kub build`` and ``jup2kub package`` as users run them (real helm for packaging)."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from tests.support.cli_runner import CORPUS, jup2kub


def test_build_writes_a_chart(tmp_path: Path) -> None:
    out = tmp_path / "chart"
    proc = jup2kub(
        "build",
        CORPUS / "sales_markers.ipynb",
        "-o",
        out,
        "--no-images",
        "--kafka-nodes",
        "1",
        "--replicas",
        "2",
        "--storage",
        "ebs",
    )
    assert proc.returncode == 0, proc.stderr
    assert f"helm install sales-markers {out}" in proc.stdout
    # the images were not built: named, with the command that builds them (no --no-images)
    assert "not built (--no-images): the step images sales-markers-load:" in proc.stdout
    assert f"jup2kub build {CORPUS / 'sales_markers.ipynb'} -o {out} --kafka-nodes 1" in (
        proc.stdout
    )
    chart = yaml.safe_load((out / "Chart.yaml").read_text())
    assert chart["name"] == "sales-markers"
    values = yaml.safe_load((out / "values.yaml").read_text())
    assert set(values["steps"]) == {"load", "clean", "summarize", "model", "report"}
    assert values["kafka"]["nodes"] == 1
    assert values["storage"]["mode"] == "ebs"
    assert values["stepDefaults"]["replicas"] == 2


def test_build_without_an_engine_says_how_to_proceed(tmp_path: Path) -> None:
    env = {**os.environ, "DOCKER_HOST": f"unix://{tmp_path}/no-engine.sock"}
    proc = jup2kub("build", CORPUS / "plain_cells.ipynb", "-o", tmp_path / "c", env=env)
    assert proc.returncode == 2
    assert "no Docker engine answers" in proc.stderr
    assert "--no-images" in proc.stderr
    assert not (tmp_path / "c").exists()


def test_build_bad_flag_values(tmp_path: Path) -> None:
    proc = jup2kub(
        "build",
        CORPUS / "plain_cells.ipynb",
        "-o",
        tmp_path / "c",
        "--no-images",
        "--storage",
        "nfs",
    )
    assert proc.returncode == 2 and "nfs" in proc.stderr
    proc = jup2kub(
        "build",
        CORPUS / "plain_cells.ipynb",
        "-o",
        tmp_path / "c",
        "--no-images",
        "--chart-version",
        "one",
    )
    assert proc.returncode == 2 and "one" in proc.stderr
    assert not (tmp_path / "c").exists()


def test_package_makes_a_chart_repository(tmp_path: Path) -> None:
    helm = os.environ.get("J2K_HELM") or shutil.which("helm")
    if helm is None:
        pytest.fail("helm not found: run the tests through tests/run.sh (it installs helm)")
    out = tmp_path / "chart"
    assert (
        jup2kub(
            "build",
            CORPUS / "plain_cells.ipynb",
            "-o",
            out,
            "--no-images",
            "--chart-version",
            "1.2.3",
        ).returncode
        == 0
    )
    env = {**os.environ, "J2K_HELM": helm}
    proc = jup2kub(
        "package",
        out,
        "-d",
        tmp_path / "repo",
        "--repo-index",
        "https://charts.example.org/pipelines",
        env=env,
    )
    assert proc.returncode == 0, proc.stderr
    assert (tmp_path / "repo" / "plain-cells-1.2.3.tgz").is_file()
    index = yaml.safe_load((tmp_path / "repo" / "index.yaml").read_text())
    (entry,) = index["entries"]["plain-cells"]
    assert entry["version"] == "1.2.3"
    assert entry["urls"] == ["https://charts.example.org/pipelines/plain-cells-1.2.3.tgz"]


@pytest.mark.parametrize(
    ("storage", "flag", "value", "rendered"),
    [
        ("efs", "--efs-file-system-id", "fs-0abc123", ("efs", "fileSystemId", "fs-0abc123")),
        (
            "existingClaim",
            "--existing-claim",
            "shared-state",
            ("existingClaim", None, "shared-state"),
        ),
    ],
)
def test_storage_modes_that_need_a_reference(
    tmp_path: Path, storage: str, flag: str, value: str, rendered: tuple[str, str | None, str]
) -> None:
    nb = CORPUS / "plain_cells.ipynb"
    missing = jup2kub("build", nb, "-o", tmp_path / "c", "--no-images", "--storage", storage)
    assert missing.returncode == 2
    assert flag in missing.stderr
    assert not (tmp_path / "c").exists()
    ok = jup2kub(
        "build", nb, "-o", tmp_path / "c", "--no-images", "--storage", storage, flag, value
    )
    assert ok.returncode == 0, ok.stderr
    values = yaml.safe_load((tmp_path / "c" / "values.yaml").read_text())
    key, sub, expected = rendered
    got = values["storage"][key] if sub is None else values["storage"][key][sub]
    assert values["storage"]["mode"] == storage
    assert got == expected


def test_steps_work_on_the_shared_volume(tmp_path: Path) -> None:
    """Relative paths in notebook code resolve on the state volume (root FS is read-only)."""
    helm = os.environ.get("J2K_HELM") or shutil.which("helm")
    if helm is None:
        pytest.fail("helm not found: run the tests through tests/run.sh (it installs helm)")
    out = tmp_path / "chart"
    assert jup2kub("build", CORPUS / "plain_cells.ipynb", "-o", out, "--no-images").returncode == 0
    rendered = subprocess.run(
        [helm, "template", "p", str(out)], capture_output=True, text=True, check=True
    ).stdout
    deployments = [d for d in yaml.safe_load_all(rendered) if d and d["kind"] == "Deployment"]
    assert len(deployments) == 5
    for d in deployments:
        (container,) = d["spec"]["template"]["spec"]["containers"]
        env = {e["name"]: e.get("value") for e in container["env"]}
        assert container["workingDir"] == env["J2K_STATE_PATH"] == "/var/lib/jup2kub/state"
        assert container["securityContext"]["readOnlyRootFilesystem"] is True


def test_build_into_the_notebooks_own_directory_is_refused(tmp_path: Path) -> None:
    """``build out/nb.ipynb -o out`` once deleted the notebook: an OUT that holds the notebook
    is refused before anything is written, whatever OUT holds."""
    out = tmp_path / "out"
    built = jup2kub("build", CORPUS / "plain_cells.ipynb", "-o", out, "--no-images")
    assert built.returncode == 0, built.stderr
    shutil.copy(CORPUS / "plain_cells.ipynb", out / "nb.ipynb")
    before = {p: p.read_bytes() for p in out.rglob("*") if p.is_file()}
    for target in (out, out / ".."):
        proc = jup2kub("build", out / "nb.ipynb", "-o", target, "--no-images")
        assert proc.returncode == 2, proc.stderr
        assert "holds the notebook" in proc.stderr and "Traceback" not in proc.stderr
    assert {p: p.read_bytes() for p in out.rglob("*") if p.is_file()} == before


def test_build_to_a_read_only_place_is_a_clear_error(tmp_path: Path) -> None:
    """OUT on a read-only file system (a read-only tmpfs mounted in a private mount namespace,
    gone with the command): exit 2 and a sentence, not a traceback."""
    ro = tmp_path / "ro"
    ro.mkdir()
    if subprocess.run(["unshare", "-m", "true"], capture_output=True).returncode != 0:
        pytest.skip("no mount namespaces here (unshare -m fails): cannot make a read-only place")
    script = (
        f"mount -t tmpfs -o ro tmpfs {ro} && exec {sys.executable} -m jup2kub.cli build "
        f"{CORPUS / 'plain_cells.ipynb'} -o {ro / 'chart'} --no-images"
    )
    proc = subprocess.run(["unshare", "-m", "sh", "-c", script], capture_output=True, text=True)
    assert proc.returncode == 2, proc.stderr
    assert "cannot write the chart: Read-only file system" in proc.stderr
    assert "Traceback" not in proc.stderr
