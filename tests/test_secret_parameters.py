"""Secret parameters: a credential in the parameters cell never reaches the chart, the images'
code, the run's files or the results; at run time it comes from the environment."""

from __future__ import annotations

import json
import os
import re
import subprocess
from collections.abc import Callable
from pathlib import Path

import pytest

from jup2kub.api import inspect_notebook
from jup2kub.model.secrets import find_secrets, redact
from jup2kub.plan import plan_pipeline
from jup2kub_runtime.execution.cell_runner import execute_step
from tests.support.cli_runner import jup2kub

MakeNb = Callable[..., Path]
KEY = "sk-abcdefghijklmnopqrstuvwx"  # looks like an API key whatever it is called
PASSWORD = "hunter2-literal"


def test_secrets_are_found_by_name_or_value() -> None:
    source = (
        f'endpoint = "https://example.org"\nmodel_key = "{KEY}"\ndbPassword = "{PASSWORD}"\n'
        'token_count = 5\napi_token: str = ""\nsecretary = "Ann"\n'
    )
    found = {s.name: s.why for s in find_secrets(3, source)}
    assert found == {"model_key": "its value", "dbPassword": "its name", "api_token": "its name"}
    redacted = redact(source, set(found))
    assert KEY not in redacted and PASSWORD not in redacted
    assert (
        "model_key = None\ndbPassword = None\n" in redacted and "api_token: str = None" in redacted
    )
    assert 'endpoint = "https://example.org"' in redacted and "token_count = 5" in redacted


def _notebook(make_notebook: MakeNb) -> Path:
    return make_notebook(
        [
            ("code", f'api_key = "{KEY}"\nrows = 3', ["parameters"]),
            "#| step: use\nshown = len(api_key) * rows\nprint('key ends with', api_key[-3:])",
            "#| step: report\nprint(shown)",
        ]
    )


def test_no_literal_in_the_chart_the_specs_or_the_graph(
    make_notebook: MakeNb, tmp_path: Path
) -> None:
    nb = _notebook(make_notebook)
    pipeline = inspect_notebook(nb)
    assert pipeline.parameters == {"api_key": None, "rows": 3}
    assert any("'api_key' looks like a secret" in str(w) for w in pipeline.split_warnings)
    plan = plan_pipeline(pipeline)
    assert plan.step("use").spec.secret_parameters == ["api_key"]
    assert plan.step("report").spec.secret_parameters == []
    proc = jup2kub("build", nb, "-o", tmp_path / "chart", "--no-images")
    assert proc.returncode == 0, proc.stderr
    assert "looks like a secret" in proc.stderr
    for path in (tmp_path / "chart").rglob("*"):
        if path.is_file():
            assert KEY not in path.read_text(errors="replace"), path
    graph = json.loads((tmp_path / "chart" / "pipeline.json").read_text())
    assert graph["parameters"]["api_key"] is None


def test_install_needs_the_secret_named(make_notebook: MakeNb, tmp_path: Path) -> None:
    helm = os.environ.get("J2K_HELM", "helm")
    chart = tmp_path / "chart"
    assert jup2kub("build", _notebook(make_notebook), "-o", chart, "--no-images").returncode == 0
    missing = subprocess.run([helm, "template", "r", str(chart)], capture_output=True, text=True)
    assert missing.returncode != 0
    assert "secretParameters.api_key.secret: name the Kubernetes Secret" in missing.stderr
    given = subprocess.run(
        [helm, "template", "r", str(chart), "--set", "secretParameters.api_key.secret=creds"],
        capture_output=True,
        text=True,
    )
    assert given.returncode == 0, given.stderr
    env = re.search(
        r"- name: J2K_SECRET_PARAMETER_api_key\s+valueFrom:\s+secretKeyRef:\s+"
        r'name: "creds"\s+key: "api_key"',
        given.stdout,
    )
    assert env is not None
    assert given.stdout.count("J2K_SECRET_PARAMETER_api_key") == 1  # only the step reading it


@pytest.mark.parametrize("from_env", [True, False])
def test_run_takes_the_secret_from_the_environment_and_writes_it_nowhere(
    make_notebook: MakeNb, tmp_path: Path, from_env: bool
) -> None:
    nb = _notebook(make_notebook)
    given = "sk-from-the-environment-xyz"
    env = {k: v for k, v in os.environ.items() if k != "API_KEY"}
    if from_env:
        env["API_KEY"] = given
    work = tmp_path / "work"
    proc = jup2kub("run", nb, "--workdir", work, cwd=tmp_path, env=env)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    used = given if from_env else KEY
    run_id = re.search(r"run (\S+): succeeded", proc.stdout).group(1)  # type: ignore[union-attr]
    result = (work / "runs" / run_id / "result.ipynb").read_text()
    assert f"key ends with {used[-3:]}" in result
    assert str(len(used) * 3) in result
    for path in work.rglob("*"):
        if path.is_file():
            text = path.read_bytes()
            assert KEY.encode() not in text and given.encode() not in text, path
    refused = jup2kub("run", nb, "--workdir", work, "-p", "api_key", "x", cwd=tmp_path)
    assert refused.returncode == 2
    assert "'api_key' is a secret" in refused.stderr and "API_KEY" in refused.stderr


def test_a_step_without_its_secret_fails_naming_the_variable(make_notebook: MakeNb) -> None:
    spec = plan_pipeline(inspect_notebook(_notebook(make_notebook))).step("use").spec
    os.environ.pop("J2K_SECRET_PARAMETER_api_key", None)
    result = execute_step(spec, {}, {})
    assert result.error is not None and result.permanent
    assert "J2K_SECRET_PARAMETER_api_key: not set" in result.error.evalue
    assert "secretParameters.api_key.secret" in result.error.evalue
