"""The chart's alert rules through the real promtool (built from Prometheus's Go module:
tests/setup.d/29-prometheus.sh): the rendered PrometheusRule's groups pass
``promtool check rules``, and ``promtool test rules`` feeds them synthetic series of the
runtime's metric names (``jup2kub_runtime.contract.metrics``) to show each alert fires when it
should, with the labels and annotations an operator reads, and not otherwise. The dashboard's
queries go through the same parser (``promtool promql format``)."""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import pytest
import yaml

from jup2kub_runtime.contract.metrics import (
    CONSUMER_LAG,
    CONSUMER_LAG_SECONDS,
    EXECUTIONS,
    MESSAGES_DEAD_LETTERED,
    READY,
    ExecutionOutcome,
)
from tests.support import promql
from tests.support.prometheus_server import promtool, rule_groups
from tests.test_chart import (
    VALUES_FILES,
    by_kind,
    charts,  # noqa: F401  (the fixture)
    render,
)
from tests.test_chart_monitoring import _dashboard, _dashboard_queries

NAMESPACE, PIPELINE = "pipelines", "diamond"
HERE = {"namespace": NAMESPACE, "pipeline": PIPELINE}
#: the same names in another release: the rules read their own release's series only
ELSEWHERE = {"namespace": "other", "pipeline": PIPELINE}
STEPS = ("join", "left", "load", "right")
#: lint warnings (rules Prometheus would take for duplicates) fail the check too
STRICT = ("--lint=all", "--lint-fatal")
TEMPLATE = re.compile(r"\{\{ *(\$labels\.(\w+)|\$value \| (humanize|humanizeDuration)) *\}\}")


def _rule_object(chart: Path, values: Sequence[str] = (), sets: Sequence[str] = ()) -> Any:
    objects = render(chart, values, ["monitoring.prometheusRule.enabled=true", *sets])
    [rule] = by_kind(objects, "PrometheusRule").values()
    return rule


def _write_rules(tmp_path: Path, rule: Mapping[str, Any]) -> Path:
    path = tmp_path / "rules.yaml"
    path.write_text(yaml.safe_dump(rule_groups(rule), sort_keys=False))
    return path


def _series(name: str, labels: Mapping[str, str], values: str) -> dict[str, str]:
    inner = ", ".join(f'{k}="{v}"' for k, v in labels.items())
    return {"series": f"{name}{{{inner}}}", "values": values}


def _expand(template: str, labels: Mapping[str, str], value: str) -> str:
    """A rule annotation as Prometheus expands it, for the templates the chart uses."""

    def one(match: re.Match[str]) -> str:
        return labels[match.group(2)] if match.group(2) else value

    expanded = TEMPLATE.sub(one, template)
    assert "{{" not in expanded, f"a template this test does not expand: {template}"
    return expanded


class Expect:
    """``exp_alerts`` entries of the rendered rules: labels and expanded annotations."""

    def __init__(self, rules: Sequence[Mapping[str, Any]]) -> None:
        self.rules = {r["alert"]: r for r in rules}

    def alert(self, name: str, step: str, value: str = "") -> dict[str, Any]:
        rule = self.rules[name]
        labels = {**HERE, "step": step}
        return {
            "exp_labels": {**rule.get("labels", {}), **labels},
            "exp_annotations": {
                k: _expand(v, labels, value) for k, v in rule.get("annotations", {}).items()
            },
        }


def _minutes(duration: str) -> int:
    match = re.fullmatch(r"(\d+)m", duration)
    assert match, f"the unit test below expects whole minutes, not {duration}"
    return int(match.group(1))


def _unit_tests(rules: Sequence[Mapping[str, Any]], rule_file: Path) -> dict[str, Any]:
    """Scenarios over the default thresholds: 3 failures in 15m, lag over 100 messages or
    600 s for 10m, any dead letter in 10m, no ready replica for 5m."""
    by_alert = {r["alert"]: r for r in rules}
    failing, lag = by_alert["Jup2KubStepFailing"], by_alert["Jup2KubConsumerLagMessages"]
    lag_s, dead = by_alert["Jup2KubConsumerLagSeconds"], by_alert["Jup2KubDeadLetter"]
    not_ready = by_alert["Jup2KubStepNotReady"]
    # the defaults the scenarios are written for
    assert failing["expr"].endswith(">= 3") and "[15m]" in failing["expr"], failing
    assert lag["expr"].endswith("> 100") and lag_s["expr"].endswith("> 600")
    assert "[10m]" in dead["expr"] and dead["expr"].endswith("> 0")
    lag_for, ready_for = _minutes(lag["for"]), _minutes(not_ready["for"])
    assert _minutes(failing["for"]) == _minutes(dead["for"]) == 0
    assert lag_for == _minutes(lag_s["for"]) == 10 and ready_for == 5
    expect = Expect(rules)
    failed, ok = ExecutionOutcome.FAILED.value, ExecutionOutcome.SUCCEEDED.value
    executions, dead_letters = EXECUTIONS.name, MESSAGES_DEAD_LETTERED.name
    all_ready = [_series(READY.name, {**HERE, "step": s}, "1x40") for s in STEPS]

    def at(minute: int, alert: str, *expected: dict[str, Any]) -> dict[str, Any]:
        return {"eval_time": f"{minute}m", "alertname": alert, "exp_alerts": list(expected)}

    tests = [
        {
            "name": "a step failing once a minute fires at its third failure; others never",
            "interval": "1m",
            "input_series": [
                *all_ready,
                _series(executions, {**HERE, "step": "left", "outcome": failed}, "0+1x20"),
                # one failure, and many successes: not failing repeatedly
                _series(executions, {**HERE, "step": "right", "outcome": failed}, "0 1x20"),
                _series(executions, {**HERE, "step": "load", "outcome": ok}, "0+5x20"),
                # another release's step failing: not this release's alert
                _series(executions, {**ELSEWHERE, "step": "join", "outcome": failed}, "0+1x20"),
            ],
            "alert_rule_test": [
                at(2, "Jup2KubStepFailing"),
                at(3, "Jup2KubStepFailing", expect.alert("Jup2KubStepFailing", "left", "3")),
                at(10, "Jup2KubStepFailing", expect.alert("Jup2KubStepFailing", "left", "10")),
                at(10, "Jup2KubDeadLetter"),
            ],
        },
        {
            "name": "lag growing for 10 minutes fires, lag constant 0 never, recovery resolves",
            "interval": "1m",
            "input_series": [
                *all_ready,
                # 20 more messages waiting each minute: over 100 from minute 6, then caught up
                _series(CONSUMER_LAG.name, {**HERE, "step": "load"}, "0+20x20 0x10"),
                _series(CONSUMER_LAG_SECONDS.name, {**HERE, "step": "load"}, "0+30x20 0x10"),
                _series(CONSUMER_LAG.name, {**HERE, "step": "join"}, "0x30"),
                _series(CONSUMER_LAG_SECONDS.name, {**HERE, "step": "join"}, "0x30"),
                _series(CONSUMER_LAG.name, {**ELSEWHERE, "step": "join"}, "1000x30"),
            ],
            "alert_rule_test": [
                at(6 + lag_for - 1, "Jup2KubConsumerLagMessages"),  # pending, not firing
                at(
                    6 + lag_for,
                    "Jup2KubConsumerLagMessages",
                    expect.alert("Jup2KubConsumerLagMessages", "load", str(20 * (6 + lag_for))),
                ),
                at(22, "Jup2KubConsumerLagMessages"),  # back to 0: resolved
                # 30 s older each minute: over 600 s from minute 21, then caught up first
                at(20, "Jup2KubConsumerLagSeconds"),
            ],
        },
        {
            "name": "the age of the oldest message over 600 s for 10 minutes fires",
            "interval": "1m",
            "input_series": [
                *all_ready,
                _series(CONSUMER_LAG_SECONDS.name, {**HERE, "step": "join"}, "0+60x30"),
                _series(CONSUMER_LAG_SECONDS.name, {**HERE, "step": "left"}, "599x30"),
            ],
            "alert_rule_test": [
                at(11 + lag_for - 1, "Jup2KubConsumerLagSeconds"),
                at(
                    11 + lag_for,
                    "Jup2KubConsumerLagSeconds",
                    # 21 minutes: the description says it as a duration
                    expect.alert("Jup2KubConsumerLagSeconds", "join", "21m 0s"),
                ),
            ],
        },
        {
            "name": "one dead letter fires at once, and resolves once out of the window",
            "interval": "1m",
            "input_series": [
                *all_ready,
                _series(dead_letters, {**HERE, "step": "right"}, "0 0 0 1x20"),
                _series(dead_letters, {**HERE, "step": "left"}, "0x20"),
            ],
            "alert_rule_test": [
                at(2, "Jup2KubDeadLetter"),
                at(3, "Jup2KubDeadLetter", expect.alert("Jup2KubDeadLetter", "right", "1")),
                at(15, "Jup2KubDeadLetter"),
            ],
        },
        {
            "name": "a step unready, or exporting nothing, for 5 minutes fires",
            "interval": "1m",
            "input_series": [
                _series(READY.name, {**HERE, "step": "load"}, "1x10"),
                _series(READY.name, {**HERE, "step": "left"}, "1x10"),
                _series(READY.name, {**HERE, "step": "join"}, "0x10"),
                # "right" exports nothing here (only in another release)
                _series(READY.name, {**ELSEWHERE, "step": "right"}, "1x10"),
            ],
            "alert_rule_test": [
                at(ready_for - 1, "Jup2KubStepNotReady"),
                at(
                    ready_for,
                    "Jup2KubStepNotReady",
                    expect.alert("Jup2KubStepNotReady", "join"),
                    expect.alert("Jup2KubStepNotReady", "right"),
                ),
            ],
        },
        {
            "name": "a healthy pipeline: no alert",
            "interval": "1m",
            "input_series": [
                *all_ready,
                *(_series(executions, {**HERE, "step": s, "outcome": ok}, "0+3x40") for s in STEPS),
                *(_series(CONSUMER_LAG.name, {**HERE, "step": s}, "0 5 0x38") for s in STEPS),
            ],
            "alert_rule_test": [at(m, a) for m in (5, 20, 40) for a in by_alert],
        },
    ]
    return {"rule_files": [str(rule_file)], "evaluation_interval": "1m", "tests": tests}


# --------------------------------------------------------------------------- check rules


@pytest.mark.parametrize("values_file", VALUES_FILES)
def test_promtool_checks_the_rendered_rules(
    charts: dict[str, Path],  # noqa: F811
    values_file: str,
    tmp_path: Path,
) -> None:
    files = [] if values_file == "values.yaml" else [values_file]
    rule = _rule_object(charts["diamond"], files)
    path = _write_rules(tmp_path, rule)
    proc = promtool("check", "rules", *STRICT, path)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    count = sum(len(g["rules"]) for g in rule["spec"]["groups"])
    assert count == 8  # failing, 2 lag, dead letter, not ready per step (4)
    assert f"SUCCESS: {count} rules found" in proc.stdout


def test_promtool_checks_the_rules_with_every_setting(
    charts: dict[str, Path],  # noqa: F811
    tmp_path: Path,
) -> None:
    rule = _rule_object(
        charts["linear"],
        sets=[
            "monitoring.prometheusRule.alertLabels.team=data",
            "monitoring.prometheusRule.alerts.consumerLag.messages=7",
            "monitoring.prometheusRule.alerts.consumerLag.seconds=45",
            "monitoring.prometheusRule.alerts.consumerLag.for=1h30m",
            "monitoring.prometheusRule.alerts.stepFailing.failures=1",
            "monitoring.prometheusRule.alerts.stepFailing.window=1h",
            "monitoring.prometheusRule.alerts.deadLetter.window=30s",
            "monitoring.prometheusRule.alerts.noReadyReplica.for=90s",
        ],
    )
    proc = promtool("check", "rules", *STRICT, _write_rules(tmp_path, rule))
    assert proc.returncode == 0, proc.stdout + proc.stderr


def test_promtool_refuses_a_broken_rule(tmp_path: Path) -> None:
    """The check can fail: the chart's expression with one bracket missing; two rules alike."""
    broken = {
        "groups": [
            {
                "name": "g",
                "rules": [
                    {
                        "alert": "Jup2KubStepFailing",
                        "expr": f'sum by (step) (increase({EXECUTIONS.name}{{outcome="failed"}}'
                        "[15m]) >= 3",
                        "for": "0m",
                    }
                ],
            }
        ]
    }
    path = tmp_path / "broken.yaml"
    path.write_text(yaml.safe_dump(broken))
    proc = promtool("check", "rules", *STRICT, path)
    assert proc.returncode != 0
    assert "parse error" in proc.stdout + proc.stderr, proc.stdout + proc.stderr
    same = {"alert": "Jup2KubStepNotReady", "expr": "absent(j2k_ready)", "labels": {"a": "b"}}
    path.write_text(yaml.safe_dump({"groups": [{"name": "g", "rules": [same, same]}]}))
    proc = promtool("check", "rules", *STRICT, path)
    assert proc.returncode != 0
    assert "duplicate rule" in proc.stdout + proc.stderr, proc.stdout + proc.stderr


# --------------------------------------------------------------------------- test rules


def test_each_alert_fires_when_it_should_and_not_otherwise(
    charts: dict[str, Path],  # noqa: F811
    tmp_path: Path,
) -> None:
    rule = _rule_object(charts["diamond"])
    rules = [r for g in rule["spec"]["groups"] for r in g["rules"]]
    rule_file = _write_rules(tmp_path, rule)
    tests = tmp_path / "tests.yaml"
    tests.write_text(yaml.safe_dump(_unit_tests(rules, rule_file), sort_keys=False))
    proc = promtool("test", "rules", tests)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "SUCCESS" in proc.stdout


def test_the_unit_tests_can_fail(charts: dict[str, Path], tmp_path: Path) -> None:  # noqa: F811
    """promtool reports an alert that was expected and did not fire, and one that fired
    unexpected: the scenarios above are checked, not merely run."""
    rule = _rule_object(charts["diamond"])
    rules = [r for g in rule["spec"]["groups"] for r in g["rules"]]
    unit = _unit_tests(rules, _write_rules(tmp_path, rule))
    first = unit["tests"][0]["alert_rule_test"]
    first[0]["exp_alerts"] = first[1]["exp_alerts"]  # at 2 minutes: expected, not firing
    first[1]["exp_alerts"] = []  # at 3 minutes: firing, not expected
    tests = tmp_path / "tests.yaml"
    tests.write_text(yaml.safe_dump(unit, sort_keys=False))
    proc = promtool("test", "rules", tests)
    assert proc.returncode != 0
    report = " ".join(proc.stderr.split())
    assert "alertname: Jup2KubStepFailing, time: 2m, exp:[ 0:" in report, report
    assert "got:[]" in report and "time: 3m, exp:[], got:[ 0:" in report, report


# --------------------------------------------------------------------------- dashboard


def test_every_dashboard_query_parses_with_the_real_parser(
    charts: dict[str, Path],  # noqa: F811
) -> None:
    """Prometheus's own PromQL parser (``promtool promql format``) on each query of the
    dashboard, Grafana's interval variables replaced as Grafana does before sending them."""
    objects = render(charts["diamond"], sets=["monitoring.grafanaDashboard.enabled=true"])
    queries = _dashboard_queries(_dashboard(objects))
    assert len(queries) > 10
    for query in queries:
        expr = promql.GRAFANA_VARIABLES.sub("5m", query)
        proc = promtool("--experimental", "promql", "format", expr)
        assert proc.returncode == 0, f"{expr}:\n{proc.stdout}{proc.stderr}"
    broken = promtool("--experimental", "promql", "format", "sum by (step (j2k_ready)")
    assert broken.returncode != 0 and "parse error" in broken.stderr + broken.stdout
