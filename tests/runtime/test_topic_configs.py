"""Topic-level settings the runtime creates its topics with: ``min.insync.replicas`` follows the
replication factor (2 from 3 replicas on), or J2K_TOPIC_MIN_INSYNC_REPLICAS; checked as logic,
and on a real broker by DescribeConfigs (a single broker takes replication factor 1 only, so the
plumbing is shown with an explicit min.insync.replicas of 1)."""

from __future__ import annotations

import threading
import uuid
from pathlib import Path

import pytest

from jup2kub_runtime.contract.config import Config, min_insync_replicas
from jup2kub_runtime.contract.errors import ConfigError
from jup2kub_runtime.contract.spec import Cell, StepSpec
from jup2kub_runtime.contract.topics import elements_topic
from jup2kub_runtime.serving.map_distribution import ElementWorker
from jup2kub_runtime.serving.transport import Transport
from jup2kub_runtime.storage.state_store import StateStore
from tests.support.kafka_broker import KafkaBroker, topic_overrides

ENV = {
    "J2K_BOOTSTRAP_SERVERS": "k:9092",
    "J2K_PIPELINE": "p",
    "J2K_STEP": "s",
    "J2K_INPUT_TOPICS": "p.runs",
    "J2K_STATE_PATH": "/unused",
}


@pytest.mark.parametrize(
    ("replication", "expected"), [(1, 0), (2, 0), (3, 2), (4, 2), (5, 2), (7, 2)]
)
def test_min_insync_replicas_follow_the_replication_factor(replication: int, expected: int) -> None:
    assert min_insync_replicas(replication) == expected
    cfg = Config.from_env({**ENV, "J2K_TOPIC_REPLICATION_FACTOR": str(replication)})
    assert cfg.topic_min_insync_replicas == expected
    assert cfg.topic_configs == ({"min.insync.replicas": str(expected)} if expected else {})
    # the environment a local runner derives says the same
    assert Config.from_env(cfg.to_env()) == cfg
    direct = Config.for_step("p", "s", [], [], "k:9092", topic_replication_factor=replication)
    assert direct.topic_min_insync_replicas == expected


def test_an_explicit_min_insync_replicas_wins() -> None:
    three = {**ENV, "J2K_TOPIC_REPLICATION_FACTOR": "3"}
    assert Config.from_env({**three, "J2K_TOPIC_MIN_INSYNC_REPLICAS": "3"}).topic_configs == {
        "min.insync.replicas": "3"
    }
    # 0: the broker's default, nothing set on the topic
    assert Config.from_env({**three, "J2K_TOPIC_MIN_INSYNC_REPLICAS": "0"}).topic_configs == {}
    assert Config.from_env({**ENV, "J2K_TOPIC_MIN_INSYNC_REPLICAS": "1"}).topic_configs == {
        "min.insync.replicas": "1"
    }


@pytest.mark.parametrize("bad", ["4", "-1", "two"])
def test_a_bad_min_insync_replicas_names_the_variable(bad: str) -> None:
    env = {**ENV, "J2K_TOPIC_REPLICATION_FACTOR": "3", "J2K_TOPIC_MIN_INSYNC_REPLICAS": bad}
    with pytest.raises(ConfigError, match="J2K_TOPIC_MIN_INSYNC_REPLICAS"):
        Config.from_env(env)


def _config(broker: KafkaBroker, pipeline: str, tmp_path: Path, **env: str) -> Config:
    return Config.from_env(
        {
            **ENV,
            "J2K_BOOTSTRAP_SERVERS": broker.bootstrap,
            "J2K_PIPELINE": pipeline,
            "J2K_INPUT_TOPICS": f"{pipeline}.runs",
            "J2K_STATE_PATH": str(tmp_path),
            "J2K_TOPIC_PARTITIONS": "1",
            **env,
        }
    )


def test_the_runtime_creates_its_topics_with_min_insync_replicas(
    broker: KafkaBroker, tmp_path: Path
) -> None:
    pipeline = f"isr-{uuid.uuid4().hex[:8]}"
    cfg = _config(broker, pipeline, tmp_path, J2K_TOPIC_MIN_INSYNC_REPLICAS="1")
    topics = [f"{pipeline}.runs", f"{pipeline}.status"]
    Transport(cfg).ensure_topics(topics, timeout=60)
    for topic in topics:
        assert topic_overrides(broker.bootstrap, topic) == {"min.insync.replicas": "1"}
    # a map step's elements topic too
    spec = StepSpec(pipeline=pipeline, step="s", cells=[Cell(1, "x = 1")])
    ElementWorker(cfg, spec, StateStore(tmp_path), threading.Event()).ensure_topic()
    elements = elements_topic(pipeline, "s")
    assert topic_overrides(broker.bootstrap, elements) == {"min.insync.replicas": "1"}

    # replication factor 1 and nothing explicit: the topic keeps the broker's default
    plain = f"isr-{uuid.uuid4().hex[:8]}"
    Transport(_config(broker, plain, tmp_path)).ensure_topics([f"{plain}.runs"], timeout=60)
    assert "min.insync.replicas" not in topic_overrides(broker.bootstrap, f"{plain}.runs")
