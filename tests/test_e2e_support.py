"""The e2e tests' helpers that depend on the cluster's shape (one node or several), checked
without a cluster: the Kafka bootstrap list, the state claim's class and access mode, and the
containerd socket of a pod's node."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml

import e2e.support as support
from e2e.network import addresses, membership


class RecordingCluster(support.Cluster):
    """A Cluster whose kubectl answers from canned objects and records what it applies."""

    def __init__(self, answer: dict[str, Any] | None = None) -> None:
        super().__init__(kubeconfig=None, own=True, busybox="busybox")
        self.answer = answer or {}
        self.applied: list[dict[str, Any]] = []

    def kubectl(
        self, *args: str, check: bool = True, timeout: float = 180, input_text: str | None = None
    ) -> subprocess.CompletedProcess[str]:
        if input_text is not None:
            self.applied.append(yaml.safe_load(input_text))
        return subprocess.CompletedProcess(list(args), 0, json.dumps(self.answer), "")


def _statefulset(replicas: int) -> dict[str, Any]:
    return {
        "items": [
            {
                "metadata": {"name": "rel-p-kafka"},
                "spec": {"serviceName": "rel-p-kafka-headless", "replicas": replicas},
            }
        ]
    }


@pytest.mark.parametrize("brokers", [1, 3])
def test_the_bootstrap_list_names_every_broker(brokers: int) -> None:
    servers = RecordingCluster(_statefulset(brokers)).kafka_bootstrap("ns")
    assert servers.split(",") == [
        f"rel-p-kafka-{i}.rel-p-kafka-headless.ns.svc.cluster.local:9092" for i in range(brokers)
    ]


@pytest.mark.parametrize(
    ("nodes", "state_class", "expected"),
    [
        (1, "", (None, "ReadWriteOnce")),
        (3, "", ("j2k-shared", "ReadWriteMany")),
        (1, "efs-sc", ("efs-sc", "ReadWriteMany")),
    ],
)
def test_the_state_claim_is_shared_when_steps_may_run_on_several_nodes(
    monkeypatch: pytest.MonkeyPatch, nodes: int, state_class: str, expected: tuple[Any, str]
) -> None:
    monkeypatch.setattr(support, "default_node_count", lambda: nodes)
    monkeypatch.setenv("J2K_E2E_STATE_CLASS", state_class)
    cluster = RecordingCluster()
    assert cluster.state_claim("ns", "512Mi") == "state"
    (claim,) = cluster.applied
    spec = claim["spec"]
    assert (spec.get("storageClassName"), spec["accessModes"][0]) == expected
    assert spec["resources"]["requests"]["storage"] == "512Mi"
    # given explicitly, class and access mode win
    cluster.state_claim("ns", storage_class="standard", access="ReadWriteOnce")
    assert cluster.applied[1]["spec"]["storageClassName"] == "standard"
    assert cluster.applied[1]["spec"]["accessModes"] == ["ReadWriteOnce"]


def test_a_pods_node_gives_its_containerd_socket(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    single = tmp_path / "containerd" / "containerd.sock"
    monkeypatch.setattr(addresses, "STATE", tmp_path)
    monkeypatch.setattr(support, "CTRD_SOCK", single)
    monkeypatch.setattr(membership, "NODES_FILE", tmp_path / "nodes.json")
    assert support.containerd_socket(addresses.NODE_NAME) == single  # one node
    (tmp_path / "nodes.json").write_text(
        json.dumps(dict.fromkeys(["j2k-node-1", "j2k-node-2"], "up"))
    )
    own = tmp_path / "nodes" / "j2k-node-2" / "containerd" / "containerd.sock"
    assert support.containerd_socket("j2k-node-2") == single  # no socket of its own (yet)
    own.parent.mkdir(parents=True)
    own.touch()
    assert support.containerd_socket("j2k-node-2") == own
    assert support.containerd_socket("elsewhere") == single
