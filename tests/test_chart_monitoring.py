"""Monitoring objects of the chart (issue 30): ``monitoring.serviceMonitor``,
``monitoring.prometheusRule`` and ``monitoring.grafanaDashboard``, all off by default.

The Prometheus Operator's CRDs are not on a plain cluster, so the rendered ServiceMonitor and
PrometheusRule are validated against its published CRD schemas (v0.85.0, from its Go module:
tests/setup.d/28-prometheus-operator-crd.sh), strictly. Every metric the alert rules and the
dashboard query must be one the runtime exports (``jup2kub_runtime.contract.metrics``). The
queries also pass the PromQL sanity check of ``tests.support.promql`` (brackets, known
functions, matchers, ranges, counters under rate/increase, quantiles over buckets by ``le``),
which is not a full PromQL parser: the real one, ``promtool check rules`` and
``promtool test rules`` on the rendered rules, is in tests/test_prometheus_rules.py.
"""

from __future__ import annotations

import json
import shutil
from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any

import jsonschema
import pytest

from jup2kub.chart.schema import SKELETON
from jup2kub_runtime.contract.metrics import FAMILIES
from tests.support import promql
from tests.support.crds import validate
from tests.test_chart import (
    REPO,
    VALUES_FILES,
    by_kind,
    charts,  # noqa: F401  (the fixture)
    render,
    run_helm,
    validate_strict,
)

ALL_ON = [
    "monitoring.serviceMonitor.enabled=true",
    "monitoring.prometheusRule.enabled=true",
    "monitoring.grafanaDashboard.enabled=true",
]
SM_CRD = "J2K_SERVICEMONITOR_CRD"
PR_CRD = "J2K_PROMETHEUSRULE_CRD"
ALERTS = {
    "Jup2KubStepFailing",
    "Jup2KubConsumerLagMessages",
    "Jup2KubConsumerLagSeconds",
    "Jup2KubDeadLetter",
    "Jup2KubStepNotReady",
}
HISTOGRAM_SERIES = ("_bucket", "_sum", "_count")


def _one(objects: Sequence[Mapping[str, Any]], kind: str) -> dict[str, Any]:
    [obj] = by_kind(objects, kind).values()
    return obj


def _rules(objects: Sequence[Mapping[str, Any]]) -> list[dict[str, Any]]:
    rule = _one(objects, "PrometheusRule")
    return [r for group in rule["spec"]["groups"] for r in group["rules"]]


def _dashboard(objects: Sequence[Mapping[str, Any]]) -> dict[str, Any]:
    maps = [
        o
        for o in by_kind(objects, "ConfigMap").values()
        if o["metadata"]["labels"].get("grafana_dashboard") == "1"
    ]
    assert len(maps) == 1
    [text] = maps[0]["data"].values()
    dashboard: dict[str, Any] = json.loads(text)
    return dashboard


def _panels(dashboard: Mapping[str, Any]) -> Iterator[dict[str, Any]]:
    for panel in dashboard["panels"]:
        yield panel
        yield from panel.get("panels", [])


def _dashboard_queries(dashboard: Mapping[str, Any]) -> list[str]:
    exprs = [t["expr"] for p in _panels(dashboard) for t in p.get("targets", [])]
    for variable in dashboard["templating"]["list"]:
        query = variable.get("query")
        if isinstance(query, dict):  # label_values(SELECTOR, label): its selector is PromQL
            selector = query["query"].removeprefix("label_values(").rsplit(",", 1)[0]
            exprs.append(selector)
    return exprs


def _exported(name: str) -> bool:
    families = {f.name: f.kind for f in FAMILIES}
    if families.get(name) in {"counter", "gauge"}:
        return True
    stem = next((name.removesuffix(s) for s in HISTOGRAM_SERIES if name.endswith(s)), "")
    return families.get(stem) == "histogram"


# --------------------------------------------------------------------------- defaults


@pytest.mark.parametrize("values_file", VALUES_FILES)
def test_off_by_default(charts: dict[str, Path], values_file: str) -> None:  # noqa: F811
    files = [] if values_file == "values.yaml" else [values_file]
    objects = render(charts["diamond"], files)
    kinds = {o["kind"] for o in objects}
    assert not kinds & {"ServiceMonitor", "PrometheusRule"}
    assert not [
        o for o in objects if o["metadata"].get("labels", {}).get("grafana_dashboard") is not None
    ]
    assert not [
        o
        for o in objects
        if o["metadata"].get("labels", {}).get("app.kubernetes.io/component") == "metrics"
    ]


def test_lint_strict_with_everything_on(charts: dict[str, Path]) -> None:  # noqa: F811
    for values_file in VALUES_FILES:
        args = ["lint", "--strict", str(charts["diamond"])]
        if values_file != "values.yaml":
            args += ["-f", str(charts["diamond"] / values_file)]
        args += ["--set", "storage.efs.fileSystemId=fs-0a1b2c3d"]
        for setting in ALL_ON:
            args += ["--set", setting]
        proc = run_helm(*args, ok=False)
        assert proc.returncode == 0, proc.stdout + proc.stderr


# --------------------------------------------------------------------------- ServiceMonitor


def test_service_monitor_scrapes_every_step_service(charts: dict[str, Path]) -> None:  # noqa: F811
    objects = render(charts["diamond"], sets=ALL_ON)
    monitor = _one(objects, "ServiceMonitor")
    validate(SM_CRD, "v1", monitor)
    assert monitor["apiVersion"] == "monitoring.coreos.com/v1"
    assert "namespace" not in monitor["metadata"]
    spec = monitor["spec"]
    assert spec["namespaceSelector"] == {"matchNames": ["pipelines"]}
    selector = spec["selector"]["matchLabels"]
    services = by_kind(objects, "Service")
    selected = {
        n for n, s in services.items() if selector.items() <= s["metadata"]["labels"].items()
    }
    steps = {
        n for n, s in services.items() if s["metadata"]["labels"].get("jup2kub.io/role") == "step"
    }
    assert selected == steps and len(steps) == 4  # every step, no Kafka Service
    [endpoint] = spec["endpoints"]
    assert endpoint["path"] == "/metrics" and endpoint["interval"] == "30s"
    assert "scrapeTimeout" not in endpoint
    for name in steps:
        ports = {p["name"]: p for p in services[name]["spec"]["ports"]}
        assert endpoint["port"] in ports
        # the port reaches the container port the runtime serves /metrics on
        deployment = by_kind(objects, "Deployment")[name]
        container_ports = {
            p["name"]: p["containerPort"]
            for p in deployment["spec"]["template"]["spec"]["containers"][0]["ports"]
        }
        target = ports[endpoint["port"]]["targetPort"]
        env = {
            e["name"]: e.get("value")
            for e in deployment["spec"]["template"]["spec"]["containers"][0]["env"]
        }
        assert str(container_ports[target]) == env["J2K_PORT"]


def test_service_monitor_settings(charts: dict[str, Path]) -> None:  # noqa: F811
    objects = render(
        charts["diamond"],
        sets=[
            "monitoring.serviceMonitor.enabled=true",
            "monitoring.serviceMonitor.namespace=monitoring",
            "monitoring.serviceMonitor.labels.release=kube-prometheus-stack",
            "monitoring.serviceMonitor.interval=15s",
            "monitoring.serviceMonitor.scrapeTimeout=10s",
            "monitoring.serviceMonitor.honorLabels=true",
            "monitoring.serviceMonitor.jobLabel=app.kubernetes.io/component",
        ],
        extra=[
            "--set-json",
            'monitoring.serviceMonitor.metricRelabelings=[{"action":"drop","regex":"j2k_busy",'
            '"sourceLabels":["__name__"]}]',
            "--set-json",
            'monitoring.serviceMonitor.relabelings=[{"targetLabel":"team","replacement":"data"}]',
        ],
    )
    monitor = _one(objects, "ServiceMonitor")
    validate(SM_CRD, "v1", monitor)
    assert monitor["metadata"]["namespace"] == "monitoring"
    assert monitor["metadata"]["labels"]["release"] == "kube-prometheus-stack"
    # in another namespace, it still selects the release's
    assert monitor["spec"]["namespaceSelector"] == {"matchNames": ["pipelines"]}
    assert monitor["spec"]["jobLabel"] == "app.kubernetes.io/component"
    [endpoint] = monitor["spec"]["endpoints"]
    assert (endpoint["interval"], endpoint["scrapeTimeout"]) == ("15s", "10s")
    assert endpoint["honorLabels"] is True
    assert endpoint["metricRelabelings"][0]["action"] == "drop"
    assert endpoint["relabelings"][0]["targetLabel"] == "team"


def test_the_crd_validation_catches_a_wrong_field() -> None:
    good = {
        "apiVersion": "monitoring.coreos.com/v1",
        "kind": "ServiceMonitor",
        "metadata": {"name": "x"},
        "spec": {"selector": {}, "endpoints": [{"port": "http", "interval": "30s"}]},
    }
    validate(SM_CRD, "v1", good)
    for bad_endpoint in ({"port": "http", "scrapeInterval": "30s"}, {"interval": "30 s"}):
        bad = {**good, "spec": {"selector": {}, "endpoints": [bad_endpoint]}}
        with pytest.raises(jsonschema.ValidationError):
            validate(SM_CRD, "v1", bad)
    rule: dict[str, Any] = {
        "apiVersion": "monitoring.coreos.com/v1",
        "kind": "PrometheusRule",
        "metadata": {"name": "x"},
        "spec": {"groups": [{"name": "g", "rules": [{"alert": "A", "expr": "1", "for": "5m"}]}]},
    }
    validate(PR_CRD, "v1", rule)
    rule["spec"]["groups"][0]["rules"][0]["for"] = "5 minutes"
    with pytest.raises(jsonschema.ValidationError):
        validate(PR_CRD, "v1", rule)


# --------------------------------------------------------------------------- PrometheusRule


def test_prometheus_rule_alerts(charts: dict[str, Path]) -> None:  # noqa: F811
    objects = render(charts["diamond"], sets=ALL_ON)
    rule = _one(objects, "PrometheusRule")
    validate(PR_CRD, "v1", rule)
    rules = _rules(objects)
    assert {r["alert"] for r in rules} == ALERTS
    for r in rules:
        assert r["labels"]["severity"] in {"critical", "warning"}
        for annotation in ("summary", "description"):
            text = r["annotations"][annotation]
            assert "{{ $labels.pipeline }}" in text and "{{ $labels.step }}" in text, r["alert"]
        # every alert keeps the labels its annotations name, and reads this release only
        assert "by (namespace, pipeline, step)" in r["expr"], r["expr"]
        assert 'namespace="pipelines", pipeline="diamond"' in r["expr"]
    # a step with no ready replica: one rule per step, which also fires when none reports
    not_ready = [r for r in rules if r["alert"] == "Jup2KubStepNotReady"]
    assert sorted(r["expr"].split('step="')[1].split('"')[0] for r in not_ready) == [
        "join",
        "left",
        "load",
        "right",
    ]
    assert all("absent(j2k_ready{" in r["expr"] for r in not_ready)
    by_alert = {r["alert"]: r for r in rules}
    assert 'outcome="failed"' in by_alert["Jup2KubStepFailing"]["expr"]
    assert by_alert["Jup2KubStepFailing"]["expr"].endswith(">= 3")
    assert by_alert["Jup2KubConsumerLagMessages"]["for"] == "10m"
    assert by_alert["Jup2KubConsumerLagSeconds"]["expr"].endswith("> 600")
    assert "diamond.dead-letter" in by_alert["Jup2KubDeadLetter"]["annotations"]["description"]


def test_prometheus_rule_settings(charts: dict[str, Path]) -> None:  # noqa: F811
    objects = render(
        charts["diamond"],
        sets=[
            "monitoring.prometheusRule.enabled=true",
            "monitoring.prometheusRule.namespace=monitoring",
            "monitoring.prometheusRule.labels.release=kube-prometheus-stack",
            "monitoring.prometheusRule.alertLabels.team=data",
            "monitoring.prometheusRule.alerts.consumerLag.messages=7",
            "monitoring.prometheusRule.alerts.consumerLag.seconds=45",
            "monitoring.prometheusRule.alerts.consumerLag.for=3m",
            "monitoring.prometheusRule.alerts.consumerLag.severity=info",
            "monitoring.prometheusRule.alerts.stepFailing.failures=1",
            "monitoring.prometheusRule.alerts.stepFailing.window=1h",
            "monitoring.prometheusRule.alerts.deadLetter.enabled=false",
            # scaled to zero on purpose: no alert for having no ready replica
            "steps.right.replicas=0",
        ],
    )
    rule = _one(objects, "PrometheusRule")
    validate(PR_CRD, "v1", rule)
    assert rule["metadata"]["namespace"] == "monitoring"
    assert rule["metadata"]["labels"]["release"] == "kube-prometheus-stack"
    rules = _rules(objects)
    by_alert = {r["alert"]: r for r in rules}
    assert "Jup2KubDeadLetter" not in by_alert
    lag = by_alert["Jup2KubConsumerLagMessages"]
    assert lag["expr"].endswith("> 7") and lag["for"] == "3m"
    assert lag["labels"] == {"severity": "info", "team": "data"}
    assert by_alert["Jup2KubConsumerLagSeconds"]["expr"].endswith("> 45")
    failing = by_alert["Jup2KubStepFailing"]["expr"]
    assert "[1h]" in failing and failing.endswith(">= 1")
    not_ready = [r["expr"] for r in rules if r["alert"] == "Jup2KubStepNotReady"]
    assert len(not_ready) == 3 and not [e for e in not_ready if 'step="right"' in e]


def test_alerts_of_autoscaled_steps_follow_their_minimum(charts: dict[str, Path]) -> None:  # noqa: F811
    objects = render(
        charts["linear"],
        sets=[
            "monitoring.prometheusRule.enabled=true",
            # replicas 0, but one step autoscaled: its minimum (at least 1) counts
            "stepDefaults.replicas=0",
            "steps.report.autoscaling.enabled=true",
            "steps.report.autoscaling.mode=kafkaLag",
        ],
    )
    not_ready = [r["expr"] for r in _rules(objects) if r["alert"] == "Jup2KubStepNotReady"]
    assert len(not_ready) == 1 and 'step="report"' in not_ready[0]


# --------------------------------------------------------------------------- metric names


def test_every_queried_metric_is_exported(charts: dict[str, Path]) -> None:  # noqa: F811
    objects = render(charts["diamond"], sets=ALL_ON)
    rule_exprs = [r["expr"] for r in _rules(objects)]
    dashboard_exprs = _dashboard_queries(_dashboard(objects))
    used = {name for e in rule_exprs + dashboard_exprs for name in promql.metric_names(e)}
    unknown = sorted(n for n in used if not _exported(n))
    assert not unknown, f"not exported by the runtime: {unknown}"
    # the dashboard reads every family but the counters it shows through another one
    read = {
        next((n.removesuffix(s) for s in HISTOGRAM_SERIES if n.endswith(s)), n)
        for e in dashboard_exprs
        for n in promql.metric_names(e)
    }
    assert read == {f.name for f in FAMILIES}


def test_the_name_check_catches_an_unknown_name() -> None:
    assert _exported("j2k_step_execution_seconds_bucket")
    assert _exported("j2k_step_executions_total")
    assert not _exported("j2k_step_executions_total_bucket")
    assert not _exported("j2k_consumer_lag_bucket")  # a gauge has no buckets
    assert not _exported("j2k_step_executions")  # a counter's samples end in _total
    assert not _exported("j2k_consumer_lag_messages")


def test_every_query_passes_the_promql_sanity_check(charts: dict[str, Path]) -> None:  # noqa: F811
    objects = render(charts["diamond"], sets=ALL_ON)
    exprs = [r["expr"] for r in _rules(objects)] + _dashboard_queries(_dashboard(objects))
    assert len(exprs) > 15
    assert promql.all_problems(exprs) == []


@pytest.mark.parametrize(
    "expr",
    [
        "sum by (step (j2k_ready)",
        "sum(rat(j2k_step_executions_total[5m]))",
        'j2k_ready{step=load"}',
        "rate(j2k_consumer_lag[5m])",
        "rate(j2k_step_executions_total)",
        "increase(j2k_step_executions_total[5 minutes])",
        "histogram_quantile(95, sum by (le) (rate(j2k_step_execution_seconds_bucket[5m])))",
        "histogram_quantile(0.9, sum by (step) (rate(j2k_step_execution_seconds_bucket[5m])))",
        "sum bye (step) (j2k_ready)",
    ],
)
def test_the_promql_check_catches_mistakes(expr: str) -> None:
    assert promql.problems(expr)


# --------------------------------------------------------------------------- dashboard


def test_dashboard(charts: dict[str, Path]) -> None:  # noqa: F811
    objects = render(charts["diamond"], sets=ALL_ON)
    validate_strict([o for o in objects if o["kind"] == "ConfigMap"])
    dashboard = _dashboard(objects)
    text = json.dumps(dashboard)
    assert "__J2K_" not in text
    assert dashboard["title"] == "Jup2Kub pipeline diamond (pipelines/rel)"
    assert len(dashboard["uid"]) <= 40
    variables = {v["name"]: v for v in dashboard["templating"]["list"]}
    assert variables["namespace"]["query"] == "pipelines"
    assert variables["pipeline"]["query"] == "diamond"
    assert variables["step"]["includeAll"] is True
    panels = {p["title"]: p for p in _panels(dashboard) if p["type"] != "row"}
    exprs = {title: " ".join(t["expr"] for t in p["targets"]) for title, p in panels.items()}

    def panel(*words: str) -> str:
        [found] = [t for t in exprs if all(w in t.lower() for w in words)]
        return exprs[found]

    assert 'outcome="succeeded"' in panel("runs per second")
    quantiles = panel("execution time")
    for q in ("0.5", "0.95", "0.99"):
        assert f"histogram_quantile({q}, " in quantiles
    assert "j2k_consumer_lag{" in panel("lag in messages")
    assert "j2k_consumer_lag_seconds{" in panel("lag in seconds")
    assert 'outcome=~"failed|retried|dead_lettered"' in panel("failed")
    assert "j2k_messages_dead_lettered_total" in panel("messages dead-lettered")
    assert "j2k_ready{" in panel("ready replicas")
    for p in panels.values():
        assert p["datasource"]["uid"] == "${datasource}"
        assert p["description"]
    # every panel has a place of its own on the grid
    places = [(p["gridPos"]["x"], p["gridPos"]["y"]) for p in _panels(dashboard)]
    assert len(places) == len(set(places))


def test_dashboard_settings_and_uid_per_release(charts: dict[str, Path]) -> None:  # noqa: F811
    sets = [
        "monitoring.grafanaDashboard.enabled=true",
        "monitoring.grafanaDashboard.namespace=grafana",
        "monitoring.grafanaDashboard.labels.team=data",
        "monitoring.grafanaDashboard.annotations.grafana_folder=Pipelines",
    ]
    here = render(charts["diamond"], sets=sets)
    [configmap] = [o for o in here if o["metadata"].get("namespace") == "grafana"]
    assert configmap["metadata"]["labels"]["grafana_dashboard"] == "1"
    assert configmap["metadata"]["labels"]["team"] == "data"
    assert configmap["metadata"]["annotations"] == {"grafana_folder": "Pipelines"}
    assert list(configmap["data"]) == ["diamond.json"]
    elsewhere = render(charts["diamond"], sets=sets, extra=["--namespace", "other"])
    assert _dashboard(here)["uid"] != _dashboard(elsewhere)["uid"]


def test_the_dashboard_file_is_kept_readable(charts: dict[str, Path]) -> None:  # noqa: F811
    path = Path(str(SKELETON)) / "files" / "grafana" / "dashboard.json"
    text = path.read_text()
    assert text == json.dumps(json.loads(text), indent=2) + "\n"
    assert (charts["diamond"] / "files" / "grafana" / "dashboard.json").read_text() == text


# --------------------------------------------------------------------------- values


@pytest.mark.parametrize(
    ("setting", "complaint"),
    [
        ("monitoring.serviceMonitor.interval=30 seconds", "interval"),
        ("monitoring.serviceMonitor.scrapeInterval=30s", "scrapeInterval"),
        ("monitoring.prometheusRule.alerts.consumerLag.for=ten minutes", "for"),
        ("monitoring.prometheusRule.alerts.stepFailing.failures=0", "failures"),
        ("monitoring.prometheusRule.alerts.noReadyReplica.severity=", "severity"),
        ("monitoring.grafanaDashboard.namespace=Not_A_Namespace", "namespace"),
    ],
)
def test_the_schema_refuses_bad_settings(
    charts: dict[str, Path],  # noqa: F811
    setting: str,
    complaint: str,
) -> None:
    proc = run_helm("template", "rel", str(charts["diamond"]), "--set", setting, ok=False)
    assert proc.returncode != 0
    assert complaint in proc.stderr


def test_documented(charts: dict[str, Path]) -> None:  # noqa: F811
    chart_readme = (charts["diamond"] / "README.md").read_text()
    project_readme = (REPO / "README.md").read_text()
    for key in (
        "monitoring.serviceMonitor.enabled",
        "monitoring.serviceMonitor.interval",
        "monitoring.serviceMonitor.scrapeTimeout",
        "monitoring.serviceMonitor.labels",
        "monitoring.prometheusRule.enabled",
        "monitoring.prometheusRule.alerts.consumerLag.messages",
        "monitoring.prometheusRule.alerts.consumerLag.seconds",
        "monitoring.prometheusRule.alerts.consumerLag.for",
        "monitoring.grafanaDashboard.enabled",
    ):
        assert f"| `{key}` |" in chart_readme, key
    for alert in ALERTS:
        assert alert in chart_readme, alert
    for key in (
        "monitoring.serviceMonitor",
        "monitoring.prometheusRule",
        "monitoring.grafanaDashboard",
    ):
        assert key in project_readme, key
    values = (charts["diamond"] / "values.yaml").read_text()
    assert "monitoring:\n  serviceMonitor:\n    # -- " in values


def test_notes_say_when_the_network_policy_keeps_prometheus_out(
    charts: dict[str, Path],  # noqa: F811
    tmp_path: Path,
) -> None:
    copy_dir = tmp_path / "chart"
    shutil.copytree(charts["diamond"], copy_dir)
    shutil.move(copy_dir / "templates" / "NOTES.txt", copy_dir / "files" / "NOTES.txt")
    (copy_dir / "templates" / "notes-under-test.yaml").write_text(
        "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: notes\ndata:\n  notes: |\n"
        '    {{- tpl (.Files.Get "files/NOTES.txt") . | nindent 4 }}\n'
    )

    def notes(*sets: str) -> str:
        text: str = by_kind(render(copy_dir, sets=sets), "ConfigMap")["notes"]["data"]["notes"]
        return " ".join(text.split())

    warning = "the NetworkPolicy keeps Prometheus from the steps' /metrics"
    assert warning not in notes()
    assert warning in notes("monitoring.serviceMonitor.enabled=true")
    assert warning not in notes(
        "monitoring.serviceMonitor.enabled=true", "networkPolicy.prometheus.enabled=true"
    )
    assert warning not in notes(
        "monitoring.serviceMonitor.enabled=true", "networkPolicy.enabled=false"
    )


def test_every_alert_off_leaves_a_valid_empty_group(charts: dict[str, Path]) -> None:  # noqa: F811
    alerts = ("stepFailing", "consumerLag", "deadLetter", "noReadyReplica")
    objects = render(
        charts["single"],
        sets=[
            "monitoring.prometheusRule.enabled=true",
            *(f"monitoring.prometheusRule.alerts.{a}.enabled=false" for a in alerts),
        ],
    )
    validate(PR_CRD, "v1", _one(objects, "PrometheusRule"))
    assert _rules(objects) == []
