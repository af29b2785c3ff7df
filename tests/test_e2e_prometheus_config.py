"""The cluster-free part of e2e/tests/test_prometheus.py, in the default suite so that it cannot
rot between e2e runs: its Prometheus scrape config is one ``promtool check config`` accepts, and
its relabelling keeps exactly the chart's step pods, on their ``http`` port (the port the
ServiceMonitor scrapes), and not Kafka's."""

from __future__ import annotations

import re
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

import yaml

from e2e.tests.test_prometheus import RELEASE, scrape_config
from tests.support.prometheus_server import promtool
from tests.test_chart import (
    charts,  # noqa: F401  (the fixture)
    run_helm,
)

NAMESPACE = "j2k-e2e-prom-1"
KUBECONFIG = """apiVersion: v1
kind: Config
clusters: [{name: c, cluster: {server: "https://127.0.0.1:6443"}}]
users: [{name: u, user: {token: not-used}}]
contexts: [{name: x, context: {cluster: c, user: u}}]
current-context: x
"""


def _meta(name: str) -> str:
    """A Kubernetes label name as a Prometheus meta label name (what discovery does)."""
    return re.sub(r"[^a-zA-Z0-9_]", "_", name)


def _targets(objects: list[dict[str, Any]]) -> Iterator[dict[str, str]]:
    """The targets Kubernetes pod discovery makes of the pods of these workloads: one per
    container port, with the meta labels the relabelling reads."""
    for obj in objects:
        if obj["kind"] not in {"Deployment", "StatefulSet"}:
            continue
        template = obj["spec"]["template"]
        labels = {
            f"__meta_kubernetes_pod_label_{_meta(k)}": v
            for k, v in template["metadata"]["labels"].items()
        }
        for container in template["spec"]["containers"]:
            for port in container.get("ports", []):
                yield {
                    **labels,
                    "__meta_kubernetes_namespace": NAMESPACE,
                    "__meta_kubernetes_pod_name": f"{obj['metadata']['name']}-0",
                    "__meta_kubernetes_pod_phase": "Running",
                    "__meta_kubernetes_pod_container_port_name": port.get("name", ""),
                    "__address__": f"10.0.0.1:{port['containerPort']}",
                }


def _relabel(target: Mapping[str, str], configs: list[dict[str, Any]]) -> dict[str, str] | None:
    """Prometheus's relabelling, for the actions the e2e config uses (keep, replace)."""
    out = dict(target)
    for c in configs:
        joined = ";".join(out.get(s, "") for s in c["source_labels"])
        match = re.fullmatch(c.get("regex", "(.*)"), joined)
        action = c.get("action", "replace")
        if action == "keep":
            if not match:
                return None
        elif action == "replace":
            if match:
                out[c["target_label"]] = match.expand(
                    c.get("replacement", "$1").replace("$1", r"\1")
                )
        else:
            raise AssertionError(f"relabel action {action} not simulated here")
    return out


def test_the_e2e_relabelling_keeps_the_step_pods_on_their_http_port(
    charts: dict[str, Path],  # noqa: F811
) -> None:
    text = run_helm("template", RELEASE, str(charts["diamond"]), "-n", NAMESPACE).stdout
    objects = [d for d in yaml.safe_load_all(text) if d]
    config = scrape_config("/kubeconfig", NAMESPACE)
    targets = list(_targets(objects))
    assert len({t["__meta_kubernetes_pod_label_app_kubernetes_io_component"] for t in targets}) == 5
    kept = [k for k in (_relabel(t, config["relabel_configs"]) for t in targets) if k]
    assert sorted(k["component"] for k in kept) == ["join", "left", "load", "right"]
    assert all(k["namespace"] == NAMESPACE for k in kept)
    # the port of J2K_PORT, where the runtime serves /metrics
    [port] = {k["__address__"].rsplit(":", 1)[1] for k in kept}
    deployment = next(o for o in objects if o["kind"] == "Deployment")
    env = {
        e["name"]: e.get("value")
        for e in deployment["spec"]["template"]["spec"]["containers"][0]["env"]
    }
    assert port == env["J2K_PORT"]
    # another release in the namespace: none of its pods
    other = run_helm("template", "other", str(charts["diamond"]), "-n", NAMESPACE).stdout
    assert not [
        t
        for t in _targets([d for d in yaml.safe_load_all(other) if d])
        if _relabel(t, config["relabel_configs"])
    ]


def test_the_e2e_scrape_config_passes_promtool(tmp_path: Path) -> None:
    kubeconfig = tmp_path / "kubeconfig"
    kubeconfig.write_text(KUBECONFIG)
    config = {
        "global": {"scrape_interval": "1s", "evaluation_interval": "1s"},
        "scrape_configs": [scrape_config(str(kubeconfig), NAMESPACE)],
    }
    path = tmp_path / "prometheus.yml"
    path.write_text(yaml.safe_dump(config))
    proc = promtool("check", "config", path)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "SUCCESS" in proc.stdout
