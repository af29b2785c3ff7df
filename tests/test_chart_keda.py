"""Autoscaling on Kafka lag (issue 18): ``autoscaling.mode: kafkaLag`` renders a KEDA
ScaledObject with the Kafka scaler instead of the CPU HorizontalPodAutoscaler, never both for one
Deployment. KEDA's CRDs are not on a plain cluster, so the rendered objects are validated here
against KEDA's published CRD schema (from its Go module, tests/setup.d/27-keda-crd.sh), strictly:
a field the schema does not define fails too."""

from __future__ import annotations

import copy
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

import jsonschema
import pytest
import yaml

from jup2kub.api import inspect_notebook
from jup2kub.chart.options import ChartOptions
from jup2kub.chart.write import write_chart
from jup2kub.plan import plan_pipeline
from tests.support.crds import validate
from tests.test_chart import by_kind, render, run_helm

MakeNb = Callable[..., Path]
KAFKA_LAG = [
    "stepDefaults.autoscaling.enabled=true",
    "stepDefaults.autoscaling.mode=kafkaLag",
    "stepDefaults.autoscaling.minReplicas=1",
    "stepDefaults.autoscaling.maxReplicas=5",
    "stepDefaults.autoscaling.lagThreshold=3",
]


def validate_scaledobject(obj: Mapping[str, Any]) -> None:
    """Against KEDA's ScaledObject CRD (tests/setup.d/27-keda-crd.sh), unknown fields refused."""
    validate("J2K_KEDA_CRD", "v1alpha1", obj)


@pytest.fixture(scope="module")
def map_chart(tmp_path_factory: pytest.TempPathFactory) -> Path:
    import nbformat

    from tests.support.notebooks import build_notebook

    tmp = tmp_path_factory.mktemp("keda")
    nb = tmp / "scores.ipynb"
    cells = [
        "#| step: load\nxs = list(range(64))",
        "#| step: score\n#| map: true\nys = [x * x for x in xs]",
        "#| step: report\nprint(sum(ys))",
    ]
    nb.write_text(nbformat.writes(build_notebook(cells)))
    return write_chart(plan_pipeline(inspect_notebook(nb)), tmp / "out", ChartOptions())


def test_a_map_step_names_its_elements_topic(map_chart: Path) -> None:
    values = yaml.safe_load((map_chart / "values.yaml").read_text())
    assert values["steps"]["score"]["mapTopic"] == "scores.map.score"
    assert "mapTopic" not in values["steps"]["load"]
    assert values["stepDefaults"]["autoscaling"]["mode"] == "cpu"


def test_kafka_lag_renders_valid_scaledobjects_and_no_hpa(map_chart: Path) -> None:
    objects = render(map_chart, sets=KAFKA_LAG)
    assert by_kind(objects, "HorizontalPodAutoscaler") == {}
    scaled = by_kind(objects, "ScaledObject")
    deployments = by_kind(objects, "Deployment")
    steps = {
        n for n, d in deployments.items() if d["metadata"]["labels"]["jup2kub.io/role"] == "step"
    }
    assert {s["spec"]["scaleTargetRef"]["name"] for s in scaled.values()} == steps
    for obj in scaled.values():
        validate_scaledobject(obj)
        spec = obj["spec"]
        assert (spec["minReplicaCount"], spec["maxReplicaCount"]) == (1, 5)
        assert "replicas" not in deployments[spec["scaleTargetRef"]["name"]]["spec"]
        for trigger in spec["triggers"]:
            assert trigger["type"] == "kafka"
            assert trigger["metadata"]["lagThreshold"] == "3"


def test_the_map_step_scales_on_its_chunks_too(map_chart: Path) -> None:
    objects = render(map_chart, sets=KAFKA_LAG)
    [score] = [
        o
        for o in by_kind(objects, "ScaledObject").values()
        if o["metadata"]["name"].endswith("score")
    ]
    topics = {
        (t["metadata"]["topic"], t["metadata"]["consumerGroup"]) for t in score["spec"]["triggers"]
    }
    assert topics == {
        ("scores.edge.load.score", "scores.score"),
        ("scores.map.score", "scores.score.elements"),
    }
    deployment = by_kind(objects, "Deployment")[score["spec"]["scaleTargetRef"]["name"]]
    env = {
        e["name"]: e.get("value")
        for e in deployment["spec"]["template"]["spec"]["containers"][0]["env"]
    }
    # every replica can own a partition of every topic, the elements topic included
    assert int(env["J2K_TOPIC_PARTITIONS"]) >= score["spec"]["maxReplicaCount"]


def test_one_step_on_lag_the_others_on_cpu_never_both(map_chart: Path) -> None:
    objects = render(
        map_chart,
        sets=[
            "stepDefaults.autoscaling.enabled=true",
            "steps.score.autoscaling.mode=kafkaLag",
        ],
    )
    hpas = {
        o["spec"]["scaleTargetRef"]["name"]
        for o in by_kind(objects, "HorizontalPodAutoscaler").values()
    }
    scaled = {
        o["spec"]["scaleTargetRef"]["name"] for o in by_kind(objects, "ScaledObject").values()
    }
    assert len(scaled) == 1 and next(iter(scaled)).endswith("score")
    assert hpas and not hpas & scaled
    assert len(hpas | scaled) == 3


def test_cpu_mode_is_unchanged(map_chart: Path) -> None:
    objects = render(map_chart, sets=["stepDefaults.autoscaling.enabled=true"])
    assert by_kind(objects, "ScaledObject") == {}
    assert len(by_kind(objects, "HorizontalPodAutoscaler")) == 3


@pytest.mark.parametrize(
    ("setting", "complaint"),
    [
        ("stepDefaults.autoscaling.mode=memory", "mode"),
        ("steps.score.autoscaling.lagThreshold=0", "lagThreshold"),
    ],
)
def test_the_schema_refuses_bad_settings(map_chart: Path, setting: str, complaint: str) -> None:
    proc = run_helm("template", "rel", str(map_chart), "--set", setting, ok=False)
    assert proc.returncode != 0
    assert complaint in proc.stderr


def test_the_validation_catches_a_wrong_field() -> None:
    good = {
        "apiVersion": "keda.sh/v1alpha1",
        "kind": "ScaledObject",
        "metadata": {"name": "x"},
        "spec": {
            "scaleTargetRef": {"name": "x"},
            "triggers": [{"type": "kafka", "metadata": {"topic": "t"}}],
        },
    }
    validate_scaledobject(good)
    bad = copy.deepcopy(good)
    bad["spec"]["maxReplicas"] = 3  # the HPA's name, not KEDA's maxReplicaCount
    with pytest.raises(jsonschema.ValidationError):
        validate_scaledobject(bad)


def test_helm_lint_strict_with_kafka_lag(map_chart: Path) -> None:
    args = ["lint", "--strict", str(map_chart)]
    for setting in KAFKA_LAG:
        args += ["--set", setting]
    proc = run_helm(*args, ok=False)
    assert proc.returncode == 0, proc.stdout + proc.stderr
