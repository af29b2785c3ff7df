"""A real Prometheus (built from its Go module by tests/setup.d/29-prometheus.sh, cached in
$JUP2KUB_CACHE/bin) watching a release on the cluster: it runs on the host (which reaches pod
IPs on the harness's cluster), discovers the step pods through the API server
(``kubernetes_sd_configs``, role pod, the chart's step labels and its ``http`` port, as the
chart's ServiceMonitor selects them), and evaluates the chart's alert rules (the rendered
PrometheusRule's groups, first through ``promtool check rules``). After a few runs its HTTP API
counts each step's executions as the runs submitted and reads the consumer lag back at 0; a
step made to fail (a cell that raises when asked to) fires Jup2KubStepFailing.

A generated two-step notebook: ``prepare`` doubles ``seed``, ``check`` raises when ``fail`` is
set. No retries, so a failing run fails at once. The Prometheus Operator is not on the cluster:
the PrometheusRule is rendered with ``helm template`` and only its groups are handed over.
"""

from __future__ import annotations

import os
import shlex
import shutil
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import nbformat
import pytest
import yaml
from nbformat import v4

from e2e.support import E2E, Cluster, docker_ok, helm, wait_final, with_cluster_dns
from jup2kub_runtime.contract.metrics import CONSUMER_LAG, CONSUMER_LAG_SECONDS, EXECUTIONS
from tests.support.prometheus_server import Prometheus, promtool, rule_groups

RELEASE = "prom"
STEPS = ("prepare", "check")
GOOD_RUNS = 3
#: the chart's default threshold of Jup2KubStepFailing (failures within its window)
FAILURES = 3


def _notebook(path: Path) -> Path:
    nb = v4.new_notebook()
    nb.metadata = {
        "kernelspec": {"name": "python3", "display_name": "Python 3", "language": "python"}
    }
    params = v4.new_code_cell("seed = 1\nfail = 0")
    params.metadata["tags"] = ["parameters"]
    nb.cells = [
        params,
        v4.new_code_cell("#| step: prepare\ndoubled = seed * 2"),
        v4.new_code_cell(
            "#| step: check\nif fail:\n    raise ValueError('asked to fail')\n"
            "result = doubled + 1\nprint(result)"
        ),
    ]
    nbformat.write(nb, path)
    return path


@pytest.fixture(scope="module")
def release(cluster: Cluster, tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, Any]]:
    if not shutil.which("jup2kub") or not docker_ok():
        pytest.skip("needs jup2kub and a Docker engine (bash e2e/run.sh)")
    if not cluster.own and not os.environ.get("J2K_E2E_POD_NETWORK"):
        pytest.skip(
            "Prometheus runs on the host and scrapes pod IPs: the harness's cluster, or set "
            "J2K_E2E_POD_NETWORK=1 where the host reaches them"
        )
    work = tmp_path_factory.mktemp("prometheus")
    nb = _notebook(work / "watched.ipynb")
    out = work / "out"
    base = os.environ.get("J2K_BASE_IMAGE", "jup2kub-test-base:bookworm-py311-1")
    build = ["jup2kub", "build", str(nb), "-o", str(out), "--kafka-nodes", "1"]
    subprocess.run([*build, "--replicas", "1", "--base-image", base], check=True, timeout=3600)
    values = yaml.safe_load((out / "values.yaml").read_text())
    refs = [f"{s['image']['repository']}:{s['image']['tag']}" for s in values["steps"].values()]
    if cluster.own:
        subprocess.run([str(E2E / "cluster"), "load-image", *refs], check=True, timeout=1800)
    elif os.environ.get("J2K_E2E_LOAD_IMAGES"):
        subprocess.run(
            [*shlex.split(os.environ["J2K_E2E_LOAD_IMAGES"]), *refs], check=True, timeout=1800
        )
    ns = f"j2k-e2e-prom-{os.getpid()}"
    cluster.kubectl("create", "namespace", ns)
    cluster.state_claim(ns)
    e2e_values = work / "e2e-values.yaml"
    e2e_values.write_text(
        yaml.safe_dump(
            {
                "storage": {"mode": "existingClaim", "existingClaim": "state"},
                "stepDefaults": {"retry": {"maxRetries": 0}},
                # Prometheus is a host process here, not a pod the policy's
                # networkPolicy.prometheus selector could let in
                "networkPolicy": {"enabled": False},
            }
        )
    )
    files = ["-f", str(out / "values-dev.yaml"), "-f", str(e2e_values)]
    helm(cluster, "install", RELEASE, str(out), "-n", ns, *files, "--wait", "--timeout", "15m")
    for d in cluster.kubectl("-n", ns, "get", "deployments", "-o", "name").stdout.split():
        cluster.kubectl("-n", ns, "rollout", "status", d, "--timeout=10m", timeout=700)
    # the rules as the Operator would load them: the PrometheusRule of the same release
    rendered = helm(
        cluster,
        "template",
        RELEASE,
        str(out),
        "-n",
        ns,
        *files,
        "--set",
        "monitoring.prometheusRule.enabled=true",
    ).stdout
    [rule] = [d for d in yaml.safe_load_all(rendered) if d and d["kind"] == "PrometheusRule"]
    rules = work / "rules.yaml"
    rules.write_text(yaml.safe_dump(rule_groups(rule), sort_keys=False))
    yield {
        "namespace": ns,
        "broker": cluster.kafka_bootstrap(ns),
        "notebook": str(nb),
        "rules": rules,
        "rule": rule,
        "work": work,
    }
    helm(cluster, "uninstall", RELEASE, "-n", ns, "--wait", check=False)
    cluster.kubectl("delete", "namespace", ns, "--wait=false", check=False)


def _kubeconfig(cluster: Cluster) -> str:
    if cluster.kubeconfig:
        return cluster.kubeconfig
    return os.environ.get("KUBECONFIG", str(Path.home() / ".kube" / "config"))


def scrape_config(kubeconfig: str, namespace: str) -> dict[str, Any]:
    """The step pods of RELEASE in ``namespace``, found through the API server, scraped on
    their ``http`` port (the pods behind the ServiceMonitor's selector, without the Operator)."""
    pod = "__meta_kubernetes_pod_"
    return {
        "job_name": "jup2kub-steps",
        "kubernetes_sd_configs": [
            {"role": "pod", "kubeconfig_file": kubeconfig, "namespaces": {"names": [namespace]}}
        ],
        "relabel_configs": [
            # the chart's step pods of this release (the ServiceMonitor's selector) ...
            {
                "action": "keep",
                "source_labels": [
                    f"{pod}label_app_kubernetes_io_instance",
                    f"{pod}label_jup2kub_io_role",
                ],
                "regex": f"{RELEASE};step",
            },
            # ... on their `http` port, where the runtime serves /metrics
            {"action": "keep", "source_labels": [f"{pod}container_port_name"], "regex": "http"},
            {"action": "keep", "source_labels": [f"{pod}phase"], "regex": "Running"},
            {"source_labels": ["__meta_kubernetes_namespace"], "target_label": "namespace"},
            {"source_labels": [f"{pod}name"], "target_label": "pod"},
            {
                "source_labels": [f"{pod}label_app_kubernetes_io_component"],
                "target_label": "component",
            },
        ],
    }


@pytest.fixture(scope="module")
def prometheus(cluster: Cluster, release: dict[str, Any]) -> Iterator[Prometheus]:
    scrape = scrape_config(_kubeconfig(cluster), release["namespace"])
    prom = Prometheus(release["work"] / "prometheus", [scrape], rule_files=[release["rules"]])
    prom.start(timeout=120)
    try:
        yield prom
    finally:
        prom.stop()


def _submit(cluster: Cluster, release: dict[str, Any], seed: int, fail: int) -> str:
    r = with_cluster_dns(
        cluster,
        "jup2kub",
        "submit",
        release["notebook"],
        "--kafka",
        release["broker"],
        "-p",
        "seed",
        str(seed),
        "-p",
        "fail",
        str(fail),
    )
    assert r.returncode == 0, r.stdout + r.stderr
    return r.stdout.strip().splitlines()[-1]


def _by_step(result: dict[tuple[tuple[str, str], ...], float]) -> dict[str, float]:
    return {dict(labels)["step"]: v for labels, v in result.items()}


def _firing(prom: Prometheus, alert: str) -> list[dict[str, str]]:
    return [
        a["labels"]
        for a in prom.alerts()
        if a["labels"]["alertname"] == alert and a["state"] == "firing"
    ]


def test_the_rendered_rules_pass_promtool(release: dict[str, Any]) -> None:
    proc = promtool("check", "rules", "--lint=all", "--lint-fatal", release["rules"])
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "SUCCESS" in proc.stdout


def test_prometheus_counts_runs_sees_lag_return_to_0_and_fires_on_failures(
    cluster: Cluster, release: dict[str, Any], prometheus: Prometheus
) -> None:
    prom, ns = prometheus, release["namespace"]
    sel = f'namespace="{ns}"'
    # discovery: one target per step pod, scraped
    prom.wait(lambda: len(prom.query('up{job="jup2kub-steps"} == 1')) == len(STEPS), 180, "up")
    targets = prom.api("targets")["activeTargets"]
    assert sorted(t["labels"]["component"] for t in targets) == sorted(STEPS), targets
    # the rules Prometheus loaded are the rendered ones; the failing alert at its defaults
    rendered = [r for g in release["rule"]["spec"]["groups"] for r in g["rules"]]
    groups = prom.api("rules")["groups"]
    assert sorted(r["name"] for g in groups for r in g["rules"]) == sorted(
        r["alert"] for r in rendered
    )
    [failing] = [r for r in rendered if r["alert"] == "Jup2KubStepFailing"]
    assert failing["expr"].endswith(f">= {FAILURES}") and failing["for"] == "0m", failing

    for seed in range(GOOD_RUNS):
        run_id = _submit(cluster, release, seed, 0)
        states = wait_final(cluster, release["notebook"], release["broker"], run_id, len(STEPS))
        assert {s["state"] for s in states.values()} == {"succeeded"}, states
    executions = f"sum by (step) ({EXECUTIONS.name}{{{sel}}})"
    want = {s: float(GOOD_RUNS) for s in STEPS}
    prom.wait(lambda: _by_step(prom.query(executions)) == want, 120, "executions per step")
    lag = f"max by (step) ({CONSUMER_LAG.name}{{{sel}}})"
    lag_s = f"max by (step) ({CONSUMER_LAG_SECONDS.name}{{{sel}}})"
    zero = {s: 0.0 for s in STEPS}
    prom.wait(
        lambda: _by_step(prom.query(lag)) == zero and _by_step(prom.query(lag_s)) == zero,
        120,
        "lag back at 0",
    )
    assert _firing(prom, "Jup2KubStepFailing") == []

    for seed in range(FAILURES):
        run_id = _submit(cluster, release, seed, 1)
        states = wait_final(cluster, release["notebook"], release["broker"], run_id, len(STEPS))
        assert states["check"]["state"] == "failed", states
    prom.wait(lambda: _firing(prom, "Jup2KubStepFailing") != [], 180, "Jup2KubStepFailing")
    [labels] = _firing(prom, "Jup2KubStepFailing")
    assert (labels["namespace"], labels["step"]) == (ns, "check"), labels
    total = {s: float(GOOD_RUNS + FAILURES) for s in STEPS}
    prom.wait(lambda: _by_step(prom.query(executions)) == total, 120, "every run counted")
