"""``jup2kub submit``/``status``/``results`` against a pipeline running on a real Kafka."""

from __future__ import annotations

import json
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

import nbformat

from jup2kub.api import inspect_notebook
from jup2kub.plan import pipeline_name, step_specs, write_bundles
from jup2kub.run.local import _free_port, _ready, runtime_env
from tests.support.cli_runner import jup2kub

MakeNb = Callable[..., Path]




def test_submit_status_results(kafka: str, tmp_path: Path, make_notebook: MakeNb) -> None:
    nb = make_notebook(
        [
            ("code", "n = 3", ["parameters"]),
            "#| step: make\nvalues = [i * i for i in range(n)]",
            "#| step: total\nprint('total', sum(values))",
            "#| step: boom\nif n > 5:\n    raise RuntimeError(f'n too large: {n}')\nprint('ok')",
        ],
        name="02 Remote Demo.ipynb",
    )
    pipeline = inspect_notebook(nb)
    name = pipeline_name(pipeline)
    assert name == "nb-02-remote-demo"  # a leading digit is not allowed in Service names
    state = tmp_path / "state"
    bundles = write_bundles(step_specs(pipeline), tmp_path / "bundles")
    procs = []
    try:
        for step in pipeline.steps:
            port = _free_port()
            env = runtime_env(pipeline, step.name, kafka, state, bundles[step.name], port)
            log = (tmp_path / f"{step.name}.log").open("wb")
            procs.append(
                (
                    subprocess.Popen(
                        [sys.executable, "-m", "jup2kub_runtime"],
                        env=env,
                        stdout=log,
                        stderr=subprocess.STDOUT,
                    ),
                    port,
                    log,
                )
            )
        deadline = time.monotonic() + 90
        while not all(_ready(port) for _, port, _ in procs):
            assert time.monotonic() < deadline, "runtimes did not become ready"
            time.sleep(0.3)

        ok = jup2kub("submit", nb, "--kafka", kafka, "-p", "n", "4", cwd=tmp_path)
        assert ok.returncode == 0, ok.stderr
        good = ok.stdout.strip()
        bad = jup2kub(
            "submit", nb, "--kafka", kafka, "-p", "n", "9", "--run-id", "bad-run", cwd=tmp_path
        )
        assert bad.returncode == 0 and bad.stdout.strip() == "bad-run"
        assert (
            jup2kub("submit", nb, "--kafka", kafka, "--run-id", "../x", cwd=tmp_path).returncode
            == 2
        )

        def states(run: str) -> dict[str, str]:
            proc = jup2kub("status", nb, run, "--kafka", kafka, "--json", cwd=tmp_path)
            assert proc.returncode == 0, proc.stderr
            return {k: v["state"] for k, v in json.loads(proc.stdout).items()}

        deadline = time.monotonic() + 120
        while states(good) != {"make": "succeeded", "total": "succeeded", "boom": "succeeded"}:
            assert time.monotonic() < deadline, states(good)
        while states("bad-run").get("boom") != "failed":
            assert time.monotonic() < deadline, states("bad-run")
        text = jup2kub("status", nb, "bad-run", "--kafka", kafka, cwd=tmp_path).stdout
        assert "RuntimeError: n too large: 9 (cell 3)" in text

        out = tmp_path / "good.ipynb"
        res = jup2kub("results", nb, good, "--state", state, "-o", out, cwd=tmp_path)
        assert res.returncode == 0, res.stderr
        assert "succeeded" in res.stdout
        result = nbformat.read(out, as_version=4)
        assert result.cells[1].source == "# Parameters\nn = 4\n"
        assert result.cells[3].outputs[0]["text"] == "total 14\n"
        missing = jup2kub("results", nb, "nope", "--state", state, cwd=tmp_path)
        assert missing.returncode == 2 and "no run 'nope'" in missing.stderr
    finally:
        for proc, _, _log in procs:
            proc.terminate()
        for proc, _, log in procs:
            proc.wait(timeout=60)
            log.close()
