"""The generated chart's Kafka on a real cluster, before any step image is involved.

The chart is installed with every step scaled to 0, so only the Kafka StatefulSet, its
post-install topics Job and the shared state volume run. On the harness's cluster the Kafka
image is the locally built ``apache/kafka`` (e2e/images/kafka.py): the chart must start it
unchanged, through its real probes, and Kafka must come back on its volume when its pod dies.
"""

from __future__ import annotations

import re
import shutil
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import yaml

from e2e.support import REPO, Cluster, helm

NOTEBOOK = REPO / "tests" / "corpus" / "sales_markers.ipynb"
RELEASE = "e2e"


@pytest.fixture(scope="module")
def chart(tmp_path_factory: pytest.TempPathFactory) -> Path:
    jup2kub = shutil.which("jup2kub")
    if not jup2kub:
        pytest.skip("jup2kub is not installed (bash e2e/run.sh installs it)")
    out = tmp_path_factory.mktemp("chart") / "out"
    subprocess.run(
        [
            jup2kub,
            "build",
            str(NOTEBOOK),
            "-o",
            str(out),
            "--no-images",
            "--kafka-nodes",
            "1",
            "--replicas",
            "1",
        ],
        check=True,
        timeout=300,
    )
    return out


@pytest.fixture
def state_claim(cluster: Cluster, namespace: str) -> str:
    """A claim of the cluster's default StorageClass for the chart's shared state."""
    return cluster.state_claim(namespace)


def e2e_values(tmp: Path, claim: str, **extra: object) -> Path:
    values: dict[str, object] = {
        "stepDefaults": {"replicas": 0},
        "storage": {"mode": "existingClaim", "existingClaim": claim},
        **extra,
    }
    path = tmp / "e2e-values.yaml"
    path.write_text(yaml.safe_dump(values))
    return path


@pytest.fixture
def kafka_release(
    cluster: Cluster, namespace: str, chart: Path, state_claim: str, tmp_path: Path
) -> Iterator[str]:
    helm(
        cluster,
        "install",
        RELEASE,
        str(chart),
        "-n",
        namespace,
        "-f",
        str(chart / "values-dev.yaml"),
        "-f",
        str(e2e_values(tmp_path, state_claim)),
        "--wait",
        "--timeout",
        "10m",
    )
    yield namespace
    helm(cluster, "uninstall", RELEASE, "-n", namespace, "--wait", check=False)


def _kafka_pod(cluster: Cluster, ns: str) -> str:
    return cluster.kubectl(
        "-n",
        ns,
        "get",
        "pods",
        "-l",
        "app.kubernetes.io/component=kafka",
        "-o",
        "jsonpath={.items[0].metadata.name}",
    ).stdout


def _kafka(cluster: Cluster, ns: str, script: str) -> str:
    # tools log to stderr at WARN (the pod's KAFKA_LOG4J_OPTS is the broker's INFO config)
    tools = "KAFKA_LOG4J_OPTS=-Dlog4j.configuration=file:/opt/kafka/config/tools-log4j.properties"
    return cluster.kubectl(
        "-n",
        ns,
        "exec",
        _kafka_pod(cluster, ns),
        "--",
        "sh",
        "-c",
        f"export {tools} KAFKA_HEAP_OPTS=-Xmx128m; {script}",
        timeout=300,
    ).stdout


@pytest.mark.parametrize("tool", ["helm", "jup2kub deploy"])
def test_values_typo_rejected_before_anything_is_created(
    cluster: Cluster, namespace: str, chart: Path, tmp_path: Path, tool: str
) -> None:
    typo = tmp_path / "typo.yaml"
    typo.write_text(yaml.safe_dump({"stepDefaults": {"replicsa": 2}}))
    if tool == "helm":
        r = helm(
            cluster,
            "install",
            RELEASE,
            str(chart),
            "-n",
            namespace,
            "-f",
            str(chart / "values-dev.yaml"),
            "-f",
            str(typo),
            check=False,
        )
        assert r.returncode != 0
    else:
        r = subprocess.run(
            [
                "jup2kub",
                "deploy",
                str(chart),
                "--release",
                RELEASE,
                "-n",
                namespace,
                "-f",
                str(chart / "values-dev.yaml"),
                "-f",
                str(typo),
            ],
            capture_output=True,
            text=True,
            timeout=300,
            env=cluster.env(),
        )
        assert r.returncode == 2, r.stdout + r.stderr
        assert "nothing was created" in r.stderr
    assert "replicsa" in r.stderr, r.stderr
    assert helm(cluster, "list", "-n", namespace, "-q").stdout.strip() == ""
    left = cluster.kubectl(
        "-n", namespace, "get", "statefulsets,deployments,jobs,pvc,services,secrets", "-o", "name"
    ).stdout.split()
    assert left == [], left


def test_chart_kafka_starts_and_survives_pod_deletion(cluster: Cluster, kafka_release: str) -> None:
    ns = kafka_release
    topics = _kafka(cluster, ns, "kafka-topics.sh --bootstrap-server localhost:9092 --list")
    pipeline_topics = {t for t in topics.split() if t.startswith("sales-markers.")}
    assert "sales-markers.runs" in pipeline_topics, topics
    _kafka(
        cluster,
        ns,
        "kafka-topics.sh --bootstrap-server localhost:9092 --create --topic e2e-marker "
        "--partitions 1 && echo marker-1 | kafka-console-producer.sh "
        "--bootstrap-server localhost:9092 --topic e2e-marker",
    )
    old = _kafka_pod(cluster, ns)
    old_uid = cluster.kubectl("-n", ns, "get", "pod", old, "-o", "jsonpath={.metadata.uid}").stdout
    cluster.kubectl("-n", ns, "delete", "pod", old, "--wait=true", timeout=300)
    deadline = time.monotonic() + 600
    while time.monotonic() < deadline:
        r = cluster.kubectl(
            "-n",
            ns,
            "get",
            "pod",
            old,
            "-o",
            "jsonpath={.metadata.uid} {.status.containerStatuses[0].ready}",
            check=False,
        )
        if (
            r.returncode == 0
            and r.stdout.split()
            and r.stdout.split()[0] != old_uid
            and r.stdout.endswith("true")
        ):
            break
        time.sleep(3)
    else:
        raise AssertionError("the Kafka pod did not come back Ready")
    after = _kafka(cluster, ns, "kafka-topics.sh --bootstrap-server localhost:9092 --list")
    assert pipeline_topics <= set(after.split()), after
    msg = _kafka(
        cluster,
        ns,
        "kafka-console-consumer.sh --bootstrap-server localhost:9092 "
        "--topic e2e-marker --from-beginning --max-messages 1 --timeout-ms 60000",
    )
    assert "marker-1" in msg


def test_deploy_fails_fast_naming_a_pod_whose_image_is_missing(
    cluster: Cluster, namespace: str, chart: Path, state_claim: str, tmp_path: Path
) -> None:
    """`jup2kub deploy` of a chart whose step images were never built or loaded: it does not
    sit out the whole timeout, it names the pod, the step and the image problem."""
    values = tmp_path / "one-replica.yaml"
    values.write_text(
        yaml.safe_dump(
            {
                "stepDefaults": {"replicas": 1},
                "storage": {"mode": "existingClaim", "existingClaim": state_claim},
            }
        )
    )
    r = subprocess.run(
        [
            "jup2kub",
            "deploy",
            str(chart),
            "--release",
            RELEASE,
            "-n",
            namespace,
            "-f",
            str(chart / "values-dev.yaml"),
            "-f",
            str(values),
            "--timeout",
            "20m",
        ],
        capture_output=True,
        text=True,
        timeout=1500,
        env=cluster.env(),
    )
    assert r.returncode == 1, r.stdout + r.stderr
    assert "cannot be pulled" in r.stderr or "not on the node" in r.stderr, r.stderr
    assert re.search(
        r"pod \S+ \(step \S+\) is (ErrImagePull|ImagePullBackOff|"
        r"ErrImageNeverPull)",
        r.stderr,
    ), r.stderr
    assert "Traceback" not in r.stderr
    assert "did not become ready within" not in r.stderr  # the pod state, not the timeout
    helm(cluster, "uninstall", RELEASE, "-n", namespace, "--wait", check=False)
