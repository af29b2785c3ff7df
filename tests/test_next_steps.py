"""What the commands tell the user to do next is true (issue 20, item 5): ``build --no-images``
names the missing images and what builds them, the printed commands are shell-quoted, the
production values carry no made-up ids, the development values fit a laptop cluster."""

from __future__ import annotations

import shlex
from pathlib import Path

import yaml

from tests.support.cli_runner import CORPUS, jup2kub
from tests.test_chart import component, render, run_helm


def test_no_images_names_what_is_missing_and_quotes_commands(tmp_path: Path) -> None:
    out = tmp_path / "my chart"
    proc = jup2kub("build", CORPUS / "sales_markers.ipynb", "-o", out, "--no-images")
    assert proc.returncode == 0, proc.stderr
    text = proc.stdout
    values = yaml.safe_load((out / "values.yaml").read_text())
    for step, settings in values["steps"].items():
        image = f"{settings['image']['repository']}:{settings['image']['tag']}"
        assert image in text, step
    build = next(x for x in text.splitlines() if x.startswith("build them with"))
    argv = shlex.split(build.split(": ", 1)[1])
    assert argv == ["jup2kub", "build", str(CORPUS / "sales_markers.ipynb"), "-o", str(out)]
    install = next(x for x in text.splitlines() if x.startswith("then install it with"))
    argv = shlex.split(install.split(": ", 1)[1].split("  (")[0])
    assert argv == ["helm", "install", "sales-markers", str(out), "-f", f"{out}/values-dev.yaml"]
    assert "install it with: helm install" not in text.replace("then install it with", "")


def test_prod_values_hold_no_made_up_file_system_id(tmp_path: Path) -> None:
    plain, given = tmp_path / "plain", tmp_path / "given"
    nb = CORPUS / "sales_markers.ipynb"
    assert jup2kub("build", nb, "-o", plain, "--no-images").returncode == 0
    prod = yaml.safe_load((plain / "values-prod.yaml").read_text())
    assert prod["storage"]["efs"]["fileSystemId"] == ""
    # helm refuses at once, naming the value, instead of installing pods that cannot mount
    proc = run_helm("template", "rel", str(plain), "-f", str(plain / "values-prod.yaml"), ok=False)
    assert proc.returncode != 0 and "/storage/efs/fileSystemId" in proc.stderr
    assert "--set storage.efs.fileSystemId=fs-..." in (plain / "README.md").read_text()

    args = ["--no-images", "--storage", "efs", "--efs-file-system-id", "fs-0abc123"]
    assert jup2kub("build", nb, "-o", given, *args).returncode == 0
    prod = yaml.safe_load((given / "values-prod.yaml").read_text())
    assert prod["storage"]["efs"]["fileSystemId"] == "fs-0abc123"
    rendered = render(given, ["values-prod.yaml"], ["storage.mode=efs"])
    assert component(rendered, "StatefulSet", "kafka")["spec"]["replicas"] == 3


def _millicores(text: str) -> int:
    return int(text[:-1]) if text.endswith("m") else int(float(text) * 1000)


def _mebibytes(text: str) -> int:
    units = {"Mi": 1, "Gi": 1024}
    return int(text[:-2]) * units[text[-2:]]


def test_dev_values_fit_a_laptop_cluster(tmp_path: Path) -> None:
    out = tmp_path / "chart"
    proc = jup2kub("build", CORPUS / "sales_markers.ipynb", "-o", out, "--no-images")
    assert proc.returncode == 0, proc.stderr
    objects = render(out, ["values-dev.yaml"])
    workloads = [o for o in objects if o["kind"] in ("Deployment", "StatefulSet")]
    assert all(o["spec"]["replicas"] == 1 for o in workloads)  # 5 steps and 1 Kafka node
    assert not [o for o in objects if o["kind"] == "HorizontalPodAutoscaler"]
    containers = [c for o in workloads for c in o["spec"]["template"]["spec"]["containers"]]
    cpu = sum(_millicores(c["resources"]["requests"]["cpu"]) for c in containers)
    memory = sum(_mebibytes(c["resources"]["requests"]["memory"]) for c in containers)
    # a 2-core, 4 GiB laptop cluster (kind, minikube) schedules it with room to spare
    assert cpu <= 1000 and memory <= 2048, (cpu, memory)


def test_shell_completion_as_documented(tmp_path: Path) -> None:
    import os
    import subprocess
    import sys

    command = [str(Path(sys.executable).parent / "jup2kub")]  # the installed script
    source = {**os.environ, "_JUP2KUB_COMPLETE": "bash_source"}
    script = subprocess.run(command, env=source, capture_output=True, text=True, check=True)
    assert "complete -o nosort -F _jup2kub_completion jup2kub" in script.stdout
    words = {"COMP_WORDS": "jup2kub run nb.ipynb --ti", "COMP_CWORD": "3"}
    env = {**os.environ, "_JUP2KUB_COMPLETE": "bash_complete", **words}
    done = subprocess.run(command, env=env, capture_output=True, text=True, check=True)
    assert done.stdout.split() == ["plain,--timeout"]
    readme = (Path(__file__).resolve().parents[1] / "README.md").read_text()
    assert "_JUP2KUB_COMPLETE=bash_source jup2kub" in readme
