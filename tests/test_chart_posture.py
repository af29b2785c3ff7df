"""The chart's security and availability posture: kube-score on every storage mode x values file,
and the NetworkPolicies, spreading, ephemeral storage and probes it checks, on parsed objects.

kube-score (built from its Go module by tests/setup.d/25-kube-score.sh) must find nothing
critical but the exceptions the README documents, each asserted by check and component, and no
warning but the expected ones: a new finding of either kind fails.
"""

from __future__ import annotations

import functools
import json
import os
import shutil
import subprocess
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.test_chart import (
    REPO,
    STORAGE_SETS,
    VALUES_FILES,
    by_kind,
    charts,
    component,
    render,
    run_helm,
    validate_strict,
    write_values,
)

__all__ = ["charts", "write_values"]  # fixtures shared with test_chart.py

#: kube-score's grades (scorecard.Grade)
CRITICAL, WARNING = 1, 5
#: Critical findings the README justifies (section "kube-score exceptions"): check id ->
#: the components it concerns. The step images are pinned by digest and the Kafka image by
#: release tag, so IfNotPresent never runs another image than Always would (and works where
#: images are loaded into the node, with no registry); the apache/kafka image runs as its
#: built-in appuser, uid/gid 1000, which owns its files.
CRITICAL_EXCEPTIONS: dict[str, frozenset[str]] = {
    "container-image-pull-policy": frozenset({"step", "kafka", "topics"}),
    "container-security-context-user-group-id": frozenset({"kafka", "topics"}),
}
KUBERNETES_VERSION = "v1.29"


@functools.cache
def _kube_score_path() -> str:
    configured = os.environ.get("J2K_KUBE_SCORE")
    if configured and os.access(configured, os.X_OK):
        return configured
    found = shutil.which("kube-score")
    if found:
        return found
    # Neither: build it the way the test command does (cached after the first time).
    script = REPO / "tests" / "setup.d" / "25-kube-score.sh"
    proc = subprocess.run(
        ["bash", "-c", f'set -euo pipefail; source "{script}"; printf %s "$J2K_KUBE_SCORE"'],
        capture_output=True,
        text=True,
        check=False,
        timeout=1800,
    )
    if proc.returncode != 0 or not proc.stdout:
        pytest.fail(f"could not set up kube-score with {script}:\n{proc.stderr}")
    return proc.stdout


def kube_score(objects: Sequence[Mapping[str, Any]], tmp: Path) -> list[dict[str, Any]]:
    """kube-score's JSON report of these objects."""
    manifest = tmp / "manifest.yaml"
    manifest.write_text(yaml.safe_dump_all([dict(o) for o in objects]))
    proc = subprocess.run(
        [
            _kube_score_path(),
            "score",
            "--kubernetes-version",
            KUBERNETES_VERSION,
            "-o",
            "json",
            str(manifest),
        ],
        capture_output=True,
        text=True,
        check=False,
        timeout=300,
    )
    # exit 1 means "critical findings"; anything else without a report is a failure to run
    if proc.returncode not in (0, 1) or not proc.stdout.startswith("["):
        pytest.fail(f"kube-score failed ({proc.returncode}):\n{proc.stdout}\n{proc.stderr}")
    report: list[dict[str, Any]] = json.loads(proc.stdout)
    return report


def _role(obj: Mapping[str, Any]) -> str:
    """step / kafka / topics / ...: which part of the chart an object belongs to."""
    labels = obj["metadata"].get("labels", {})
    if labels.get("jup2kub.io/role") == "step":
        return "step"
    return str(labels.get("app.kubernetes.io/component", obj["metadata"]["name"]))


def findings(
    objects: Sequence[Mapping[str, Any]], tmp: Path
) -> tuple[set[tuple[str, str]], set[tuple[str, str]], dict[tuple[str, str], set[int]]]:
    """(critical, warning) sets of (check id, role), and every grade per (check id, role)."""
    roles = {(o["kind"], o["metadata"]["name"]): _role(o) for o in objects}
    critical: set[tuple[str, str]] = set()
    warning: set[tuple[str, str]] = set()
    grades: dict[tuple[str, str], set[int]] = {}
    for scored in kube_score(objects, tmp):
        role = roles[(scored["type_meta"]["kind"], scored["object_meta"]["name"])]
        for check in scored["checks"]:
            if check["skipped"]:
                continue
            key = (check["check"]["id"], role)
            grades.setdefault(key, set()).add(check["grade"])
            if check["grade"] <= CRITICAL:
                critical.add(key)
            elif check["grade"] <= WARNING:
                warning.add(key)
    return critical, warning, grades


def expected_warnings(values_file: str, mode: str) -> set[tuple[str, str]]:
    """Warnings the README documents for this combination."""
    expected = set()
    if values_file == "values-dev.yaml":
        # development: one replica per step (kube-score skips anti-affinity for one replica)
        expected.add(("deployment-replicas", "step"))
    elif mode in ("local", "ebs"):
        # local with no node named, and ebs: a ReadWriteOnce volume on one node keeps every
        # step pod on that node (README: the state volume and availability)
        expected.add(("deployment-has-host-podantiaffinity", "step"))
    return expected


@pytest.mark.parametrize("mode", sorted(STORAGE_SETS))
@pytest.mark.parametrize("values_file", VALUES_FILES)
def test_kube_score(charts: dict[str, Path], values_file: str, mode: str, tmp_path: Path) -> None:
    files = [] if values_file == "values.yaml" else [values_file]
    objects = render(charts["diamond"], files, STORAGE_SETS[mode])
    critical, warning, grades = findings(objects, tmp_path)
    allowed = {(check, role) for check, roles in CRITICAL_EXCEPTIONS.items() for role in roles}
    assert critical == allowed, f"unexpected: {critical - allowed}, gone: {allowed - critical}"
    assert warning == expected_warnings(values_file, mode)
    # the checks the issue named ran on every workload, and passed
    for role in ("step", "kafka", "topics"):
        assert grades[("pod-networkpolicy", role)] == {10}
        assert grades[("container-ephemeral-storage-request-and-limit", role)] == {10}
    assert grades[("pod-probes-identical", "kafka")] == {10}
    if values_file != "values-dev.yaml":  # one Kafka node in development: nothing to spread
        assert grades[("statefulset-has-host-podantiaffinity", "kafka")] == {10}
    if mode not in ("local", "ebs") and values_file != "values-dev.yaml":
        assert grades[("deployment-has-host-podantiaffinity", "step")] == {10}
    assert all(grades[("networkpolicy-targets-pod", r)] == {10} for r in ("kafka", "steps"))


def test_exceptions_are_documented(charts: dict[str, Path]) -> None:
    for readme in (REPO / "README.md", charts["diamond"] / "README.md"):
        text = readme.read_text()
        for check in CRITICAL_EXCEPTIONS:
            assert f"`{check}`" in text, f"{readme} does not justify {check}"


# --------------------------------------------------------------------------- NetworkPolicies


def _selects(policy: Mapping[str, Any], pod_labels: Mapping[str, str]) -> bool:
    return bool(policy["spec"]["podSelector"]["matchLabels"].items() <= pod_labels.items())


def _pod_labels(obj: Mapping[str, Any]) -> dict[str, str]:
    return dict(obj["spec"]["template"]["metadata"]["labels"])


def _ports(rule: Mapping[str, Any]) -> set[tuple[int, str]]:
    return {(p["port"], p["protocol"]) for p in rule["ports"]}


def test_every_pod_is_isolated_both_ways(charts: dict[str, Path]) -> None:
    objects = render(charts["diamond"], ["values-prod.yaml"])
    policies = list(by_kind(objects, "NetworkPolicy").values())
    workloads = [o for o in objects if o["kind"] in ("Deployment", "StatefulSet", "Job")]
    assert len(workloads) == 6
    for obj in workloads:
        (policy,) = [p for p in policies if _selects(p, _pod_labels(obj))]
        assert policy["spec"]["policyTypes"] == ["Ingress", "Egress"]
    assert not by_kind(
        render(charts["diamond"], sets=["networkPolicy.enabled=false"]), "NetworkPolicy"
    )


def test_step_policy(charts: dict[str, Path]) -> None:
    objects = render(charts["diamond"])
    policy = component(objects, "NetworkPolicy", "steps")
    steps = by_kind(objects, "Deployment").values()
    assert all(_selects(policy, _pod_labels(d)) for d in steps)
    assert not _selects(policy, _pod_labels(component(objects, "StatefulSet", "kafka")))
    # no API server address known without a cluster (helm template): nobody but the kubelet
    assert policy["spec"]["ingress"] == []
    kafka_rule, dns_rule = policy["spec"]["egress"]
    kafka_pods = _pod_labels(component(objects, "StatefulSet", "kafka"))
    (peer,) = kafka_rule["to"]
    assert peer["podSelector"]["matchLabels"].items() <= kafka_pods.items()
    assert _ports(kafka_rule) == {(9092, "TCP")}
    assert dns_rule["to"] == [{"namespaceSelector": {}}]
    assert _ports(dns_rule) == {(53, "UDP"), (53, "TCP")}


def test_step_policy_opens_what_values_say(charts: dict[str, Path], write_values: Any) -> None:
    database = {"to": [{"ipBlock": {"cidr": "10.0.12.0/24"}}], "ports": [{"port": 5432}]}
    viewer = {"podSelector": {"matchLabels": {"app": "viewer"}}}
    values = write_values(
        {
            "networkPolicy": {
                "apiServer": {"cidrs": ["172.20.0.10/32", "fd00::1/128"]},
                "prometheus": {"enabled": True},
                "stepsFrom": [viewer],
                "egress": [database],
            }
        }
    )
    objects = render(charts["diamond"], [values])
    validate_strict(objects)
    policy = component(objects, "NetworkPolicy", "steps")
    (rule,) = policy["spec"]["ingress"]
    assert _ports(rule) == {(8080, "TCP")}
    assert rule["from"] == [
        {"ipBlock": {"cidr": "172.20.0.10/32"}},
        {"ipBlock": {"cidr": "fd00::1/128"}},
        {
            "namespaceSelector": {"matchLabels": {"kubernetes.io/metadata.name": "monitoring"}},
            "podSelector": {"matchLabels": {"app.kubernetes.io/name": "prometheus"}},
        },
        viewer,
    ]
    assert policy["spec"]["egress"][-1] == database
    # the schema refuses what is not a CIDR
    bad = run_helm(
        "template",
        "rel",
        str(charts["diamond"]),
        "--set",
        "networkPolicy.apiServer.cidrs={apiserver.example.com}",
        ok=False,
    )
    assert bad.returncode != 0 and "cidrs" in bad.stderr


def test_kafka_and_topics_policies(charts: dict[str, Path]) -> None:
    objects = render(charts["diamond"], ["values-prod.yaml"])
    kafka = component(objects, "NetworkPolicy", "kafka")
    sts = component(objects, "StatefulSet", "kafka")
    brokers, dns = kafka["spec"]["egress"]
    assert brokers["to"][0]["podSelector"]["matchLabels"] == sts["spec"]["selector"]["matchLabels"]
    assert _ports(brokers) == {(9092, "TCP"), (9093, "TCP")}
    assert _ports(dns) == {(53, "UDP"), (53, "TCP")}
    topics = component(objects, "NetworkPolicy", "topics")
    assert _selects(topics, _pod_labels(component(objects, "Job", "topics")))
    assert topics["spec"]["ingress"] == []
    assert _ports(topics["spec"]["egress"][0]) == {(9092, "TCP")}


def test_external_kafka_egress(charts: dict[str, Path]) -> None:
    sets = ["kafka.enabled=false", "kafka.bootstrapServers=b-1.msk:9094\\,b-2.msk:9094\\,x:9092"]
    objects = render(charts["diamond"], sets=sets)
    validate_strict(objects)
    assert not [p for p in by_kind(objects, "NetworkPolicy").values() if _role(p) == "kafka"]
    for comp in ("steps", "topics"):
        rule = component(objects, "NetworkPolicy", comp)["spec"]["egress"][0]
        assert "to" not in rule and _ports(rule) == {(9092, "TCP"), (9094, "TCP")}
    bad = run_helm(
        "template",
        "rel",
        str(charts["diamond"]),
        "--set",
        "kafka.enabled=false",
        "--set",
        "kafka.bootstrapServers=b-1.msk",
        ok=False,
    )
    assert bad.returncode != 0 and '"b-1.msk" has no port' in bad.stderr


# --------------------------------------------------------------------------- spreading


def _spread_of(obj: Mapping[str, Any]) -> tuple[dict[str, Any], list[dict[str, Any]]]:
    spec = obj["spec"]["template"]["spec"]
    return spec.get("affinity", {}), spec.get("topologySpreadConstraints", [])


def test_replicas_spread_over_nodes_by_default(charts: dict[str, Path]) -> None:
    objects = render(charts["diamond"], ["values-prod.yaml"])
    for obj in [
        *by_kind(objects, "Deployment").values(),
        component(objects, "StatefulSet", "kafka"),
    ]:
        affinity, constraints = _spread_of(obj)
        own = obj["spec"]["selector"]["matchLabels"]
        (term,) = affinity["podAntiAffinity"]["preferredDuringSchedulingIgnoredDuringExecution"]
        assert term["weight"] == 100
        assert term["podAffinityTerm"] == {
            "topologyKey": "kubernetes.io/hostname",
            "labelSelector": {"matchLabels": own},
        }
        (constraint,) = constraints
        assert constraint["topologyKey"] == "kubernetes.io/hostname"
        assert constraint["whenUnsatisfiable"] == "ScheduleAnyway"  # one node still schedules
        assert constraint["maxSkew"] == 1 and constraint["labelSelector"]["matchLabels"] == own
        # the replicas of one step and no other's
        assert own.items() <= _pod_labels(obj).items()
        assert constraint.get("matchLabelKeys") == (
            ["pod-template-hash"] if obj["kind"] == "Deployment" else None
        )


def test_spread_required_and_none(charts: dict[str, Path], write_values: Any) -> None:
    user = {"key": "zone", "operator": "In", "values": ["a"]}
    values = write_values(
        {
            "stepDefaults": {"spread": "none"},
            "steps": {
                "left": {
                    "spread": "required",
                    "affinity": {
                        "nodeAffinity": {
                            "requiredDuringSchedulingIgnoredDuringExecution": {
                                "nodeSelectorTerms": [{"matchExpressions": [user]}]
                            }
                        }
                    },
                }
            },
            "kafka": {"spread": "required"},
        }
    )
    objects = render(charts["diamond"], ["values-prod.yaml", values])
    validate_strict(objects)
    deps = by_kind(objects, "Deployment")
    left = next(d for n, d in deps.items() if n.endswith("-left"))
    for obj in (left, component(objects, "StatefulSet", "kafka")):
        affinity, (constraint,) = _spread_of(obj)
        (term,) = affinity["podAntiAffinity"]["requiredDuringSchedulingIgnoredDuringExecution"]
        assert term["labelSelector"]["matchLabels"] == obj["spec"]["selector"]["matchLabels"]
        assert constraint["whenUnsatisfiable"] == "DoNotSchedule"
    assert _spread_of(left)[0]["nodeAffinity"]  # the user's affinity is kept
    for name, dep in deps.items():
        if not name.endswith("-left"):
            assert _spread_of(dep) == ({}, [])


NODE_FAILURE_KEYS = ("node.kubernetes.io/not-ready", "node.kubernetes.io/unreachable")


def _tolerations(obj: Mapping[str, Any]) -> list[dict[str, Any]]:
    return list(obj["spec"]["template"]["spec"].get("tolerations", []))


def _node_failure_seconds(obj: Mapping[str, Any]) -> dict[str, int | None]:
    """key -> tolerationSeconds of the NoExecute tolerations of the node-failure taints."""
    found = [t for t in _tolerations(obj) if t.get("key") in NODE_FAILURE_KEYS]
    keys = [t["key"] for t in found]
    assert len(keys) == len(set(keys)), f"duplicate tolerations: {found}"
    return {t["key"]: t.get("tolerationSeconds") for t in found}


def test_pods_leave_a_failed_node_after_30_seconds_by_default(charts: dict[str, Path]) -> None:
    for values_file in VALUES_FILES:
        objects = render(charts["diamond"], [] if values_file == "values.yaml" else [values_file])
        for obj in [
            *by_kind(objects, "Deployment").values(),
            component(objects, "StatefulSet", "kafka"),
        ]:
            assert _node_failure_seconds(obj) == dict.fromkeys(NODE_FAILURE_KEYS, 30), values_file
            for toleration in _tolerations(obj):
                assert toleration["effect"] == "NoExecute" and toleration["operator"] == "Exists"


def test_node_failure_tolerations_merge_with_the_users(
    charts: dict[str, Path], write_values: Any
) -> None:
    gpu = {"key": "gpu", "operator": "Exists", "effect": "NoSchedule"}
    patient = {
        "key": "node.kubernetes.io/unreachable",
        "operator": "Exists",
        "effect": "NoExecute",
        "tolerationSeconds": 600,
    }
    values = write_values(
        {
            "stepDefaults": {"nodeFailureTolerationSeconds": 5, "tolerations": [gpu]},
            "steps": {
                "left": {"nodeFailureTolerationSeconds": 0},
                "right": {"tolerations": [patient]},
                "join": {"nodeFailureTolerationSeconds": None},
            },
            "kafka": {"nodeFailureTolerationSeconds": 120, "tolerations": [patient]},
        }
    )
    objects = render(charts["diamond"], ["values-prod.yaml", values])
    validate_strict(objects)
    deps = {
        d["metadata"]["labels"]["app.kubernetes.io/component"]: d
        for d in by_kind(objects, "Deployment").values()
    }
    not_ready, unreachable = NODE_FAILURE_KEYS
    assert _node_failure_seconds(deps["load"]) == {not_ready: 5, unreachable: 5}
    assert gpu in _tolerations(deps["load"])  # the user's come first and stay
    assert _tolerations(deps["load"])[0] == gpu
    assert _node_failure_seconds(deps["left"]) == {not_ready: 0, unreachable: 0}
    # a user toleration of the same key wins; the other key still gets the value
    assert _node_failure_seconds(deps["right"]) == {not_ready: 5, unreachable: 600}
    assert gpu not in _tolerations(deps["right"])  # a step's list replaces the default list
    # null: the API server's default tolerations (300 s) apply, the chart adds none
    assert _node_failure_seconds(deps["join"]) == {}
    assert _tolerations(deps["join"]) == [gpu]
    kafka = component(objects, "StatefulSet", "kafka")
    assert _node_failure_seconds(kafka) == {not_ready: 120, unreachable: 600}
    off = render(charts["diamond"], [], ["kafka.nodeFailureTolerationSeconds=null"])
    assert "tolerations" not in component(off, "StatefulSet", "kafka")["spec"]["template"]["spec"]


def test_read_write_once_state_keeps_steps_together(charts: dict[str, Path]) -> None:
    for sets in (["storage.mode=ebs"], ["storage.mode=local"]):
        objects = render(charts["diamond"], ["values-prod.yaml"], sets)
        for dep in by_kind(objects, "Deployment").values():
            affinity, constraints = _spread_of(dep)
            assert "podAntiAffinity" not in affinity and not constraints
            assert affinity["podAffinity"]
        # Kafka has its own volumes: spread still
        assert _spread_of(component(objects, "StatefulSet", "kafka"))[1]
    proc = run_helm(
        "template",
        "rel",
        str(charts["diamond"]),
        "-f",
        str(charts["diamond"] / "values-prod.yaml"),
        "--set",
        "storage.mode=ebs",
        "--set",
        "stepDefaults.spread=required",
        ok=False,
    )
    assert proc.returncode != 0
    assert "spread=required cannot be met: storage.mode=ebs" in proc.stderr
    # one replica and no autoscaling: nothing to spread, nothing to refuse
    assert render(
        charts["diamond"],
        ["values-dev.yaml"],
        ["storage.mode=ebs", "stepDefaults.spread=required"],
    )


# --------------------------------------------------------------------------- storage, probes


def _quantity(text: str) -> int:
    units = {"Ki": 2**10, "Mi": 2**20, "Gi": 2**30}
    for unit, factor in units.items():
        if text.endswith(unit):
            return int(text[: -len(unit)]) * factor
    return int(text)


@pytest.mark.parametrize("values_file", VALUES_FILES)
def test_ephemeral_storage_covers_the_scratch_volumes(
    charts: dict[str, Path], values_file: str
) -> None:
    files = [] if values_file == "values.yaml" else [values_file]
    objects = render(charts["diamond"], files)
    workloads = [o for o in objects if o["kind"] in ("Deployment", "StatefulSet", "Job")]
    for obj in workloads:
        spec = obj["spec"]["template"]["spec"]
        (container,) = spec["containers"]
        resources = container["resources"]
        request = _quantity(resources["requests"]["ephemeral-storage"])
        limit = _quantity(resources["limits"]["ephemeral-storage"])
        scratch = sum(
            _quantity(v["emptyDir"]["sizeLimit"]) for v in spec["volumes"] if "emptyDir" in v
        )
        assert 0 < request <= limit and scratch < limit, obj["metadata"]["name"]


def test_kafka_liveness_is_not_readiness(charts: dict[str, Path]) -> None:
    sts = component(render(charts["diamond"], ["values-prod.yaml"]), "StatefulSet", "kafka")
    (container,) = sts["spec"]["template"]["spec"]["containers"]
    # alive: the controller answers; ready: the broker serves clients
    assert container["livenessProbe"]["tcpSocket"] == {"port": "controller"}
    assert container["startupProbe"]["tcpSocket"] == {"port": "controller"}
    assert container["readinessProbe"]["tcpSocket"] == {"port": "client"}
