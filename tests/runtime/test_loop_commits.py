"""Offsets are committed only for fully handled messages (results stored, every produced
message acknowledged), in consumption order per partition; edge messages spread evenly."""

from __future__ import annotations

from collections import Counter
from pathlib import Path
from typing import Any

from kafka import TopicPartition

from jup2kub_runtime.contract.config import Config
from jup2kub_runtime.contract.spec import Cell, StepSpec
from jup2kub_runtime.serving.health import Health
from jup2kub_runtime.serving.loop import MAX_IN_FLIGHT, Job, StepLoop
from jup2kub_runtime.serving.transport import Lag, Transport
from jup2kub_runtime.storage.state_store import StateStore

ENV = {
    "J2K_BOOTSTRAP_SERVERS": "k:9092",
    "J2K_PIPELINE": "p",
    "J2K_STEP": "s",
    "J2K_INPUT_TOPICS": "p.runs",
    "J2K_OUTPUT_TOPICS": "p.edge.s.t,p.edge.s.u",
    "J2K_STATE_PATH": "/unused",
}
T0, T1 = TopicPartition("p.runs", 0), TopicPartition("p.runs", 1)


class Record:
    def __init__(self, tp: TopicPartition, offset: int) -> None:
        self.topic, self.partition, self.offset = tp.topic, tp.partition, offset


class FakeTransport:
    def __init__(self) -> None:
        self.async_commits: list[dict[TopicPartition, int]] = []
        self.sync_commits: list[dict[TopicPartition, int]] = []
        self.callbacks: list[Any] = []

    def commit_async(self, offsets: dict[TopicPartition, int], callback: Any) -> None:
        self.async_commits.append(dict(offsets))
        self.callbacks.append((offsets, callback))

    def commit_many(self, offsets: dict[TopicPartition, int]) -> None:
        self.sync_commits.append(dict(offsets))

    def connected(self) -> bool:
        return True


def make_loop(tmp_path: Path) -> tuple[StepLoop, FakeTransport]:
    cfg = Config.from_env({**ENV, "J2K_STATE_PATH": str(tmp_path)})
    spec = StepSpec(pipeline="p", step="s", cells=[Cell(1, "x = 1")])
    fake = FakeTransport()
    health = Health("p", "s", 60.0, lambda: True)
    return StepLoop(cfg, spec, StateStore(tmp_path), fake, health), fake  # type: ignore[arg-type]


def job(tp: TopicPartition, offset: int, *, done: bool = True, commit: bool = True) -> Job:
    j = Job(record=Record(tp, offset), tp=tp)
    j.handled.set()
    if done:
        j.commit = commit
        j.done.set()
    return j


def test_commits_follow_consumption_order_and_acknowledgements(tmp_path: Path) -> None:
    loop, fake = make_loop(tmp_path)
    first = job(T0, 5, done=False)  # stored and sent, acks pending
    loop.commits.in_flight.extend([first, job(T0, 6), job(T1, 0)])
    loop._settle()
    assert fake.async_commits == []  # nothing past an unacknowledged message
    first.commit = True
    first.done.set()
    loop._settle()
    assert fake.async_commits == [{T0: 7, T1: 1}]
    loop._settle()
    assert len(fake.async_commits) == 1  # one commit request at a time
    offsets, callback = fake.callbacks[-1]
    callback(offsets, RuntimeError("coordinator moved"))
    loop._settle()
    assert len(fake.async_commits) == 1  # retried later, not in a hot loop
    loop._commit_retry_at = 0.0
    loop._settle()
    assert fake.async_commits[-1] == {T0: 7, T1: 1}
    offsets, callback = fake.callbacks[-1]
    callback(offsets, object())  # success
    assert loop.commits.committed == {T0: 7, T1: 1}
    loop._settle()
    assert len(fake.async_commits) == 2  # nothing new to commit


def test_a_message_left_uncommitted_is_not_committed(tmp_path: Path) -> None:
    loop, fake = make_loop(tmp_path)
    loop.commits.in_flight.append(job(T0, 3, commit=False))  # abandoned while stopping
    loop._settle()
    assert fake.async_commits == []


def test_revocation_commits_the_handled_prefix_synchronously(tmp_path: Path) -> None:
    loop, fake = make_loop(tmp_path)
    pending = job(T0, 9, done=False)
    jobs = [job(T0, 7), job(T0, 8), pending, job(T0, 10), job(T1, 4)]
    loop.commits.in_flight.extend(jobs)
    loop._on_revoked({T0})
    assert fake.sync_commits == [{T0: 9}]  # 7 and 8 are done; 9 is not, so 10 waits too
    assert all(j.revoked for j in jobs[:4]) and not jobs[4].revoked
    pending.commit = True
    pending.done.set()
    loop._settle()
    assert fake.async_commits == [{T1: 5}]  # the revoked partition is no longer committed


def test_stopping_waits_for_acknowledgements_then_commits(tmp_path: Path) -> None:
    loop, fake = make_loop(tmp_path)
    late = job(T1, 2, done=False)
    loop.commits.in_flight.append(late)
    loop.stop.set()
    loop.stop_at = float("inf")  # never past the grace period here
    loop._last_poll = float("inf")
    assert loop._drain() is False
    late.commit = True
    late.done.set()
    assert loop._drain() is True
    assert {T1: 3} in fake.sync_commits or {T1: 3} in fake.async_commits


class PausingTransport(FakeTransport):
    """Tracks whether the consumer's partitions are paused, and what each poll saw."""

    def __init__(self) -> None:
        super().__init__()
        self.paused = False
        self.polls: list[bool] = []  # paused at each poll

    def pause_all(self) -> None:
        self.paused = True

    def resume_all(self) -> None:
        self.paused = False

    def poll(self, timeout_ms: int) -> list[Any]:
        self.polls.append(self.paused)
        return []

    def lag(self) -> Lag:
        return Lag(0, 0.0)


def test_partitions_paused_while_acks_back_up_are_resumed_after(tmp_path: Path) -> None:
    """A broker restart leaves many handled runs awaiting acks: the loop then polls with its
    partitions paused (membership only). Once the backlog clears it must take records again
    (it once kept them paused, and the step stalled for good)."""
    loop, _ = make_loop(tmp_path)
    fake = PausingTransport()
    loop.transport = fake  # type: ignore[assignment]
    backlog = [job(T0, i, done=False) for i in range(MAX_IN_FLIGHT)]
    loop.commits.in_flight.extend(backlog)
    loop._last_poll = 0.0
    assert loop._iterate()
    assert fake.polls == [True]  # full: a membership poll with everything paused
    for j in backlog:
        j.commit = True
        j.done.set()
    assert loop._iterate()
    assert fake.polls == [True, False]  # backlog gone: records are fetched again


class FakeProducer:
    def __init__(self) -> None:
        self.sent: list[tuple[str, int | None, bytes | None]] = []

    def partitions_for(self, topic: str) -> set[int]:
        return {0, 1, 2}

    def send(
        self,
        topic: str,
        value: bytes,
        partition: int | None = None,
        key: bytes | None = None,
        headers: list[tuple[str, bytes]] | None = None,
    ) -> None:
        self.sent.append((topic, partition, key))


def test_edge_messages_go_round_robin_status_stays_keyed() -> None:
    transport = Transport(Config.from_env(ENV))
    producer = FakeProducer()
    transport.producer = producer  # type: ignore[assignment]
    for i in range(30):
        transport.send("p.edge.s.t", {"n": i}, f"run-{i % 4}")
        transport.send("p.status", {"n": i}, f"run-{i % 4}")
    edge = Counter(p for t, p, _ in producer.sent if t == "p.edge.s.t")
    assert edge == {0: 10, 1: 10, 2: 10}
    assert {p for t, p, _ in producer.sent if t == "p.status"} == {None}
    assert {k for t, _, k in producer.sent if t == "p.edge.s.t"} == {
        f"run-{i}".encode() for i in range(4)
    }


def test_equal_lanes_give_equal_shares_downstream() -> None:
    """Three upstream replicas, one input partition (lane) each, 20 runs per lane: each of
    the 3 downstream partitions gets exactly 20 (independent rotations would give 19-21)."""
    producer = FakeProducer()
    for lane in range(3):
        transport = Transport(Config.from_env(ENV))  # one per replica
        transport.producer = producer  # type: ignore[assignment]
        for i in range(20):
            transport.send("p.edge.s.u", {"n": i}, f"run-{lane}-{i}", lane=lane)
    assert Counter(p for _, p, _ in producer.sent) == {0: 20, 1: 20, 2: 20}
