"""The Helm chart deliverable, checked with a real helm and the Kubernetes OpenAPI schemas.

Every test chart must pass ``helm lint --strict`` with each values file, render for every storage
mode x values file, and validate strictly against Kubernetes 1.29 through the newest schemas that
``kubernetes-validate`` ships. Assertions are on parsed objects, never on strings of YAML.
"""

from __future__ import annotations

import copy
import dataclasses
import functools
import json
import os
import shutil
import subprocess
from collections.abc import Callable, Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any

import pytest
import yaml
from kubernetes_validate import utils as kv

from jup2kub.chart.options import ChartOptions
from jup2kub.chart.package import package_chart
from jup2kub.chart.render import MARKER, kafka_cluster_id, render_chart
from jup2kub.chart.schema import SKELETON
from jup2kub.chart.write import write_chart
from jup2kub.errors import InputError, UsageError
from jup2kub.model.names import pipeline_name_for
from jup2kub.plan import plan_pipeline
from jup2kub_runtime.contract.config import Config, GuardSettings, min_insync_replicas
from jup2kub_runtime.contract.metrics import FAMILIES, ExecutionOutcome
from jup2kub_runtime.contract.spec import Cell
from jup2kub_runtime.storage.stepcache import cache_enabled
from tests.support.graphs import plan_of

REPO = Path(__file__).resolve().parents[1]
CONTRACT_ENV = {
    "J2K_BOOTSTRAP_SERVERS",
    "J2K_PIPELINE",
    "J2K_STEP",
    "J2K_INPUT_TOPICS",
    "J2K_OUTPUT_TOPICS",
    "J2K_STATUS_TOPIC",
    "J2K_DEAD_LETTER_TOPIC",
    "J2K_CONSUMER_GROUP",
    "J2K_STATE_PATH",
    "J2K_CODE_PATH",
    "J2K_MAX_RETRIES",
    "J2K_RETRY_BACKOFF_SECONDS",
    "J2K_RETRY_BACKOFF_MAX_SECONDS",
    "J2K_STEP_TIMEOUT_SECONDS",
    "J2K_PORT",
}
#: Optional settings of the runtime that the chart sets too, to agree with the topics Job.
RUNTIME_EXTRA_ENV = {
    "J2K_TOPIC_PARTITIONS",
    "J2K_TOPIC_REPLICATION_FACTOR",
    "J2K_TOPIC_MIN_INSYNC_REPLICAS",
    "J2K_SHUTDOWN_GRACE_SECONDS",
    "J2K_GUARD_MODE",
    "J2K_GUARD_MAX_BYTES",
    "J2K_CACHE",  # the step cache (steps.<name>.cache)
    "J2K_IMAGE_DIGEST",  # the step's environment in its cache key
}


def _step(
    name: str,
    cells: list[int],
    after: list[str],
    inputs: Sequence[str] = (),
    outputs: Sequence[str] = (),
) -> dict[str, Any]:
    return {
        "name": name,
        "cells": cells,
        "inputs": list(inputs),
        "parameters": [],
        "outputs": list(outputs),
        "after": after,
    }


GRAPHS: dict[str, dict[str, Any]] = {
    "linear": {
        "notebook": "Linear Analysis.ipynb",
        "split": "auto",
        "parameters": {"n": 10},
        "steps": [
            _step("load", [0, 1], [], outputs=["df"]),
            _step("clean", [2], ["load"], ["df"], ["clean_df"]),
            _step("report", [3, 4], ["clean"], ["clean_df"]),
        ],
    },
    "diamond": {
        "notebook": "diamond.ipynb",
        "split": "auto",
        "parameters": {},
        "steps": [
            _step("load", [0], [], outputs=["df"]),
            _step("left", [1], ["load"], ["df"], ["a"]),
            _step("right", [2], ["load"], ["df"], ["b"]),
            _step("join", [3], ["left", "right"], ["a", "b"]),
        ],
    },
    "single": {
        "notebook": "1-single.ipynb",
        "split": "none",
        "parameters": {},
        "steps": [_step("main", [0, 1, 2], [])],
    },
}
VALUES_FILES = ("values.yaml", "values-dev.yaml", "values-prod.yaml")
#: Settings each storage mode needs on top of any values file.
STORAGE_SETS: dict[str, list[str]] = {
    "local": ["storage.mode=local"],
    "ebs": ["storage.mode=ebs"],
    "efs": ["storage.mode=efs", "storage.efs.fileSystemId=fs-0a1b2c3d"],
    "existingClaim": ["storage.mode=existingClaim", "storage.existingClaim=shared-state"],
}
K8S_VERSIONS = [
    v for v in dict.fromkeys(kv.all_versions()) if kv.major_minor(v) >= kv.major_minor("1.29.0")
]


# --------------------------------------------------------------------------- helm


@functools.cache
def _helm_path() -> str:
    configured = os.environ.get("J2K_HELM")
    if configured and os.access(configured, os.X_OK):
        return configured
    found = shutil.which("helm")
    if found:
        return found
    # Neither: build it the way the test command does (cached after the first time).
    script = REPO / "tests" / "setup.d" / "20-helm.sh"
    proc = subprocess.run(
        ["bash", "-c", f'set -euo pipefail; source "{script}"; printf %s "$J2K_HELM"'],
        capture_output=True,
        text=True,
        check=False,
        timeout=1800,
    )
    if proc.returncode != 0 or not proc.stdout:
        pytest.fail(f"could not set up helm with {script}:\n{proc.stderr}")
    return proc.stdout


@pytest.fixture(scope="session")
def helm() -> str:
    return _helm_path()


def flags(flag: str, items: Sequence[str | Path]) -> list[str]:
    """["-f", a, "-f", b] for flag "-f" and items [a, b]."""
    return [part for item in items for part in (flag, str(item))]


def run_helm(*args: str, ok: bool = True) -> subprocess.CompletedProcess[str]:
    proc = subprocess.run(
        [_helm_path(), *args], capture_output=True, text=True, check=False, timeout=300
    )
    if ok and proc.returncode != 0:
        pytest.fail(f"helm {' '.join(args)} failed:\n{proc.stdout}\n{proc.stderr}")
    return proc


@functools.cache
def _template_cached(chart: str, args: tuple[str, ...]) -> str:
    return run_helm("template", "rel", chart, "--namespace", "pipelines", *args).stdout


def render(
    chart: Path, values: Sequence[str] = (), sets: Sequence[str] = (), extra: Sequence[str] = ()
) -> list[dict[str, Any]]:
    """Parsed objects of ``helm template`` (release 'rel', namespace 'pipelines')."""
    args: list[str] = []
    for v in values:
        args += ["-f", str(v if Path(v).is_absolute() else chart / v)]
    sets = [*sets, *_prod_efs(values, sets)]
    for s in sets:
        args += ["--set", s]
    args += list(extra)
    text = _template_cached(str(chart), tuple(args))
    return [d for d in yaml.safe_load_all(text) if d]


def _prod_efs(values: Sequence[str], sets: Sequence[str]) -> list[str]:
    """values-prod.yaml holds no file system id unless the build was given one (a made-up
    one would install and then fail): the tests give one, as a user must."""
    if any(str(v).endswith("values-prod.yaml") for v in values) and not any(
        s.startswith(("storage.mode=", "storage.efs.")) for s in sets
    ):
        return [PROD_EFS]
    return []


PROD_EFS = "storage.efs.fileSystemId=fs-0a1b2c3d"


def by_kind(objects: Sequence[Mapping[str, Any]], kind: str) -> dict[str, dict[str, Any]]:
    return {o["metadata"]["name"]: dict(o) for o in objects if o["kind"] == kind}


def component(objects: Sequence[Mapping[str, Any]], kind: str, comp: str) -> dict[str, Any]:
    found = [
        o
        for o in objects
        if o["kind"] == kind and o["metadata"]["labels"].get("app.kubernetes.io/component") == comp
    ]
    assert len(found) == 1, f"expected one {kind} for {comp}, got {len(found)}"
    return dict(found[0])


def env_of(deployment: Mapping[str, Any]) -> dict[str, str]:
    container = deployment["spec"]["template"]["spec"]["containers"][0]
    return {e["name"]: e["value"] for e in container["env"]}


_VALIDATED: set[tuple[str, str]] = set()


def validate_strict(objects: Sequence[Mapping[str, Any]]) -> None:
    """Every object against every Kubernetes version from 1.29 on, strict mode."""
    for obj in objects:
        key = json.dumps(obj, sort_keys=True)
        for version in K8S_VERSIONS:
            if (key, version) in _VALIDATED:
                continue
            try:
                kv.validate(dict(obj), version, strict=True)
            except kv.ValidationError as exc:
                pytest.fail(
                    f"{obj['kind']} {obj['metadata']['name']} is invalid for Kubernetes "
                    f"{version}: {exc}"
                )
            _VALIDATED.add((key, version))


# --------------------------------------------------------------------------- charts


def _notebook(tmp: Path, graph: Mapping[str, Any]) -> Path:
    path = tmp / str(graph["notebook"])
    path.write_text(json.dumps({"cells": [], "graph": graph}, sort_keys=True))
    return path


@pytest.fixture(scope="module", params=sorted(GRAPHS))
def chart(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Path:
    graph = GRAPHS[request.param]
    tmp = tmp_path_factory.mktemp(f"chart-{request.param}")
    return write_chart(plan_of(graph, _notebook(tmp, graph)), tmp / "out", ChartOptions())


@pytest.fixture(scope="module")
def charts(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    out = {}
    for name, graph in GRAPHS.items():
        tmp = tmp_path_factory.mktemp(f"named-{name}")
        out[name] = write_chart(plan_of(graph, _notebook(tmp, graph)), tmp / "out")
    return out


@pytest.fixture
def write_values(tmp_path: Path) -> Callable[[Mapping[str, Any]], str]:
    counter = iter(range(1000))

    def write(values: Mapping[str, Any]) -> str:
        path = tmp_path / f"values-{next(counter)}.yaml"
        path.write_text(yaml.safe_dump(dict(values)))
        return str(path)

    return write


# --------------------------------------------------------------------------- lint / validate


@pytest.mark.parametrize("values_file", VALUES_FILES)
def test_lint_strict(chart: Path, values_file: str, helm: str) -> None:
    args = ["lint", "--strict", str(chart)]
    if values_file != "values.yaml":
        args += ["-f", str(chart / values_file), *flags("--set", _prod_efs([values_file], []))]
    proc = run_helm(*args, ok=False)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "0 chart(s) failed" in proc.stdout


@pytest.mark.parametrize("mode", sorted(STORAGE_SETS))
@pytest.mark.parametrize("values_file", VALUES_FILES)
def test_renders_and_validates(chart: Path, values_file: str, mode: str, helm: str) -> None:
    files = [] if values_file == "values.yaml" else [values_file]
    lint = run_helm(
        "lint",
        "--strict",
        str(chart),
        *flags("-f", [chart / f for f in files]),
        *flags("--set", STORAGE_SETS[mode]),
        ok=False,
    )
    assert lint.returncode == 0, lint.stdout + lint.stderr
    objects = render(chart, files, STORAGE_SETS[mode])
    validate_strict(objects)
    kinds = {o["kind"] for o in objects}
    assert {
        "Deployment",
        "Service",
        "PodDisruptionBudget",
        "StatefulSet",
        "ConfigMap",
        "Job",
        "ServiceAccount",
        "NetworkPolicy",
    } <= kinds
    assert ("PersistentVolumeClaim" in kinds) == (mode != "existingClaim")
    names = [(o["kind"], o["metadata"]["name"]) for o in objects]
    assert len(names) == len(set(names)), "two objects share a kind and name"


def test_newest_schemas_are_covered() -> None:
    assert K8S_VERSIONS[0].startswith("1.29")
    assert kv.major_minor(K8S_VERSIONS[-1]) == kv.major_minor(kv.latest_version())


def test_kube_version_floor(charts: dict[str, Path], helm: str) -> None:
    proc = run_helm("template", "rel", str(charts["linear"]), "--kube-version", "1.26.0", ok=False)
    assert proc.returncode != 0 and "kubeVersion" in proc.stderr
    assert render(charts["linear"], extra=["--kube-version", "1.27.0"])


# --------------------------------------------------------------------------- rendered objects


def test_step_deployments(charts: dict[str, Path]) -> None:
    objects = render(charts["linear"])
    deployments = by_kind(objects, "Deployment")
    assert sorted(deployments) == [
        "rel-linear-analysis-clean",
        "rel-linear-analysis-load",
        "rel-linear-analysis-report",
    ]
    for name, dep in deployments.items():
        step = name.removeprefix("rel-linear-analysis-")
        labels = dep["metadata"]["labels"]
        assert labels["app.kubernetes.io/component"] == step
        assert labels["app.kubernetes.io/part-of"] == "linear-analysis"
        assert labels["app.kubernetes.io/instance"] == "rel"
        spec = dep["spec"]
        assert spec["replicas"] == 3
        assert spec["strategy"] == {
            "type": "RollingUpdate",
            "rollingUpdate": {"maxUnavailable": 1, "maxSurge": 1},
        }
        pod = spec["template"]["spec"]
        assert pod["automountServiceAccountToken"] is False
        assert pod["enableServiceLinks"] is False
        assert pod["securityContext"]["runAsNonRoot"] is True
        assert pod["securityContext"]["seccompProfile"] == {"type": "RuntimeDefault"}
        (container,) = pod["containers"]
        assert container["ports"] == [{"name": "http", "containerPort": 8080, "protocol": "TCP"}]
        assert container["livenessProbe"]["httpGet"]["path"] == "/healthz"
        assert container["readinessProbe"]["httpGet"]["path"] == "/readiness"
        assert container["resources"] == {
            "requests": {"cpu": "500m", "memory": "500Mi", "ephemeral-storage": "256Mi"},
            "limits": {"cpu": "1", "memory": "1Gi", "ephemeral-storage": "2Gi"},
        }
        sc = container["securityContext"]
        assert sc["readOnlyRootFilesystem"] is True
        assert sc["allowPrivilegeEscalation"] is False
        assert sc["capabilities"] == {"drop": ["ALL"]}
        mounts = {m["mountPath"]: m["name"] for m in container["volumeMounts"]}
        assert mounts == {"/var/lib/jup2kub/state": "state", "/tmp": "tmp", "/app/step": "code"}
        assert [m.get("readOnly") for m in container["volumeMounts"] if m["name"] == "code"] == [
            True
        ]
        volumes = {v["name"]: v for v in pod["volumes"]}
        assert volumes["code"]["configMap"]["name"] == f"{name}-code"
        assert volumes["state"]["persistentVolumeClaim"]["claimName"] == "rel-linear-analysis-state"
        assert "emptyDir" in volumes["tmp"]
        assert container["image"].startswith(f"linear-analysis-{step}:")
        # Pod templates carry no chart/app version: a rebuild rolls only changed steps.
        pod_labels = spec["template"]["metadata"]["labels"]
        assert "helm.sh/chart" not in pod_labels and "app.kubernetes.io/version" not in pod_labels
        env = env_of(dep)
        assert set(env) == CONTRACT_ENV | RUNTIME_EXTRA_ENV
        assert (
            env["J2K_TOPIC_PARTITIONS"] == env_of(component(objects, "Job", "topics"))["PARTITIONS"]
        )
        assert env["J2K_TOPIC_REPLICATION_FACTOR"] == "3"
        assert env["J2K_TOPIC_MIN_INSYNC_REPLICAS"] == "2"
        assert env["J2K_SHUTDOWN_GRACE_SECONDS"] == "55"
        assert env["J2K_STEP"] == step
        assert env["J2K_PIPELINE"] == "linear-analysis"
        assert env["J2K_CONSUMER_GROUP"] == f"linear-analysis.{step}"
        assert env["J2K_STATUS_TOPIC"] == "linear-analysis.status"
        assert env["J2K_DEAD_LETTER_TOPIC"] == "linear-analysis.dead-letter"
        assert env["J2K_STATE_PATH"] == "/var/lib/jup2kub/state"
        assert env["J2K_CODE_PATH"] == "/app/step"
        assert env["J2K_PORT"] == "8080"
        assert int(env["J2K_MAX_RETRIES"]) == 3
        assert float(env["J2K_RETRY_BACKOFF_SECONDS"]) == 1.0
        assert float(env["J2K_RETRY_BACKOFF_MAX_SECONDS"]) == 60.0
        assert float(env["J2K_STEP_TIMEOUT_SECONDS"]) == 0.0
        # the runtime reads exactly the configuration its own Config derives for this step
        graph = {s["name"]: s for s in GRAPHS["linear"]["steps"]}
        downstream = [n for n, s in graph.items() if step in s["after"]]
        assert Config.from_env(env) == Config.for_step(
            "linear-analysis",
            step,
            graph[step]["after"],
            downstream,
            env["J2K_BOOTSTRAP_SERVERS"],
            max_retries=3,
            retry_backoff_seconds=1.0,
            retry_backoff_max_seconds=60.0,
            step_timeout_seconds=0.0,
            topic_partitions=int(env["J2K_TOPIC_PARTITIONS"]),
            topic_replication_factor=3,
            shutdown_grace_seconds=55.0,
        )
        brokers = env["J2K_BOOTSTRAP_SERVERS"].split(",")
        assert brokers == [
            f"rel-linear-analysis-kafka-{i}.rel-linear-analysis-kafka-headless.pipelines.svc"
            f".cluster.local:9092"
            for i in range(3)
        ]
    assert (
        env_of(deployments["rel-linear-analysis-load"])["J2K_INPUT_TOPICS"]
        == "linear-analysis.runs"
    )
    assert (
        env_of(deployments["rel-linear-analysis-load"])["J2K_OUTPUT_TOPICS"]
        == "linear-analysis.edge.load.clean"
    )
    assert (
        env_of(deployments["rel-linear-analysis-clean"])["J2K_INPUT_TOPICS"]
        == "linear-analysis.edge.load.clean"
    )
    assert env_of(deployments["rel-linear-analysis-report"])["J2K_OUTPUT_TOPICS"] == ""
    services = by_kind(objects, "Service")
    for name in deployments:
        assert services[name]["spec"]["ports"][0]["port"] == 8080
        assert (
            services[name]["spec"]["selector"]
            == deployments[name]["spec"]["selector"]["matchLabels"]
        )
    pdbs = by_kind(objects, "PodDisruptionBudget")
    for name in deployments:
        assert pdbs[name]["spec"]["maxUnavailable"] == 1
    assert not by_kind(objects, "HorizontalPodAutoscaler")
    (sa,) = by_kind(objects, "ServiceAccount").values()
    assert sa["automountServiceAccountToken"] is False


def test_code_bundles_are_configmaps_that_roll_their_pods(
    charts: dict[str, Path], tmp_path: Path
) -> None:
    """Each step's step.json is in the chart (files/steps/STEP/), mounted from a ConfigMap; its
    checksum is on the pod template, so an edited bundle rolls that step's pods only."""
    chart = charts["linear"]
    objects = render(chart)
    configmaps = by_kind(objects, "ConfigMap")
    for step in ("load", "clean", "report"):
        bundle = (chart / "files" / "steps" / step / "step.json").read_text()
        assert json.loads(bundle)["step"] == step
        cm = configmaps[f"rel-linear-analysis-{step}-code"]
        assert cm["data"] == {"step.json": bundle}
        assert cm["metadata"]["labels"]["app.kubernetes.io/component"] == step
    edited = tmp_path / "edited"
    shutil.copytree(chart, edited)
    bundle = edited / "files" / "steps" / "clean" / "step.json"
    spec = json.loads(bundle.read_text())
    spec["cells"][0]["source"] += "\nx = 1"
    bundle.write_text(json.dumps(spec))

    def checksums(root: Path) -> dict[str, str]:
        return {
            name: dep["spec"]["template"]["metadata"]["annotations"]["checksum/code"]
            for name, dep in by_kind(render(root), "Deployment").items()
        }

    before, after = checksums(chart), checksums(edited)
    assert {n for n in before if before[n] != after[n]} == {"rel-linear-analysis-clean"}
    # a chart missing a step's bundle does not render (rather than a pod with no code)
    bundle.unlink()
    proc = run_helm("template", "rel", str(edited), ok=False)
    assert proc.returncode != 0 and "steps.clean: the chart has no code bundle" in proc.stderr


def test_a_code_bundle_too_big_for_a_configmap_is_refused(tmp_path: Path) -> None:
    graph = GRAPHS["single"]
    plan = plan_of(graph, _notebook(tmp_path, graph))
    (step,) = plan.steps
    big = [Cell(0, "x = '" + "a" * (1 << 20) + "'")]
    plan = dataclasses.replace(
        plan,
        steps=type(plan.steps)(
            [dataclasses.replace(step, spec=dataclasses.replace(step.spec, cells=big))]
        ),
    )
    with pytest.raises(InputError, match=r"code bundle of step 'main' is 1024 KiB.*ConfigMap"):
        write_chart(plan, tmp_path / "out")
    assert not (tmp_path / "out").exists()


def test_diamond_topics(charts: dict[str, Path]) -> None:
    objects = render(charts["diamond"])
    envs = {
        d["metadata"]["labels"]["app.kubernetes.io/component"]: env_of(d)
        for d in by_kind(objects, "Deployment").values()
    }
    p = "diamond"
    assert envs["load"]["J2K_INPUT_TOPICS"] == f"{p}.runs"
    assert envs["load"]["J2K_OUTPUT_TOPICS"].split(",") == [
        f"{p}.edge.load.left",
        f"{p}.edge.load.right",
    ]
    assert envs["left"]["J2K_INPUT_TOPICS"] == f"{p}.edge.load.left"
    assert envs["right"]["J2K_OUTPUT_TOPICS"] == f"{p}.edge.right.join"
    assert envs["join"]["J2K_INPUT_TOPICS"].split(",") == [
        f"{p}.edge.left.join",
        f"{p}.edge.right.join",
    ]
    assert envs["join"]["J2K_OUTPUT_TOPICS"] == ""
    assert len({e["J2K_CONSUMER_GROUP"] for e in envs.values()}) == 4
    job = component(objects, "Job", "topics")
    env = env_of(job)
    assert sorted(env["TOPICS"].split()) == sorted(
        [
            f"{p}.runs",
            f"{p}.status",
            f"{p}.dead-letter",
            f"{p}.edge.load.left",
            f"{p}.edge.load.right",
            f"{p}.edge.left.join",
            f"{p}.edge.right.join",
        ]
    )


def test_single_step_is_root_and_sink(charts: dict[str, Path]) -> None:
    objects = render(charts["single"])
    (dep,) = by_kind(objects, "Deployment").values()
    env = env_of(dep)
    assert env["J2K_INPUT_TOPICS"] == "nb-1-single.runs"
    assert env["J2K_OUTPUT_TOPICS"] == ""


def test_topics_job(charts: dict[str, Path]) -> None:
    objects = render(charts["linear"])
    job = component(objects, "Job", "topics")
    annotations = job["metadata"]["annotations"]
    assert set(annotations["helm.sh/hook"].split(",")) == {"post-install", "post-upgrade"}
    assert "before-hook-creation" in annotations["helm.sh/hook-delete-policy"]
    env = env_of(job)
    assert env["REPLICATION_FACTOR"] == "3"
    assert env["MIN_INSYNC_REPLICAS"] == "2"
    assert int(env["PARTITIONS"]) >= 10  # the default HPA maximum
    pod = job["spec"]["template"]["spec"]
    assert pod["containers"][0]["image"] == "apache/kafka:3.9.1"
    script = pod["containers"][0]["command"][-1]
    assert "kafka-topics.sh" in script
    assert "--if-not-exists" in script
    assert "--config min.insync.replicas=$MIN_INSYNC_REPLICAS" in script


@pytest.mark.parametrize("replication", [1, 2, 3, 4, 5])
def test_min_insync_replicas_follow_the_replication_factor(
    charts: dict[str, Path], replication: int
) -> None:
    """2 from replication factor 3 on, nothing below: the chart's topics Job and every step's
    runtime agree with the runtime's own rule."""
    objects = render(charts["linear"], sets=[f"topics.replicationFactor={replication}"])
    expected = min_insync_replicas(replication)
    assert expected == (2 if replication >= 3 else 0)
    job_env = env_of(component(objects, "Job", "topics"))
    assert job_env["MIN_INSYNC_REPLICAS"] == (str(expected) if expected else "")
    for dep in by_kind(objects, "Deployment").values():
        env = env_of(dep)
        assert env.get("J2K_TOPIC_MIN_INSYNC_REPLICAS") == (str(expected) if expected else None)
        assert Config.from_env(env).topic_min_insync_replicas == expected


def test_partitions_cover_the_most_replicas(
    charts: dict[str, Path], write_values: Callable[..., str]
) -> None:
    chart = charts["linear"]
    many = write_values({"topics": {"partitions": 1}, "steps": {"clean": {"replicas": 17}}})
    assert env_of(component(render(chart, [many]), "Job", "topics"))["PARTITIONS"] == "17"
    hpa = write_values(
        {
            "topics": {"partitions": 1},
            "stepDefaults": {"replicas": 1},
            "steps": {"report": {"autoscaling": {"enabled": True, "maxReplicas": 23}}},
        }
    )
    assert env_of(component(render(chart, [hpa]), "Job", "topics"))["PARTITIONS"] == "23"
    few = write_values({"topics": {"partitions": 1}, "stepDefaults": {"replicas": 2}})
    assert env_of(component(render(chart, [few]), "Job", "topics"))["PARTITIONS"] == "2"


def _properties(configmap: Mapping[str, Any]) -> dict[str, str]:
    lines = configmap["data"]["server.properties"].splitlines()
    pairs = [line.split("=", 1) for line in lines if line and not line.startswith("#")]
    return {k: v for k, v in pairs}


@pytest.mark.parametrize(
    ("values_file", "nodes"), [("values-dev.yaml", 1), ("values-prod.yaml", 3)]
)
def test_kafka_statefulset(charts: dict[str, Path], values_file: str, nodes: int) -> None:
    objects = render(charts["diamond"], [values_file])
    sts = component(objects, "StatefulSet", "kafka")
    spec = sts["spec"]
    assert spec["replicas"] == nodes
    assert spec["podManagementPolicy"] == "Parallel"
    headless = by_kind(objects, "Service")[spec["serviceName"]]
    assert headless["spec"]["clusterIP"] == "None"
    assert headless["spec"]["publishNotReadyAddresses"] is True
    pod = spec["template"]["spec"]
    assert pod["enableServiceLinks"] is False
    assert pod["automountServiceAccountToken"] is False
    (container,) = pod["containers"]
    assert container["image"] == "apache/kafka:3.9.1"
    assert container["command"][0] == "/bin/sh"
    assert {"startupProbe", "livenessProbe", "readinessProbe"} <= set(container)
    assert container["securityContext"]["readOnlyRootFilesystem"] is True
    (claim,) = spec["volumeClaimTemplates"]
    data_mount = next(
        m for m in container["volumeMounts"] if m["name"] == claim["metadata"]["name"]
    )
    env = {e["name"]: e for e in container["env"]}
    assert env["POD_NAME"]["valueFrom"]["fieldRef"]["fieldPath"] == "metadata.name"
    cluster_id = env["CLUSTER_ID"]["value"]
    assert len(cluster_id) == 22 and not cluster_id.startswith("-")
    assert cluster_id == kafka_cluster_id("diamond")

    cm = component(objects, "ConfigMap", "kafka")
    props = _properties(cm)
    assert props["process.roles"] == "broker,controller"
    voters = props["controller.quorum.voters"].split(",")
    assert [v.split("@")[0] for v in voters] == [str(i) for i in range(nodes)]
    assert voters[0].split("@")[1] == (
        f"rel-diamond-kafka-0.{headless['metadata']['name']}.pipelines.svc.cluster.local:9093"
    )
    assert "zookeeper.connect" not in props
    for key in (
        "default.replication.factor",
        "offsets.topic.replication.factor",
        "transaction.state.log.replication.factor",
    ):
        assert props[key] == str(nodes)
    assert props["min.insync.replicas"] == str(2 if nodes == 3 else 1)
    # the topics carry it themselves (the broker default does not reach an external Kafka)
    job_env = env_of(component(objects, "Job", "topics"))
    assert job_env["MIN_INSYNC_REPLICAS"] == ("2" if nodes == 3 else "")
    # log dirs in a subdirectory of the volume (ext4 volumes hold lost+found at the root)
    log_dir = Path(props["log.dirs"])
    assert log_dir.parent == Path(data_mount["mountPath"])
    script = cm["data"]["start.sh"]
    assert "/opt/kafka/bin/kafka-storage.sh format --ignore-formatted" in script
    assert "exec /opt/kafka/bin/kafka-server-start.sh" in script
    assert env_of(component(objects, "Job", "topics"))["REPLICATION_FACTOR"] == str(nodes)
    assert component(objects, "PodDisruptionBudget", "kafka")["spec"]["maxUnavailable"] == 1


def test_kafka_config_change_rolls_kafka_only_then(
    charts: dict[str, Path], write_values: Callable[..., str]
) -> None:
    chart = charts["linear"]

    def checksum(objects: list[dict[str, Any]]) -> str:
        sts = component(objects, "StatefulSet", "kafka")
        return str(sts["spec"]["template"]["metadata"]["annotations"]["checksum/config"])

    base = checksum(render(chart))
    assert checksum(render(chart, [write_values({"steps": {"load": {"replicas": 7}}})])) == base
    assert (
        checksum(render(chart, [write_values({"kafka": {"config": {"log.retention.hours": 24}}})]))
        != base
    )


def test_external_kafka(charts: dict[str, Path], write_values: Callable[..., str]) -> None:
    values = write_values(
        {"kafka": {"enabled": False, "bootstrapServers": "broker-a:9092,broker-b:9092"}}
    )
    objects = render(charts["diamond"], [values])
    validate_strict(objects)
    assert not by_kind(objects, "StatefulSet")
    policies = by_kind(objects, "NetworkPolicy").values()  # no Kafka here to protect
    assert {p["metadata"]["labels"]["app.kubernetes.io/component"] for p in policies} == {
        "steps",
        "topics",
    }
    for dep in by_kind(objects, "Deployment").values():
        assert env_of(dep)["J2K_BOOTSTRAP_SERVERS"] == "broker-a:9092,broker-b:9092"
    job_env = env_of(component(objects, "Job", "topics"))
    assert job_env["BOOTSTRAP_SERVERS"] == "broker-a:9092,broker-b:9092"
    assert job_env["REPLICATION_FACTOR"] == ""
    assert job_env["MIN_INSYNC_REPLICAS"] == ""
    for dep in by_kind(objects, "Deployment").values():
        assert "J2K_TOPIC_REPLICATION_FACTOR" not in env_of(dep)  # the runtime's default
        assert "J2K_TOPIC_MIN_INSYNC_REPLICAS" not in env_of(dep)


def test_network_policy(charts: dict[str, Path]) -> None:
    objects = render(charts["linear"])
    policy = component(objects, "NetworkPolicy", "kafka")
    sts = component(objects, "StatefulSet", "kafka")
    assert policy["spec"]["podSelector"]["matchLabels"] == sts["spec"]["selector"]["matchLabels"]
    client_rule = next(r for r in policy["spec"]["ingress"] if r["ports"][0]["port"] == 9092)
    allowed = client_rule["from"][0]["podSelector"]["matchLabels"]
    assert allowed["app.kubernetes.io/instance"] == "rel"
    # every pod of this release that talks to Kafka matches the rule
    for obj in [*by_kind(objects, "Deployment").values(), component(objects, "Job", "topics")]:
        labels = obj["spec"]["template"]["metadata"]["labels"]
        assert allowed.items() <= labels.items()
    assert not by_kind(
        render(charts["linear"], sets=["networkPolicy.enabled=false"]), "NetworkPolicy"
    )


def test_values_files_shape(charts: dict[str, Path]) -> None:
    dev = render(charts["diamond"], ["values-dev.yaml"])
    assert all(d["spec"]["replicas"] == 1 for d in by_kind(dev, "Deployment").values())
    assert not by_kind(dev, "HorizontalPodAutoscaler")
    assert component(dev, "StatefulSet", "kafka")["spec"]["replicas"] == 1
    assert component(dev, "PersistentVolume", "storage")["spec"]["local"]
    small = next(iter(by_kind(dev, "Deployment").values()))
    assert small["spec"]["template"]["spec"]["containers"][0]["resources"]["requests"] == {
        "cpu": "100m",
        "memory": "128Mi",
        "ephemeral-storage": "256Mi",  # from values.yaml: values files merge key by key
    }

    prod = render(charts["diamond"], ["values-prod.yaml"])
    deployments = by_kind(prod, "Deployment")
    hpas = by_kind(prod, "HorizontalPodAutoscaler")
    assert sorted(hpas) == sorted(deployments)
    for name, hpa in hpas.items():
        assert "replicas" not in deployments[name]["spec"]
        assert hpa["apiVersion"] == "autoscaling/v2"
        assert hpa["spec"]["scaleTargetRef"] == {
            "apiVersion": "apps/v1",
            "kind": "Deployment",
            "name": name,
        }
        assert hpa["spec"]["minReplicas"] == 3
        assert {m["resource"]["name"] for m in hpa["spec"]["metrics"]} == {"cpu", "memory"}
    assert component(prod, "StatefulSet", "kafka")["spec"]["replicas"] == 3
    pvc = component(prod, "PersistentVolumeClaim", "storage")
    assert pvc["spec"]["accessModes"] == ["ReadWriteMany"]
    assert int(env_of(component(prod, "Job", "topics"))["PARTITIONS"]) >= max(
        h["spec"]["maxReplicas"] for h in hpas.values()
    )


def test_per_step_overrides(charts: dict[str, Path], write_values: Callable[..., str]) -> None:
    values = write_values(
        {
            "stepDefaults": {"autoscaling": {"enabled": True}},
            "steps": {
                "left": {
                    "replicas": 2,
                    "autoscaling": {"enabled": False},
                    "resources": {"limits": {"memory": "4Gi"}},
                    "retry": {"maxRetries": 5, "backoffSeconds": 0.5},
                    "timeoutSeconds": 30,
                    "env": {"OMP_NUM_THREADS": "2", "DEBUG": True},
                },
                "join": {
                    "autoscaling": {"maxReplicas": 6, "targetMemoryUtilizationPercentage": None}
                },
            },
        }
    )
    objects = render(charts["diamond"], [values])
    validate_strict(objects)
    deps = {
        d["metadata"]["labels"]["app.kubernetes.io/component"]: d
        for d in by_kind(objects, "Deployment").values()
    }
    hpas = {
        h["metadata"]["labels"]["app.kubernetes.io/component"]: h
        for h in by_kind(objects, "HorizontalPodAutoscaler").values()
    }
    assert sorted(hpas) == ["join", "load", "right"]  # false overrides a true default
    assert deps["left"]["spec"]["replicas"] == 2
    resources = deps["left"]["spec"]["template"]["spec"]["containers"][0]["resources"]
    assert resources == {
        "requests": {"cpu": "500m", "memory": "500Mi", "ephemeral-storage": "256Mi"},
        "limits": {"cpu": "1", "memory": "4Gi", "ephemeral-storage": "2Gi"},
    }
    env = env_of(deps["left"])
    assert env["J2K_MAX_RETRIES"] == "5"
    assert float(env["J2K_RETRY_BACKOFF_SECONDS"]) == 0.5
    assert float(env["J2K_RETRY_BACKOFF_MAX_SECONDS"]) == 60.0
    assert float(env["J2K_STEP_TIMEOUT_SECONDS"]) == 30.0
    assert env["OMP_NUM_THREADS"] == "2" and env["DEBUG"] == "true"
    assert "OMP_NUM_THREADS" not in env_of(deps["right"])
    assert env_of(deps["right"])["J2K_MAX_RETRIES"] == "3"
    assert hpas["join"]["spec"]["maxReplicas"] == 6
    assert [m["resource"]["name"] for m in hpas["join"]["spec"]["metrics"]] == ["cpu"]
    assert hpas["load"]["spec"]["maxReplicas"] == 10
    assert "replicas" not in deps["join"]["spec"]


def test_scale_to_zero_and_images(
    charts: dict[str, Path], write_values: Callable[..., str]
) -> None:
    digest = "sha256:" + "ab" * 32
    values = write_values(
        {
            "image": {"registry": "registry.example.com:5000/team"},
            "steps": {
                "load": {
                    "replicas": 0,
                    "image": {"repository": "custom/load", "tag": "v2", "digest": digest},
                }
            },
        }
    )
    objects = render(charts["linear"], [values])
    deps = {
        d["metadata"]["labels"]["app.kubernetes.io/component"]: d
        for d in by_kind(objects, "Deployment").values()
    }
    assert deps["load"]["spec"]["replicas"] == 0
    image = deps["load"]["spec"]["template"]["spec"]["containers"][0]["image"]
    assert image == f"registry.example.com:5000/team/custom/load:v2@{digest}"
    assert deps["clean"]["spec"]["template"]["spec"]["containers"][0]["image"].startswith(
        "registry.example.com:5000/team/linear-analysis-clean:"
    )


@pytest.mark.parametrize("mode", [*sorted(STORAGE_SETS), "efs-static", "local-node"])
def test_storage_modes(charts: dict[str, Path], mode: str) -> None:
    sets = {
        "efs-static": ["storage.mode=efs", "storage.efs.volumeHandle=fs-0a1b2c3d::fsap-0123"],
        "local-node": ["storage.mode=local", "storage.local.nodeName=worker-1"],
    }.get(mode) or STORAGE_SETS[mode]
    objects = render(charts["diamond"], sets=sets)
    validate_strict(objects)
    classes = by_kind(objects, "StorageClass")
    pvs = by_kind(objects, "PersistentVolume")
    pvcs = by_kind(objects, "PersistentVolumeClaim")
    deps = list(by_kind(objects, "Deployment").values())
    claims = {
        v["persistentVolumeClaim"]["claimName"]
        for d in deps
        for v in d["spec"]["template"]["spec"]["volumes"]
        if "persistentVolumeClaim" in v
    }
    assert len(claims) == 1
    affinities = [d["spec"]["template"]["spec"].get("affinity", {}) for d in deps]
    colocated = all("podAffinity" in a for a in affinities)
    if mode == "existingClaim":
        assert claims == {"shared-state"} and not pvcs and not pvs and not classes
        assert not colocated
        return
    (pvc,) = pvcs.values()
    assert claims == {pvc["metadata"]["name"]}
    if mode in ("local", "local-node"):
        (sc,) = classes.values()
        (pv,) = pvs.values()
        assert sc["provisioner"] == "kubernetes.io/no-provisioner"
        assert sc["volumeBindingMode"] == "WaitForFirstConsumer"
        assert pv["spec"]["local"]["path"] == "/var/lib/jup2kub/diamond"
        assert (
            pv["spec"]["storageClassName"]
            == pvc["spec"]["storageClassName"]
            == sc["metadata"]["name"]
        )
        assert pv["spec"]["claimRef"] == {"namespace": "pipelines", "name": pvc["metadata"]["name"]}
        terms = pv["spec"]["nodeAffinity"]["required"]["nodeSelectorTerms"]
        if mode == "local-node":
            assert terms[0]["matchExpressions"][0] == {
                "key": "kubernetes.io/hostname",
                "operator": "In",
                "values": ["worker-1"],
            }
            assert not colocated
        else:
            assert colocated
        assert pvc["spec"]["accessModes"] == ["ReadWriteOnce"]
    elif mode == "ebs":
        (sc,) = classes.values()
        assert sc["provisioner"] == "ebs.csi.aws.com"
        assert sc["parameters"]["type"] == "gp3" and sc["parameters"]["encrypted"] == "true"
        assert pvc["spec"]["accessModes"] == ["ReadWriteOnce"]
        assert colocated
        term = affinities[0]["podAffinity"]["requiredDuringSchedulingIgnoredDuringExecution"][0]
        assert term["topologyKey"] == "kubernetes.io/hostname"
        for dep in deps:  # every step pod matches the selector it is co-located with
            labels = dep["spec"]["template"]["metadata"]["labels"]
            assert term["labelSelector"]["matchLabels"].items() <= labels.items()
    elif mode == "efs":
        (sc,) = classes.values()
        assert sc["provisioner"] == "efs.csi.aws.com"
        assert sc["parameters"]["provisioningMode"] == "efs-ap"
        assert sc["parameters"]["fileSystemId"] == "fs-0a1b2c3d"
        assert pvc["spec"]["accessModes"] == ["ReadWriteMany"]
        assert not colocated
    elif mode == "efs-static":
        assert not classes
        (pv,) = pvs.values()
        assert pv["spec"]["csi"] == {
            "driver": "efs.csi.aws.com",
            "volumeHandle": "fs-0a1b2c3d::fsap-0123",
        }
        assert pv["spec"]["accessModes"] == pvc["spec"]["accessModes"] == ["ReadWriteMany"]
        assert pvc["spec"]["volumeName"] == pv["metadata"]["name"]
        assert pv["spec"]["storageClassName"] == pvc["spec"]["storageClassName"] == ""


def test_names_fit_and_namespace_is_not_baked_in(tmp_path: Path) -> None:
    graph = {"steps": [_step("s" * 40, [0], []), _step("t" * 40, [1], ["s" * 40])]}
    nb = tmp_path / ("x" * 80 + ".ipynb")
    nb.write_text("{}")
    chart = write_chart(plan_of(graph, nb), tmp_path / "out")
    objects = render(chart, ["values-prod.yaml"])
    validate_strict(objects)
    for obj in objects:
        name = obj["metadata"]["name"]
        assert len(name) <= 63, name
        assert "namespace" not in obj["metadata"]
    sts = component(objects, "StatefulSet", "kafka")
    assert len(sts["metadata"]["name"]) <= 52
    assert len(by_kind(objects, "Deployment")) == 2
    other_ns = run_helm("template", "rel", str(chart), "--namespace", "elsewhere").stdout
    assert "pipelines" not in other_ns


# --------------------------------------------------------------------------- schema


BAD_VALUES: dict[str, dict[str, Any]] = {
    "typo-top-level": {"replica": 3},
    "typo-step-defaults": {"stepDefaults": {"replica": 2}},
    "unknown-step": {"steps": {"lod": {"replicas": 1}}},
    "typo-in-step": {"steps": {"load": {"replcas": 1}}},
    "wrong-type": {"kafka": {"nodes": "3"}},
    "bad-node-count": {"kafka": {"nodes": 2}},
    "bad-storage-mode": {"storage": {"mode": "nfs"}},
    "negative-replicas": {"stepDefaults": {"replicas": -1}},
    "string-retries": {"stepDefaults": {"retry": {"maxRetries": "three"}}},
    "reserved-env": {"steps": {"load": {"env": {"J2K_STEP": "other"}}}},
    "claim-missing": {"storage": {"mode": "existingClaim"}},
    "efs-without-id": {"storage": {"mode": "efs"}},
    "external-kafka-without-servers": {"kafka": {"enabled": False}},
    "bad-digest": {"steps": {"load": {"image": {"digest": "latest"}}}},
    "negative-toleration": {"stepDefaults": {"nodeFailureTolerationSeconds": -1}},
    "string-toleration": {"kafka": {"nodeFailureTolerationSeconds": "30s"}},
    "step-toleration-float": {"steps": {"load": {"nodeFailureTolerationSeconds": 1.5}}},
}


@pytest.mark.parametrize("case", sorted(BAD_VALUES))
def test_schema_rejects(
    charts: dict[str, Path], case: str, write_values: Callable[..., str]
) -> None:
    path = write_values(BAD_VALUES[case])
    chart = str(charts["linear"])
    lint = run_helm("lint", "--strict", chart, "-f", path, ok=False)
    assert lint.returncode != 0, lint.stdout
    assert "schema" in lint.stdout + lint.stderr
    template = run_helm("template", "rel", chart, "-f", path, ok=False)
    assert template.returncode != 0
    assert "schema" in template.stderr


# --------------------------------------------------------------------------- generated files


def test_chart_metadata(charts: dict[str, Path]) -> None:
    chart = charts["linear"]
    meta = yaml.safe_load((chart / "Chart.yaml").read_text())
    assert meta["apiVersion"] == "v2"
    assert meta["name"] == "linear-analysis"
    assert meta["version"] == "0.1.0"
    assert meta["kubeVersion"] == ">=1.27.0-0"
    assert "dependencies" not in meta
    sha = meta["annotations"]["jup2kub.io/notebook-sha256"]
    assert len(sha) == 64 and meta["appVersion"] == sha[:12]
    assert meta["annotations"]["jup2kub.io/notebook"] == "Linear Analysis.ipynb"
    values = yaml.safe_load((chart / "values.yaml").read_text())
    assert values["pipeline"]["notebookSha256"] == sha
    assert list(values["steps"]) == ["load", "clean", "report"]  # notebook order
    schema = json.loads((chart / "values.schema.json").read_text())
    assert schema["additionalProperties"] is False
    assert schema["properties"]["steps"]["additionalProperties"] is False
    assert sorted(schema["properties"]["steps"]["properties"]) == ["clean", "load", "report"]
    assert json.loads((chart / MARKER).read_text())["generator"] == "jup2kub"
    # the step graph, with the pipeline's name recorded for commands addressing the deployment
    recorded = json.loads((chart / "pipeline.json").read_text())
    assert recorded == {**GRAPHS["linear"], "name": "linear-analysis"}


def test_values_yaml_is_commented(charts: dict[str, Path]) -> None:
    text = (charts["linear"] / "values.yaml").read_text()
    comments = [line for line in text.splitlines() if line.lstrip().startswith("#")]
    assert len(comments) > 30


def test_readme_values_table_covers_the_schema(charts: dict[str, Path]) -> None:
    chart = charts["diamond"]
    readme = (chart / "README.md").read_text()
    keys = {
        line.split("|")[1].strip().strip("`")
        for line in readme.splitlines()
        if line.startswith("| `")
    }
    values = yaml.safe_load((chart / "values.yaml").read_text())

    def leaves(node: Any, prefix: str) -> Iterator[str]:
        if isinstance(node, dict) and node and prefix.count(".") < 4:
            for k, v in node.items():
                yield from leaves(v, f"{prefix}.{k}" if prefix else k)
        else:
            yield prefix

    for key in (
        "storage.mode",
        "kafka.nodes",
        "stepDefaults.replicas",
        "stepDefaults.autoscaling.maxReplicas",
        "steps.join.inputTopics",
        "networkPolicy.enabled",
        "topics.partitions",
    ):
        assert key in keys
    # every value is documented, at its own key or at a documented parent
    for leaf in leaves(values, ""):
        parts = leaf.split(".")
        assert any(".".join(parts[:i]) in keys for i in range(1, len(parts) + 1)), leaf
    for step in ("load", "left", "right", "join"):
        assert f"| `{step}` |" in readme


def test_readmes_document_every_metric(charts: dict[str, Path]) -> None:
    """The metric names are a contract for dashboards: the chart's README lists each family
    with its type and labels (from the runtime's contract), the project README names it."""
    chart_readme = (charts["diamond"] / "README.md").read_text()
    project_readme = (REPO / "README.md").read_text()
    for family in FAMILIES:
        labels = ", ".join(f"`{label}`" for label in family.labels)
        assert f"| `{family.name}` | {family.kind} | {labels} |" in chart_readme, family.name
        assert f"`{family.name}`" in project_readme, family.name
    for outcome in ExecutionOutcome:
        assert f"`{outcome.value}`" in chart_readme and f"`{outcome.value}`" in project_readme


def test_notes(charts: dict[str, Path], tmp_path: Path) -> None:
    """NOTES.txt renders (helm only renders it on install, so wrap it in a ConfigMap here)."""
    copy_dir = tmp_path / "chart"
    shutil.copytree(charts["diamond"], copy_dir)
    (copy_dir / "files").mkdir(exist_ok=True)  # the code bundles are there already
    shutil.move(copy_dir / "templates" / "NOTES.txt", copy_dir / "files" / "NOTES.txt")
    (copy_dir / "templates" / "notes-under-test.yaml").write_text(
        "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: notes\ndata:\n  notes: |\n"
        '    {{- tpl (.Files.Get "files/NOTES.txt") . | nindent 4 }}\n'
    )
    for values_file, expect in (("values-dev.yaml", "one\nnode"), ("values-prod.yaml", None)):
        objects = render(copy_dir, [values_file])
        notes = by_kind(objects, "ConfigMap")["notes"]["data"]["notes"]
        assert "diamond.runs" in notes and "diamond.status" in notes
        assert "kubectl --namespace pipelines" in notes
        for step in ("load", "left", "right", "join"):
            assert f"- {step}:" in notes
        assert ("ReadWriteOnce" in notes) == (values_file == "values-dev.yaml"), expect
        # no cluster to look the API server up in: the notes say what to set
        assert "set networkPolicy.apiServer.cidrs" in notes
    objects = render(copy_dir, sets=["networkPolicy.apiServer.cidrs={10.0.0.1/32}"])
    notes = by_kind(objects, "ConfigMap")["notes"]["data"]["notes"]
    assert "the API server from 10.0.0.1/32." in " ".join(notes.split())


def test_templates_are_verbatim_and_never_mix_syntaxes(charts: dict[str, Path]) -> None:
    chart = charts["single"]
    root = SKELETON
    copied = 0
    for path in sorted(Path(str(root)).rglob("*")):
        if path.is_file() and path.suffix != ".j2" and path.name != "values.schema.base.json":
            rel = path.relative_to(Path(str(root)))
            assert (chart / rel).read_bytes() == path.read_bytes()
            assert "{%" not in path.read_text() and "{#" not in path.read_text(), rel
            copied += 1
    assert copied >= 10
    jinja_dir = Path(str(SKELETON))
    for template in jinja_dir.glob("*.j2"):
        text = template.read_text()
        for go in ("{{ .", "{{- ", "{{ include", "{{ $"):
            assert go not in text, f"{template.name} contains Go template syntax {go!r}"


# --------------------------------------------------------------------------- output discipline


def test_reproducible_byte_for_byte(tmp_path: Path) -> None:
    graph = GRAPHS["diamond"]
    nb = _notebook(tmp_path, graph)
    first = write_chart(plan_of(graph, nb), tmp_path / "a")
    second = write_chart(plan_of(graph, nb), tmp_path / "b")
    write_chart(plan_of(graph, nb), first)  # rebuilding in place, too

    def tree(root: Path) -> dict[str, tuple[bytes, int]]:
        return {
            str(p.relative_to(root)): (p.read_bytes(), p.stat().st_mode)
            for p in sorted(root.rglob("*"))
            if p.is_file()
        }

    assert tree(first) == tree(second)
    assert render_chart(plan_of(graph, nb)) == render_chart(plan_of(graph, nb))


def test_refuses_to_overwrite_a_foreign_directory(tmp_path: Path) -> None:
    graph = GRAPHS["single"]
    nb = _notebook(tmp_path, graph)
    foreign = tmp_path / "mine"
    foreign.mkdir()
    (foreign / "thesis.tex").write_text("precious")
    with pytest.raises(UsageError) as info:
        write_chart(plan_of(graph, nb), foreign)
    assert info.value.exit_code == 2 and "refusing" in str(info.value)
    assert [p.name for p in foreign.iterdir()] == ["thesis.tex"]
    a_file = tmp_path / "file"
    a_file.write_text("x")
    with pytest.raises(UsageError):
        write_chart(plan_of(graph, nb), a_file)
    empty = tmp_path / "empty"
    empty.mkdir()
    assert (write_chart(plan_of(graph, nb), empty) / "Chart.yaml").is_file()
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted(
        [nb.name, "mine", "file", "empty"]
    )  # no temp dirs left behind


def test_failed_build_leaves_out_untouched(tmp_path: Path) -> None:
    nb = _notebook(tmp_path, GRAPHS["linear"])
    out = write_chart(plan_of(GRAPHS["linear"], nb), tmp_path / "out")
    before = {p: p.read_bytes() for p in out.rglob("*") if p.is_file()}
    broken = copy.deepcopy(GRAPHS["linear"])
    broken["steps"][1]["name"] = "kafka"
    broken["steps"][2]["after"] = ["kafka"]
    with pytest.raises(InputError):
        write_chart(plan_of(broken, nb), out)
    assert {p: p.read_bytes() for p in out.rglob("*") if p.is_file()} == before
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted([nb.name, "out"])
    # a rebuild replaces the old chart, and keeps the files the user added
    (out / "templates" / "mine.yaml").write_text("kind: Mine\n")
    write_chart(plan_of(GRAPHS["single"], nb), out)
    assert (out / "templates" / "mine.yaml").read_text() == "kind: Mine\n"
    assert list(yaml.safe_load((out / "values.yaml").read_text())["steps"]) == ["main"]


def test_rebuild_deletes_only_what_a_build_wrote(tmp_path: Path) -> None:
    """The marker lists the files a build wrote: a rebuild removes those it no longer writes
    and never deletes nor overwrites a file the user put into the chart."""
    graph = GRAPHS["linear"]
    nb = _notebook(tmp_path, graph)
    out = write_chart(plan_of(graph, nb), tmp_path / "out", extra_files={"images/a/lock": b"1"})
    listed = json.loads((out / MARKER).read_text())["files"]
    assert "images/a/lock" in listed and MARKER in listed and "Chart.yaml" in listed
    (out / "values-staging.yaml").write_text("steps: {}\n")
    (out / "notes").mkdir()
    (out / "notes" / "todo.txt").write_text("ask ops")
    os.symlink("values-staging.yaml", out / "values-current.yaml")
    write_chart(plan_of(graph, nb), out)
    assert not (out / "images").exists()  # written by the first build only
    assert (out / "values-staging.yaml").read_text() == "steps: {}\n"
    assert (out / "notes" / "todo.txt").read_text() == "ask ops"
    assert os.readlink(out / "values-current.yaml") == "values-staging.yaml"
    # a file of the user's where the new chart writes one: refused, nothing changed
    (out / "images").mkdir()
    (out / "images" / "a").write_text("mine")
    before = {p: p.read_bytes() for p in out.rglob("*") if p.is_file()}
    with pytest.raises(UsageError) as info:
        write_chart(plan_of(graph, nb), out, extra_files={"images/a/lock": b"1"})
    assert "images/a" in str(info.value) and info.value.exit_code == 2
    assert {p: p.read_bytes() for p in out.rglob("*") if p.is_file()} == before
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted([nb.name, "out"])


def test_a_chart_without_a_file_list_keeps_every_file_the_build_does_not_write(
    tmp_path: Path,
) -> None:
    graph = GRAPHS["single"]
    nb = _notebook(tmp_path, graph)
    out = write_chart(plan_of(graph, nb), tmp_path / "out")
    marker = json.loads((out / MARKER).read_text())
    del marker["files"]  # as an older Jup2Kub wrote it
    (out / MARKER).write_text(json.dumps(marker))
    (out / "extra.yaml").write_text("x: 1\n")
    write_chart(plan_of(graph, nb), out)
    assert (out / "extra.yaml").read_text() == "x: 1\n"
    assert "files" in json.loads((out / MARKER).read_text())


def test_step_names_of_the_charts_own_objects_are_refused(tmp_path: Path) -> None:
    """The pipeline guarantees unique DNS-label step names in an acyclic graph (tests of the
    split); the chart refuses what clashes with its own objects."""
    graph = copy.deepcopy(GRAPHS["linear"])
    graph["steps"][2]["name"] = "kafka"
    with pytest.raises(InputError) as info:
        render_chart(plan_of(graph, _notebook(tmp_path, GRAPHS["linear"])))
    assert "taken" in str(info.value)
    assert info.value.exit_code == 2


@pytest.mark.parametrize(
    ("options", "flag"),
    [
        (ChartOptions(storage="nfs"), "--storage"),
        (ChartOptions(kafka_nodes=2), "--kafka-nodes"),
        (ChartOptions(replicas=0), "--replicas"),
        (ChartOptions(replicas=12), "--replicas"),
        (ChartOptions(chart_version="1.0"), "--chart-version"),
        (ChartOptions(image_registry="https://registry"), "--image-registry"),
        (ChartOptions(image_tags={"ghost": "v1"}), "unknown step"),
        (ChartOptions(image_digests={"load": "md5:00"}), "malformed"),
    ],
)
def test_bad_options(tmp_path: Path, options: ChartOptions, flag: str) -> None:
    with pytest.raises(UsageError) as info:
        render_chart(plan_of(GRAPHS["linear"], _notebook(tmp_path, GRAPHS["linear"])), options)
    assert flag in str(info.value)


def test_options_reach_the_chart(tmp_path: Path) -> None:
    nb = _notebook(tmp_path, GRAPHS["linear"])
    digest = "sha256:" + "0f" * 32
    out = write_chart(
        plan_of(GRAPHS["linear"], nb, name="fraud"),
        tmp_path / "out",
        ChartOptions(
            storage="ebs",
            kafka_nodes=1,
            replicas=2,
            image_registry="reg.local:5000/",
            chart_version="2.3.4-rc.1",
            image_tags={"load": "abc123"},
            image_digests={"load": digest},
        ),
    )
    meta = yaml.safe_load((out / "Chart.yaml").read_text())
    assert (meta["name"], meta["version"]) == ("fraud", "2.3.4-rc.1")
    objects = render(out)
    validate_strict(objects)
    deps = {
        d["metadata"]["labels"]["app.kubernetes.io/component"]: d
        for d in by_kind(objects, "Deployment").values()
    }
    assert all(d["spec"]["replicas"] == 2 for d in deps.values())
    assert (
        deps["load"]["spec"]["template"]["spec"]["containers"][0]["image"]
        == f"reg.local:5000/fraud-load:abc123@{digest}"
    )
    assert component(objects, "StatefulSet", "kafka")["spec"]["replicas"] == 1
    assert component(objects, "StorageClass", "storage")["provisioner"] == "ebs.csi.aws.com"
    assert env_of(deps["clean"])["J2K_INPUT_TOPICS"] == "fraud.edge.load.clean"


def test_names() -> None:
    assert pipeline_name_for(Path("/x/My Analysis (v2).ipynb")) == "my-analysis-v2"
    assert pipeline_name_for(Path("2024_report.ipynb")) == "nb-2024-report"
    assert pipeline_name_for(Path("___.ipynb")) == "notebook"
    assert len(pipeline_name_for(Path("a" * 100 + ".ipynb"))) == 40
    ids = {kafka_cluster_id(f"pipeline-{i}") for i in range(300)}
    assert len(ids) == 300
    for cid in ids:
        assert len(cid) == 22 and not cid.startswith("-")
        assert set(cid) <= set("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_")
    assert kafka_cluster_id("same") == kafka_cluster_id("same")


# --------------------------------------------------------------------------- corpus


CORPUS = sorted((REPO / "tests" / "corpus").glob("*.ipynb"))


@pytest.fixture(scope="module", params=CORPUS, ids=[p.stem for p in CORPUS])
def corpus_chart(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Path:
    from jup2kub.api import inspect_notebook

    notebook: Path = request.param
    tmp = tmp_path_factory.mktemp(f"corpus-{notebook.stem}")
    first = write_chart(plan_pipeline(inspect_notebook(notebook)), tmp / "a")
    second = write_chart(plan_pipeline(inspect_notebook(notebook)), tmp / "b")
    for path in sorted(first.rglob("*")):
        if path.is_file():
            assert (second / path.relative_to(first)).read_bytes() == path.read_bytes(), path
    return first


def test_corpus_notebooks(corpus_chart: Path, helm: str) -> None:
    """Done-when of the chart issue, for every notebook of the test corpus."""
    for values_file in VALUES_FILES:
        files = [] if values_file == "values.yaml" else [values_file]
        lint = run_helm(
            "lint",
            "--strict",
            str(corpus_chart),
            *flags("-f", [corpus_chart / f for f in files]),
            *flags("--set", _prod_efs(files, [])),
            ok=False,
        )
        assert lint.returncode == 0, lint.stdout + lint.stderr
        for mode, sets in STORAGE_SETS.items():
            objects = render(corpus_chart, files, sets)
            validate_strict(objects)
            steps = yaml.safe_load((corpus_chart / "values.yaml").read_text())["steps"]
            assert len(by_kind(objects, "Deployment")) == len(steps), mode
    package_chart(corpus_chart, corpus_chart.parent / "repo", helm=helm)
    assert (corpus_chart.parent / "repo" / "index.yaml").is_file()


# --------------------------------------------------------------------------- packaging


def test_package_and_repo_index(charts: dict[str, Path], tmp_path: Path, helm: str) -> None:
    repo = tmp_path / "repo"
    tgz = package_chart(charts["diamond"], repo, "https://charts.example.com/jup2kub", helm=helm)
    assert tgz == repo / "diamond-0.1.0.tgz" and tgz.is_file()
    index = yaml.safe_load((repo / "index.yaml").read_text())
    (entry,) = index["entries"]["diamond"]
    assert entry["version"] == "0.1.0"
    assert entry["urls"] == ["https://charts.example.com/jup2kub/diamond-0.1.0.tgz"]
    assert entry["kubeVersion"] == ">=1.27.0-0"
    shown = yaml.safe_load(run_helm("show", "values", str(tgz)).stdout)
    assert shown == yaml.safe_load((charts["diamond"] / "values.yaml").read_text())
    listing = run_helm(
        "template", "rel", str(tgz), "-f", str(charts["diamond"] / "values-dev.yaml")
    ).stdout
    assert any(d and d["kind"] == "StatefulSet" for d in yaml.safe_load_all(listing))
    # a second chart lands in the same index
    package_chart(charts["linear"], repo, "https://charts.example.com/jup2kub", helm=helm)
    index = yaml.safe_load((repo / "index.yaml").read_text())
    assert sorted(index["entries"]) == ["diamond", "linear-analysis"]


def test_package_rejects_a_non_chart(tmp_path: Path, helm: str) -> None:
    with pytest.raises(UsageError):
        package_chart(tmp_path, tmp_path / "repo", helm=helm)


def test_topic_names_are_the_runtimes(tmp_path: Path) -> None:
    """The chart's topics and consumer groups are the ones the runtime derives for itself."""
    from jup2kub_runtime.contract import topics as runtime

    nb = _notebook(tmp_path, GRAPHS["diamond"])
    files = render_chart(plan_of(GRAPHS["diamond"], nb, name="p-1"))
    values = yaml.safe_load(files["values.yaml"])
    assert values["topics"]["runs"] == runtime.runs_topic("p-1")
    assert values["topics"]["status"] == runtime.status_topic("p-1")
    assert values["topics"]["deadLetter"] == runtime.dead_letter_topic("p-1")
    for step, cfg in values["steps"].items():
        assert cfg["consumerGroup"] == runtime.consumer_group("p-1", step)
    assert values["steps"]["join"]["inputTopics"] == [
        runtime.edge_topic("p-1", "left", "join"),
        runtime.edge_topic("p-1", "right", "join"),
    ]


def test_relative_output_paths(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    nb = _notebook(tmp_path, GRAPHS["single"])
    monkeypatch.chdir(tmp_path)
    write_chart(plan_of(GRAPHS["single"], nb), Path("charts/../chart"))
    assert (tmp_path / "chart" / "Chart.yaml").is_file()
    monkeypatch.chdir(tmp_path / "chart")
    write_chart(plan_of(GRAPHS["single"], nb), Path("."))  # rebuilding the chart one stands in
    assert (tmp_path / "chart" / MARKER).is_file()
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted([nb.name, "chart"])


def test_guard_settings_reach_the_runtime(
    charts: dict[str, Path], write_values: Callable[..., str]
) -> None:
    values = {
        "stepDefaults": {"guardMode": "warn"},
        "steps": {"left": {"guardMode": "off", "guardMaxBytes": 1024}},
    }
    objects = render(charts["diamond"], [write_values(values)])
    deps = {
        d["metadata"]["labels"]["app.kubernetes.io/component"]: d
        for d in by_kind(objects, "Deployment").values()
    }
    assert Config.from_env(env_of(deps["left"])).guards == GuardSettings("off", 1024)
    assert Config.from_env(env_of(deps["right"])).guards == GuardSettings("warn")
    bad = write_values({"stepDefaults": {"guardMode": "loud"}})
    template = run_helm("template", "rel", str(charts["linear"]), "-f", bad, ok=False)
    assert template.returncode != 0 and "schema" in template.stderr


def test_the_step_cache_is_turned_off_per_step(
    charts: dict[str, Path], write_values: Callable[..., str]
) -> None:
    objects = render(charts["diamond"], [write_values({"steps": {"left": {"cache": False}}})])
    deps = {
        d["metadata"]["labels"]["app.kubernetes.io/component"]: d
        for d in by_kind(objects, "Deployment").values()
    }
    assert not cache_enabled(env_of(deps["left"])) and cache_enabled(env_of(deps["right"]))
    assert env_of(deps["left"])["J2K_IMAGE_DIGEST"] != env_of(deps["right"])["J2K_IMAGE_DIGEST"]
    bad = write_values({"stepDefaults": {"cache": "sometimes"}})
    template = run_helm("template", "rel", str(charts["linear"]), "-f", bad, ok=False)
    assert template.returncode != 0 and "schema" in template.stderr
