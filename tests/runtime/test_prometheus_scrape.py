"""A real Prometheus (built from its Go module: tests/setup.d/29-prometheus.sh) on loopback,
scraping the ``/metrics`` of real step processes on the real broker every second and evaluating
the chart's rendered alert rules: its HTTP API counts each step's executions as the runs
submitted, reads the consumer lag back at 0, and shows the failing-step alert firing once a step
fails for good as often as the rule's default threshold says (3 runs; its ``for:`` is 0m by
default, so nothing in the rules is rewritten)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

from jup2kub_runtime.contract.metrics import (
    CONSUMER_LAG,
    CONSUMER_LAG_SECONDS,
    EXECUTIONS,
    ExecutionOutcome,
)
from jup2kub_runtime.contract.spec import Cell, StepSpec
from tests.support.kafka_broker import KafkaBroker
from tests.support.prometheus_server import Prometheus, rule_groups, static_job
from tests.support.runtime_harness import Pipeline, unique
from tests.test_chart import (
    by_kind,
    charts,  # noqa: F401  (the fixture)
    render,
)

#: the namespace the chart is rendered for: its rules read this namespace's series only, and
#: Prometheus gives the scraped targets this label (as the Operator does a pod's namespace)
NAMESPACE = "pipelines"
#: clean takes 1 s a run: a backlog of some seconds, which the lag, measured every 5 s, shows
GOOD_RUNS = 8
#: the chart's default for monitoring.prometheusRule.alerts.stepFailing.failures
FAILURES = 3
FAILED = ExecutionOutcome.FAILED.value
SUCCEEDED = ExecutionOutcome.SUCCEEDED.value


def _specs(name: str) -> list[StepSpec]:
    """Two of the "linear" chart's steps: load, then clean, which raises when asked to and
    else takes a second."""
    params = "seed = 0\nfail = 0\nRUN_ID = 'none'\n"
    return [
        StepSpec(
            pipeline=name,
            step="load",
            parameters_source=params,
            cells=[Cell(index=1, source="x = seed * 2")],
            outputs=["x"],
            downstream=["clean"],
        ),
        StepSpec(
            pipeline=name,
            step="clean",
            parameters_source=params,
            cells=[
                Cell(
                    index=2,
                    source="import time\nif fail:\n"
                    "    raise ValueError(f'asked to fail: {RUN_ID}')\ntime.sleep(1)\ny = x + 1",
                )
            ],
            inputs={"x": "load"},
            outputs=["y"],
            upstream=["load"],
        ),
    ]


def _rules(chart: Path, name: str, tmp_path: Path) -> tuple[Path, list[dict[str, Any]]]:
    objects = render(
        chart,
        sets=[
            "monitoring.prometheusRule.enabled=true",
            f"pipeline.name={name}",
            # not run here: scaled to zero, so no alert for it having no ready replica
            "steps.report.replicas=0",
        ],
    )
    [rule] = by_kind(objects, "PrometheusRule").values()
    path = tmp_path / "rules.yaml"
    path.write_text(yaml.safe_dump(rule_groups(rule), sort_keys=False))
    return path, [r for g in rule["spec"]["groups"] for r in g["rules"]]


@pytest.fixture
def pipeline(broker: KafkaBroker, tmp_path: Path) -> Iterator[Pipeline]:
    p = Pipeline(
        tmp_path / "pipeline",
        broker.bootstrap,
        _specs(unique("prom")),
        extra_env={"J2K_MAX_RETRIES": "0"},
    ).start()
    try:
        p.wait_ready()
        yield p
    finally:
        p.stop()


def _by_step(result: dict[tuple[tuple[str, str], ...], float]) -> dict[str, float]:
    return {dict(labels)["step"]: v for labels, v in result.items()}


def _firing(prom: Prometheus, alert: str) -> list[dict[str, str]]:
    return [
        a["labels"]
        for a in prom.alerts()
        if a["labels"]["alertname"] == alert and a["state"] == "firing"
    ]


def test_prometheus_scrapes_the_steps_and_fires_the_failing_alert(
    charts: dict[str, Path],  # noqa: F811
    pipeline: Pipeline,
    tmp_path: Path,
) -> None:
    p, name = pipeline, pipeline.name
    rule_file, rules = _rules(charts["linear"], name, tmp_path)
    by_alert = {r["alert"]: r for r in rules}
    failing = by_alert["Jup2KubStepFailing"]
    assert failing["expr"].endswith(f">= {FAILURES}") and failing["for"] == "0m", failing
    targets = [f"127.0.0.1:{p.proc(step).port}" for step in ("load", "clean")]
    prom = Prometheus(
        tmp_path / "prometheus",
        [static_job("jup2kub", targets, {"namespace": NAMESPACE})],
        rule_files=[rule_file],
    ).start()
    try:
        sel = f'namespace="{NAMESPACE}", pipeline="{name}"'
        prom.wait(
            lambda: len(prom.query('up{job="jup2kub"} == 1')) == 2,
            60,
            "both steps scraped",
        )
        # the rules are loaded, all of them, and evaluated
        groups = prom.api("rules")["groups"]
        assert sorted(r["name"] for g in groups for r in g["rules"]) == sorted(
            r["alert"] for r in rules
        )
        assert all(g["lastEvaluation"] != "0001-01-01T00:00:00Z" for g in groups)

        runs = [f"ok{i}" for i in range(GOOD_RUNS)]
        for i, run_id in enumerate(runs):
            p.submit(run_id, seed=i, RUN_ID=run_id)
        p.wait_complete(runs)
        executions = f"sum by (step) ({EXECUTIONS.name}{{{sel}}})"
        want = {"load": float(GOOD_RUNS), "clean": float(GOOD_RUNS)}
        prom.wait(lambda: _by_step(prom.query(executions)) == want, 60, "executions counted")
        succeeded = f'sum by (step) ({EXECUTIONS.name}{{{sel}, outcome="{SUCCEEDED}"}})'
        assert _by_step(prom.query(succeeded)) == want
        # the lag, measured every 5 s by the steps, was seen while clean was behind ...
        behind = f'max_over_time({CONSUMER_LAG.name}{{{sel}, step="clean"}}[10m])'
        [seen] = prom.query(behind).values()
        assert seen >= 1, prom.query(behind)
        # ... and is back at 0 once they are caught up
        lag = f"max by (step) ({CONSUMER_LAG.name}{{{sel}}})"
        lag_s = f"max by (step) ({CONSUMER_LAG_SECONDS.name}{{{sel}}})"
        zero = {"load": 0.0, "clean": 0.0}
        prom.wait(
            lambda: _by_step(prom.query(lag)) == zero and _by_step(prom.query(lag_s)) == zero,
            60,
            "lag back at 0",
        )
        assert _firing(prom, "Jup2KubStepFailing") == []
        assert [a for a in prom.alerts() if a["state"] == "firing"] == []

        bad = [f"bad{i}" for i in range(FAILURES)]
        for i, run_id in enumerate(bad):
            p.submit(run_id, seed=i, fail=1, RUN_ID=run_id)
        prom.wait(lambda: all(p.store.failed_at(r) is not None for r in bad), 90, "the runs failed")
        prom.wait(
            lambda: _firing(prom, "Jup2KubStepFailing") != [],
            90,
            "the failing-step alert firing",
        )
        [labels] = _firing(prom, "Jup2KubStepFailing")
        assert labels == {
            "alertname": "Jup2KubStepFailing",
            "namespace": NAMESPACE,
            "pipeline": name,
            "step": "clean",
            "severity": failing["labels"]["severity"],
        }
        # every run was executed once by each step: the failed ones counted as failed by clean
        total = float(GOOD_RUNS + FAILURES)
        prom.wait(
            lambda: _by_step(prom.query(executions)) == {"load": total, "clean": total},
            60,
            "every run counted",
        )
        failed = f'sum by (step) ({EXECUTIONS.name}{{{sel}, outcome="{FAILED}"}})'
        assert _by_step(prom.query(failed)) == {"load": 0.0, "clean": float(FAILURES)}
        # the failed runs' messages went to the dead-letter topic: that alert fires as well
        prom.wait(lambda: _firing(prom, "Jup2KubDeadLetter") != [], 60, "dead-letter alert")
        assert {a["step"] for a in _firing(prom, "Jup2KubDeadLetter")} == {"clean"}
        assert _firing(prom, "Jup2KubStepNotReady") == []
    finally:
        prom.stop()
