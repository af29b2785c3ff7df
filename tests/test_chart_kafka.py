"""The chart's Kafka start script and topics Job, run for real against Apache Kafka.

No cluster is needed: the rendered ConfigMap (``server.properties`` + ``start.sh``) and the
Job's script run on this machine against a ``/opt/kafka``-layout directory built from the
official jars (Maven Central) with the distribution's script names. The pod's DNS name is
resolved by a JVM hosts file, and the ports are free loopback ports set through values. This
proves the KRaft configuration, the storage format with ``--ignore-formatted`` (restart on the
same volume), idempotent topic creation and partition growth on a real broker.
"""

from __future__ import annotations

import os
import re
import shutil
import signal
import socket
import subprocess
import time
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

import pytest
import yaml

from jup2kub.chart.options import ChartOptions
from jup2kub.chart.write import write_chart
from tests.support.graphs import plan_of
from tests.support.kafka_broker import kafka_libs

RUN_CLASS = """#!/bin/sh
# Minimal kafka-run-class.sh: the distribution's contract (KAFKA_HEAP_OPTS, KAFKA_OPTS, LOG_DIR).
base_dir=$(cd "$(dirname "$0")/.." && pwd)
main="$1"; shift
LOG_DIR="${LOG_DIR:-$base_dir/logs}"
mkdir -p "$LOG_DIR"
# shellcheck disable=SC2086
exec java ${KAFKA_HEAP_OPTS:--Xmx256M} -XX:+UseSerialGC -XX:TieredStopAtLevel=1 ${KAFKA_OPTS:-} \\
  -Dkafka.logs.dir="$LOG_DIR" \\
  ${KAFKA_LOG4J_OPTS:-"-Dlog4j.configuration=file:$base_dir/config/log4j.properties"} \\
  -cp "$base_dir/libs/*" "$main" "$@"
"""
SCRIPTS = {
    "kafka-storage.sh": "kafka.tools.StorageTool",
    "kafka-server-start.sh": "kafka.Kafka",
    "kafka-topics.sh": "org.apache.kafka.tools.TopicCommand",
}
LOG4J = """log4j.rootLogger=WARN, stderr
log4j.logger.kafka.server.KafkaServer=INFO
log4j.logger.kafka.server.KafkaRaftServer=INFO
log4j.logger.kafka.server.BrokerServer=INFO
log4j.appender.stderr=org.apache.log4j.ConsoleAppender
log4j.appender.stderr.Target=System.err
log4j.appender.stderr.layout=org.apache.log4j.PatternLayout
log4j.appender.stderr.layout.ConversionPattern=[%d] %p %m (%c)%n
"""


@pytest.fixture(scope="module")
def kafka_home(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A directory with the /opt/kafka layout: bin/ scripts, libs/, config/."""
    if not (shutil.which("java") and shutil.which("mvn")):
        pytest.skip("needs java and mvn (tests/setup.d/30-kafka.sh installs them)")
    libs = kafka_libs()  # tests/setup.d/30-kafka.sh's, shared with the runtime tests' broker
    home = tmp_path_factory.mktemp("opt") / "kafka"
    (home / "bin").mkdir(parents=True)
    (home / "config").mkdir()
    (home / "libs").symlink_to(libs)
    (home / "config" / "log4j.properties").write_text(LOG4J)
    run_class = home / "bin" / "kafka-run-class.sh"
    run_class.write_text(RUN_CLASS)
    for name, main in SCRIPTS.items():
        (home / "bin" / name).write_text(
            f'#!/bin/sh\nexec "$(dirname "$0")/kafka-run-class.sh" {main} "$@"\n'
        )
    for script in (home / "bin").iterdir():
        script.chmod(0o755)
    return home


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _render(chart: Path, *sets: str) -> list[dict[str, Any]]:
    helm = os.environ.get("J2K_HELM") or shutil.which("helm")
    if not helm:
        from test_chart import _helm_path

        helm = _helm_path()
    args = [
        helm,
        "template",
        "rel",
        str(chart),
        "--namespace",
        "pipelines",
        "-f",
        str(chart / "values-dev.yaml"),
    ]
    for s in sets:
        args += ["--set", s]
    out = subprocess.run(args, capture_output=True, text=True, check=True, timeout=120).stdout
    return [d for d in yaml.safe_load_all(out) if d]


def _one(objects: list[dict[str, Any]], kind: str) -> dict[str, Any]:
    """The one object of ``kind`` that is not a step's (steps have code ConfigMaps too)."""
    (found,) = [
        o
        for o in objects
        if o["kind"] == kind and o["metadata"].get("labels", {}).get("jup2kub.io/role") != "step"
    ]
    return found


def _env(container: Mapping[str, Any]) -> dict[str, str]:
    return {e["name"]: e["value"] for e in container["env"] if "value" in e}


class Node:
    """One Kafka node started by the chart's start.sh, paths mapped into a temp dir."""

    def __init__(self, work: Path, kafka_home: Path, objects: list[dict[str, Any]]) -> None:
        self.work = work
        self.kafka_home = kafka_home
        sts = _one(objects, "StatefulSet")
        cm = _one(objects, "ConfigMap")
        container = sts["spec"]["template"]["spec"]["containers"][0]
        mounts = {m["name"]: m["mountPath"] for m in container["volumeMounts"]}
        self.data = work / "data"
        self.data.mkdir()
        (self.data / "lost+found").mkdir()  # as on a fresh ext4 volume
        self.mapping = {
            "/opt/kafka": str(kafka_home),
            mounts["config"]: str(work / "config"),
            mounts["data"]: str(self.data),
            "/tmp/": f"{work}/tmp/",
        }
        (work / "config").mkdir()
        (work / "tmp").mkdir()
        for name, text in cm["data"].items():
            (work / "config" / name).write_text(self.map(text))
        self.command = [self.map(c) for c in container["command"]]
        pod = f"{sts['metadata']['name']}-0"
        env = {k: self.map(v) for k, v in _env(container).items()}
        self.hosts = work / "hosts"
        fqdn = f"{pod}.{env['KAFKA_HEADLESS_SERVICE']}.pipelines.svc.{env['CLUSTER_DOMAIN']}"
        self.hosts.write_text(f"127.0.0.1 localhost {socket.gethostname()} {fqdn}\n")
        self.env = {
            "PATH": os.environ["PATH"],
            "HOME": str(work),
            **env,
            "POD_NAME": pod,
            "POD_NAMESPACE": "pipelines",
            "KAFKA_HEAP_OPTS": "-Xms128m -Xmx384m",
            "KAFKA_OPTS": f"-Djdk.net.hosts.file={self.hosts}",
        }
        self.proc: subprocess.Popen[bytes] | None = None
        self.log = work / "kafka.log"

    def map(self, text: str) -> str:
        """Pod paths to temp paths, in one pass (so a mapped path is never mapped again)."""
        pattern = "|".join(re.escape(k) for k in sorted(self.mapping, key=len, reverse=True))
        return re.sub(pattern, lambda m: self.mapping[m.group(0)], text)

    def start(self) -> None:
        with self.log.open("ab") as log:
            self.proc = subprocess.Popen(
                self.command,
                env=self.env,
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )

    def wait_ready(self, port: int, timeout: float = 120) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            assert self.proc is not None
            if self.proc.poll() is not None:
                pytest.fail(f"Kafka exited with {self.proc.returncode}:\n{self.log.read_text()}")
            with socket.socket() as sock:
                if sock.connect_ex(("127.0.0.1", port)) == 0:
                    return
            time.sleep(0.5)
        pytest.fail(f"Kafka did not listen on {port}:\n{self.log.read_text()}")

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGTERM)
            try:
                self.proc.wait(timeout=60)
            except subprocess.TimeoutExpired:
                os.killpg(self.proc.pid, signal.SIGKILL)
                self.proc.wait(timeout=30)
        self.proc = None


@pytest.fixture
def node_factory(tmp_path: Path, kafka_home: Path) -> Iterator[Any]:
    nodes: list[Node] = []

    def make(objects: list[dict[str, Any]]) -> Node:
        node = Node(tmp_path, kafka_home, objects)
        nodes.append(node)
        return node

    yield make
    for node in nodes:
        node.stop()


def _run_topics_job(node: Node, job: Mapping[str, Any], **overrides: str) -> str:
    container = job["spec"]["template"]["spec"]["containers"][0]
    env = {**node.env, **{k: node.map(v) for k, v in _env(container).items()}, **overrides}
    env["KAFKA_HEAP_OPTS"] = "-Xms64m -Xmx256m"
    proc = subprocess.run(
        [node.map(c) for c in container["command"]],
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
        check=False,
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr
    return proc.stdout


def _partitions(node: Node, bootstrap: str) -> dict[str, int]:
    proc = subprocess.run(
        [
            str(node.kafka_home / "bin" / "kafka-topics.sh"),
            "--bootstrap-server",
            bootstrap,
            "--describe",
            "--exclude-internal",
        ],
        env={**node.env, "KAFKA_HEAP_OPTS": "-Xmx256m"},
        capture_output=True,
        text=True,
        timeout=300,
        check=True,
    )
    counts = {}
    for line in proc.stdout.splitlines():
        match = re.search(r"Topic:\s*(\S+).*PartitionCount:\s*(\d+)", line)
        if match:
            counts[match.group(1)] = int(match.group(2))
    return counts


def _topic_configs(node: Node, bootstrap: str, topic: str) -> dict[str, str]:
    """The configs of ``topic`` that differ from Kafka's defaults (kafka-topics.sh --describe,
    its Configs field): set on the topic, or in the broker's server.properties."""
    proc = subprocess.run(
        [
            str(node.kafka_home / "bin" / "kafka-topics.sh"),
            "--bootstrap-server",
            bootstrap,
            "--describe",
            "--topic",
            topic,
        ],
        env={**node.env, "KAFKA_HEAP_OPTS": "-Xmx256m"},
        capture_output=True,
        text=True,
        timeout=300,
        check=True,
    )
    match = re.search(r"Configs:[ \t]*(\S*)", proc.stdout)
    assert match, proc.stdout
    pairs = [item.split("=", 1) for item in match.group(1).split(",") if "=" in item]
    return {k: v for k, v in pairs}


@pytest.mark.timeout(900)
def test_kafka_starts_from_the_chart_and_topics_job_is_idempotent(
    tmp_path_factory: pytest.TempPathFactory, node_factory: Any
) -> None:
    graph = {
        "steps": [
            {"name": "load", "cells": [0], "after": []},
            {"name": "fit", "cells": [1], "after": ["load"]},
        ]
    }
    tmp = tmp_path_factory.mktemp("kafka-chart")
    notebook = tmp / "kafka-smoke.ipynb"
    notebook.write_text("{}")
    chart = write_chart(plan_of(graph, notebook), tmp / "out", ChartOptions(kafka_nodes=1))
    client, controller = _free_port(), _free_port()
    objects = _render(chart, f"kafka.ports.client={client}", f"kafka.ports.controller={controller}")
    node = node_factory(objects)
    node.start()
    node.wait_ready(client)

    job = _one(objects, "Job")
    job_env = _env(job["spec"]["template"]["spec"]["containers"][0])
    bootstrap = job_env["BOOTSTRAP_SERVERS"]
    assert bootstrap.endswith(f":{client}")
    topics = job_env["TOPICS"].split()
    assert sorted(topics) == sorted(
        [
            "kafka-smoke.runs",
            "kafka-smoke.status",
            "kafka-smoke.dead-letter",
            "kafka-smoke.edge.load.fit",
        ]
    )
    partitions = int(job_env["PARTITIONS"])
    assert "topics ready" in _run_topics_job(node, job)
    counts = _partitions(node, bootstrap)
    assert {t: counts.get(t) for t in topics} == dict.fromkeys(topics, partitions)

    # one broker: the topics keep the broker's min.insync.replicas (1, from server.properties);
    # with a value (replication factor 3 renders 2), the Job sets it on the topics it creates
    assert job_env["MIN_INSYNC_REPLICAS"] == ""
    assert _topic_configs(node, bootstrap, topics[0]).get("min.insync.replicas", "1") == "1"
    _run_topics_job(node, job, TOPICS="kafka-smoke.isr", MIN_INSYNC_REPLICAS="2")
    assert _topic_configs(node, bootstrap, "kafka-smoke.isr")["min.insync.replicas"] == "2"

    # again, with more partitions (an upgrade that raised the replicas): topics grow, none fail
    _run_topics_job(node, job, PARTITIONS=str(partitions + 2))
    counts = _partitions(node, bootstrap)
    assert {t: counts.get(t) for t in topics} == dict.fromkeys(topics, partitions + 2)

    # a restart on the same volume: format is skipped, the topics are still there
    node.stop()
    node.start()
    node.wait_ready(client)
    counts = _partitions(node, bootstrap)
    assert {t: counts.get(t) for t in topics} == dict.fromkeys(topics, partitions + 2)
    assert (node.data / "lost+found").is_dir()
    log_dir = node.data / "logs"
    assert (log_dir / "meta.properties").is_file()
    meta = (log_dir / "meta.properties").read_text()
    sts_env = _env(_one(objects, "StatefulSet")["spec"]["template"]["spec"]["containers"][0])
    assert f"cluster.id={sts_env['CLUSTER_ID']}" in meta
    assert "node.id=0" in meta
    # the chart's log4j configuration: everything on stdout, nothing in LOG_DIR
    assert "Kafka Server started" in node.log.read_text()
    assert not list((node.work / "tmp" / "kafka-logs").glob("*.log"))
