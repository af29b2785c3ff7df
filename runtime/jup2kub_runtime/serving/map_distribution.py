"""A map cell's elements over Kafka: every replica of the step takes a share.

The replica executing the step (the coordinator) reaches the map cell, writes the shared values
the elements read and each chunk's items to the state volume (``runs/RUN/STEP/map-CELL/
attempt-N/``), waits for the elements group to be stable, and sends one message per chunk to
the step's elements topic, to the group's members in turn (``spread``). Every replica runs an
``ElementWorker`` thread consuming that topic in its own group: it runs the chunk in a process
forked for it (the step's definitions replayed, the shared values loaded from the volume), each
failing element tried again there with the step's retry policy (``map_chunks._element``; a process
that dies runs the chunk again whole), and writes the result next to the chunk's items,
atomically; only then is the message committed, so a replica killed mid-chunk
leaves the message to another replica and no half-written result. The coordinator waits for
every result, replays them in order (``map_chunks``) and completes the step once, as any step:
nothing is lost, and a chunk run twice leaves one result.
"""

from __future__ import annotations

import builtins
import json
import linecache
import logging
import os
import pickle
import threading
import time
import types
from pathlib import Path
from typing import Any

from kafka import KafkaConsumer
from kafka.admin import KafkaAdminClient, NewTopic
from kafka.consumer.subscription_state import ConsumerRebalanceListener
from kafka.errors import KafkaError, TopicAlreadyExistsError

from ..contract.config import Config, secret_parameters
from ..contract.mapspec import MapSpec
from ..contract.messages import encode
from ..contract.spec import StepSpec
from ..contract.topics import elements_topic
from ..execution import cell_runner
from ..execution.map_chunks import (
    ChunkResult,
    ChunkRun,
    RetryPolicy,
    _references,
    _run_chunk,
    _watched,
    died,
    framed,
    send_from_child,
)
from ..execution.output_capture import Capture, patched_io
from ..execution.rich_display import display_for, patched_display, publishing_shell
from ..execution.shell import get_ipython_for
from ..storage.state_store import StateStore, loads_own
from .transport import offset_and_metadata

log = logging.getLogger("jup2kub_runtime.map")

#: how often the coordinator looks for the chunks' results
POLL_SECONDS = 0.02
#: how long the coordinator waits for the elements group to settle before announcing chunks
SETTLE_SECONDS = 10.0
SETTLE_POLL_SECONDS = 0.05


def elements_partitions(cfg: Config) -> int:
    """Partitions of the elements topic: J2K_MAP_PARTITIONS, else the smallest multiple of
    the step topics' partitions (the chart raises those to the step's most replicas) that is
    at least 4, so that as many replicas as those partitions own equal shares."""
    try:
        wanted = int(os.environ.get("J2K_MAP_PARTITIONS", "") or 0)
    except ValueError:
        wanted = 0
    if wanted > 0:
        return wanted
    per = max(1, cfg.topic_partitions)
    return per * -(-4 // per)


def map_dir(store: StateStore, run_id: str, step: str, cell: int, attempt: int) -> Path:
    return store.step_dir(run_id, step) / f"map-{cell}" / f"attempt-{attempt}"


def _chunk_path(d: Path, number: int, suffix: str) -> Path:
    return d / f"chunk-{number:05d}.{suffix}"


def _by_value(shared: dict[str, Any]) -> dict[str, Any]:
    """The shared values another process needs: not modules, classes and functions (the
    step's replayed imports and definitions bring those)."""
    return {
        name: value
        for name, value in shared.items()
        if not isinstance(value, (types.ModuleType, type, types.BuiltinFunctionType))
        and not (isinstance(value, types.FunctionType) and value.__name__ != "<lambda>")
    }


class Distributor:
    """The coordinator's side (``map_chunks.Distributor``) for one execution of the step."""

    def __init__(
        self,
        cfg: Config,
        spec: StepSpec,
        store: StateStore,
        producer: Any,
        run_id: str,
        parameters: dict[str, Any],
        stop: threading.Event,
        elements: ElementWorker | None = None,
    ) -> None:
        self.cfg, self.spec, self.store, self.producer = cfg, spec, store, producer
        self.run_id, self.parameters, self.stop = run_id, parameters, stop
        #: this replica's worker: the chunks wait for its group to settle
        self.elements = elements

    def parallelism(self) -> int:
        """Half the elements topic's partitions: about two chunks per partition, so that
        replicas sharing the partitions evenly share the chunks evenly."""
        topic = elements_topic(self.cfg.pipeline, self.spec.step)
        return max(1, len(self.producer.partitions_for(topic) or [0]) // 2)

    def run(
        self, spec: MapSpec, chunks: list[tuple[int, list[Any]]], shared: dict[str, Any]
    ) -> list[ChunkResult]:
        attempt = self.store.attempts(self.run_id, self.spec.step)
        d = map_dir(self.store, self.run_id, self.spec.step, spec.cell, attempt)
        values = _by_value(shared)
        for name, value in values.items():
            _storable(value, f"the value {name!r}, which the elements read,", spec)
        context = {"shared": values, "parameters": self.parameters}
        self.store.write_bytes(d / "context.pkl", pickle.dumps(context, protocol=5))
        for number, chunk in enumerate(chunks):
            data = _storable(chunk, f"element {chunk[0]}'s item (or one of its chunk's)", spec)
            self.store.write_bytes(_chunk_path(d, number, "in"), data)
        owned = self.elements.settle() if self.elements is not None else []
        self._announce(spec, [start for start, _ in chunks], attempt, owned)
        log.info("run %s: %d map chunks of cell %d announced", self.run_id, len(chunks), spec.cell)
        results = self._gather(d, chunks, shared)
        log.info("run %s: map chunks of cell %d gathered", self.run_id, spec.cell)
        return results

    def _announce(
        self, spec: MapSpec, starts: list[int], attempt: int, owned: list[list[int]]
    ) -> None:
        topic = elements_topic(self.cfg.pipeline, self.spec.step)
        partitions = spread(len(starts), owned, sorted(self.producer.partitions_for(topic) or [0]))
        futures = [
            self.producer.send(
                topic,
                encode(
                    {
                        "type": "map-chunk",
                        "run_id": self.run_id,
                        "step": self.spec.step,
                        "cell": spec.cell,
                        "attempt": attempt,
                        "chunk": number,
                        "start": start,
                    }
                ),
                partition=partitions[number],
            )
            for number, start in enumerate(starts)
        ]
        for future in futures:
            future.get(timeout=60)

    def _gather(
        self, d: Path, chunks: list[tuple[int, list[Any]]], shared: dict[str, Any]
    ) -> list[ChunkResult]:
        results: dict[int, ChunkResult] = {}
        while len(results) < len(chunks):
            for number, (_, items) in enumerate(chunks):
                path = _chunk_path(d, number, "out")
                if number not in results and path.exists():
                    results[number] = loads_own(path.read_bytes(), _references(items, shared))
            if len(results) < len(chunks) and self.stop.wait(POLL_SECONDS):
                raise RuntimeError("stopping: the map's chunks are left to another replica")
        return [results[i] for i in range(len(chunks))]


def _storable(value: Any, what: str, spec: MapSpec) -> bytes:
    """``value`` pickled for the other replicas, or a clear error naming it."""
    try:
        return pickle.dumps(value, protocol=5)
    except Exception as exc:
        raise MapStorageError(
            f"map cell {spec.cell}, line {spec.line}: {what} cannot be stored for the step's "
            f"other replicas ({type(exc).__name__}: {exc}); on Kafka a map's items and shared "
            "values cross the state volume"
        ) from None


class MapStorageError(Exception):
    """A map's item or shared value cannot be pickled for the other replicas."""


class ElementWorker(threading.Thread):
    """Consumes the step's elements topic: runs each chunk, stores its result, commits."""

    def __init__(self, cfg: Config, spec: StepSpec, store: StateStore, stop: threading.Event):
        super().__init__(name="map-elements", daemon=True)
        self.cfg, self.spec, self.store, self.stop = cfg, spec, store, stop
        self.topic = elements_topic(cfg.pipeline, spec.step)
        self.maps = {m.cell: m for m in spec.maps}
        self.executed = 0  # chunks this replica ran (tests, metrics)
        self.group = f"{cfg.consumer_group}.elements"
        #: set while this replica owns elements partitions (``_Assignments``)
        self.assigned = threading.Event()

    def settle(self, timeout: float = SETTLE_SECONDS) -> list[list[int]]:
        """Wait (at most ``timeout`` s) until this replica owns elements partitions and the
        group is stable; returns each member's partitions then (none if it never settled).
        Chunks announced to a group still rebalancing go to the members that joined first,
        and a member busy in a chunk holds up the others' rebalance until that chunk ends:
        the replicas that joined last would idle for a chunk's length."""
        deadline = time.monotonic() + timeout
        if not self.assigned.wait(timeout):
            log.warning("map elements: no partitions after %gs; announcing anyway", timeout)
            return []
        admin = KafkaAdminClient(
            bootstrap_servers=self.cfg.bootstrap_servers, client_id=f"j2k-{self.spec.step}-settle"
        )
        try:
            while time.monotonic() < deadline and not self.stop.is_set():
                [group] = admin.describe_consumer_groups([self.group])
                if group.state == "Stable" and self.assigned.is_set():
                    return _owned(group, self.topic)
                time.sleep(SETTLE_POLL_SECONDS)
            log.warning("map elements group %s not stable after %gs", self.group, timeout)
        except KafkaError as exc:  # the chunks go out anyway; the group settles meanwhile
            log.warning("map elements group %s: %r", self.group, exc)
        finally:
            admin.close()
        return []

    def ensure_topic(self) -> None:
        admin = KafkaAdminClient(bootstrap_servers=self.cfg.bootstrap_servers)
        try:
            if self.topic not in set(admin.list_topics()):
                admin.create_topics(
                    [
                        NewTopic(
                            self.topic,
                            elements_partitions(self.cfg),
                            self.cfg.topic_replication_factor,
                            topic_configs=self.cfg.topic_configs,
                        )
                    ]
                )
        except TopicAlreadyExistsError:
            pass
        finally:
            admin.close()

    def run(self) -> None:
        consumer = KafkaConsumer(
            bootstrap_servers=self.cfg.bootstrap_servers,
            group_id=self.group,
            client_id=f"j2k-{self.spec.step}-elements",
            enable_auto_commit=False,
            auto_offset_reset="earliest",
            max_poll_records=1,
            max_poll_interval_ms=self.cfg.max_poll_interval_ms,
            session_timeout_ms=self.cfg.session_timeout_ms,
            # a replica joining later waits until the members rejoin, which they do once a
            # heartbeat tells them: often, so that a new replica takes its share at once
            heartbeat_interval_ms=100,
            metadata_max_age_ms=5000,
            retry_backoff_ms=20,
        )
        consumer.subscribe([self.topic], listener=_Assignments(self.assigned))
        try:
            while not self.stop.is_set():
                for tp, records in consumer.poll(timeout_ms=100).items():
                    for record in records:
                        try:
                            self._handle(record.value)
                        except Exception:  # the volume, a bad message: try it again later
                            log.exception("map chunk message %s@%d", tp, record.offset)
                            consumer.seek(tp, record.offset)
                            self.stop.wait(1.0)
                            break
                        consumer.commit({tp: _offset(record.offset + 1)})
        except KafkaError as exc:  # pragma: no cover - the process restarts on a broker loss
            log.error("elements consumer stopped: %r", exc)
        finally:
            consumer.close()

    def _handle(self, raw: bytes) -> None:
        try:
            msg = json.loads(raw)
            run_id, number = str(msg["run_id"]), int(msg["chunk"])
            start = int(msg.get("start", 0))  # the chunk's first element
            spec = self.maps.get(int(msg["cell"]))
            attempt = int(msg["attempt"])
        except (ValueError, KeyError, TypeError) as exc:
            log.warning("skipping a malformed map chunk message: %r", exc)
            return
        if spec is None or self.store.is_complete(run_id, self.spec.step):
            return
        if attempt < self.store.attempts(run_id, self.spec.step):
            return  # a later execution of the step sent its own chunks
        d = map_dir(self.store, run_id, self.spec.step, spec.cell, attempt)
        out = _chunk_path(d, number, "out")
        if out.exists() or not _chunk_path(d, number, "in").exists():
            return
        log.info("run %s: running map chunk %d (cell %d)", run_id, number, spec.cell)
        # Each element is retried in the chunk's process (``map_chunks._element``); a process
        # that dies loses its work with it, so the chunk runs whole again, as often.
        for tries in range(1, self.cfg.max_retries + 2):
            payload, died = self._execute(spec, d, number, start)
            if not died or tries > self.cfg.max_retries or self.stop.is_set():
                break
            log.warning("run %s: map chunk %d's process died (try %d)", run_id, number, tries)
            if self.stop.wait(self.cfg.retry_delay(tries)):
                return
        if not out.exists():
            self.store.write_bytes(out, payload)
        self.executed += 1
        log.info("run %s: map chunk %d of cell %d done", run_id, number, spec.cell)

    def _execute(self, spec: MapSpec, d: Path, number: int, start: int) -> tuple[bytes, bool]:
        """Run the chunk in a forked process; (its result, whether the process died)."""
        read, write = os.pipe()
        parent = os.getpid()
        pid = os.fork()
        if pid == 0:
            os.close(read)
            _chunk_child(self.spec, spec, d, number, write, parent, _policy(self.cfg))
        os.close(write)
        data = bytearray()
        with os.fdopen(read, "rb") as pipe:
            while chunk := pipe.read(1 << 20):
                data.extend(chunk)
        _, status = os.waitpid(pid, 0)
        body = framed(data)
        if body is None:
            return pickle.dumps(died(status, start)), True
        return body, False


class _Assignments(ConsumerRebalanceListener):  # type: ignore[misc]
    """Tracks (and logs: the map's timeline) the elements partitions this replica owns."""

    def __init__(self, assigned: threading.Event) -> None:
        self.assigned = assigned

    def on_partitions_revoked(self, revoked: Any) -> None:
        self.assigned.clear()
        log.info("map elements partitions revoked: %s", _partitions(revoked))

    def on_partitions_assigned(self, assigned: Any) -> None:
        log.info("map elements partitions assigned: %s", _partitions(assigned))
        if assigned:
            self.assigned.set()


def _owned(group: Any, topic: str) -> list[list[int]]:
    """Each member's partitions of ``topic`` in a described group (members in id order)."""
    owned = []
    for member in sorted(group.members, key=lambda m: m.member_id):
        parts = getattr(member.member_assignment, "assignment", None) or []
        mine = sorted(p for t, ps in parts if t == topic for p in ps)
        if mine:
            owned.append(mine)
    return owned


def spread(count: int, owned: list[list[int]], partitions: list[int]) -> list[int]:
    """The partition of each of ``count`` chunks: round robin over the members (``owned``:
    each one's partitions), then over each member's partitions, so that every replica gets
    an equal share whatever the partition count; round robin over ``partitions`` if the
    owners are unknown."""
    if not owned:
        return [partitions[n % len(partitions)] for n in range(count)]
    return [
        owned[n % len(owned)][(n // len(owned)) % len(owned[n % len(owned)])] for n in range(count)
    ]


def _partitions(tps: Any) -> str:
    return ",".join(str(tp.partition) for tp in sorted(tps)) or "none"


def _offset(offset: int) -> Any:
    return offset_and_metadata(offset)


def _policy(cfg: Config) -> RetryPolicy:
    return RetryPolicy(cfg.max_retries, cfg.retry_backoff_seconds, cfg.retry_backoff_max_seconds)


def _chunk_child(
    step: StepSpec, spec: MapSpec, d: Path, number: int, fd: int, parent: int, policy: RetryPolicy
) -> None:
    """In the forked process: the step's namespace rebuilt, the chunk run, its result sent."""

    def run() -> ChunkRun:
        cell_runner.release_after_fork()  # the coordinating thread may hold the parent's lock
        context = loads_own((d / "context.pkl").read_bytes())
        start, items = loads_own(_chunk_path(d, number, "in").read_bytes())
        shared: dict[str, Any] = context["shared"]
        result = _run_in_namespace(step, spec, context, shared, start, items, policy)
        return result, start, items, shared

    send_from_child(fd, parent, run)


def _run_in_namespace(
    step: StepSpec,
    spec: MapSpec,
    context: dict[str, Any],
    shared: dict[str, Any],
    start: int,
    items: list[Any],
    policy: RetryPolicy,
) -> ChunkResult:
    ns: dict[str, Any] = {"__name__": "__main__", "__builtins__": builtins}
    capture = Capture()
    display = display_for(capture)
    ns["display"] = display
    ns["get_ipython"] = get_ipython_for(ns)
    filename = f"<cell {spec.cell}>"
    source = next((c.source for c in step.cells if c.index == spec.cell), "")
    with (
        patched_io(capture, False),
        patched_display(display),
        publishing_shell(ns, capture),
    ):
        try:
            if step.parameters_source:
                cell_runner.run_source(step.parameters_source, "<parameters>", ns)
            ns.update(context["parameters"])
            ns.update(secret_parameters(step.secret_parameters))
            for rep in step.replay:
                cell_runner.run_source(rep.source, f"<cell {rep.cell}>", ns)
        except BaseException as exc:
            return ChunkResult(error=(start, f"{type(exc).__name__}: {exc} (replaying)", ""))
        capture.flush_all()
        capture.current = []
        ns.update(shared)
        linecache.cache[filename] = (len(source), None, source.splitlines(True), filename)
        code = compile(spec.element, filename, "exec", dont_inherit=True)
        watched = _watched(spec, ns)
        return _run_chunk(spec, ns, code, watched, capture, policy, start, items, forked=True)
