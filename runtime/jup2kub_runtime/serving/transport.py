"""Kafka plumbing (kafka-python): topics, a manually committed consumer, an acks=all producer.

Kept apart from the cell execution and the state store so that those run without Kafka.
"""

from __future__ import annotations

import logging
import random
import time
from collections.abc import Callable, Iterable
from typing import Any, NamedTuple

from kafka import KafkaAdminClient, KafkaConsumer, KafkaProducer, TopicPartition
from kafka.admin import NewTopic
from kafka.consumer.subscription_state import ConsumerRebalanceListener
from kafka.errors import KafkaError, NoBrokersAvailable, TopicAlreadyExistsError
from kafka.structs import OffsetAndMetadata

from ..contract.config import Config
from ..contract.errors import StepRuntimeError, TemporaryError
from ..contract.messages import encode
from ..execution import randomness

log = logging.getLogger(__name__)


def offset_and_metadata(offset: int) -> Any:
    """OffsetAndMetadata across kafka-python versions (2 fields in 2.0, 3 from 2.1 on)."""
    if len(OffsetAndMetadata._fields) >= 3:
        return OffsetAndMetadata(offset, "", -1)
    return OffsetAndMetadata(offset, "")  # pragma: no cover - kafka-python 2.0


def _no_metrics(client: type) -> dict[str, Any]:
    """Client-side sensors cost CPU on every request and nobody reads them: off, where this
    kafka-python version has the setting."""
    defaults = getattr(client, "DEFAULT_CONFIG", {})
    return {"metrics_enabled": False} if "metrics_enabled" in defaults else {}


class _Listener(ConsumerRebalanceListener):  # type: ignore[misc]
    def __init__(
        self,
        on_revoked: Callable[[set[TopicPartition]], None],
        on_assigned: Callable[[set[TopicPartition]], None],
    ) -> None:
        self._revoked = on_revoked
        self._assigned = on_assigned

    def on_partitions_revoked(self, revoked: Any) -> None:
        self._revoked(set(revoked))

    def on_partitions_assigned(self, assigned: Any) -> None:
        self._assigned(set(assigned))


def _create(admin: KafkaAdminClient, new: list[NewTopic]) -> None:
    """Create ``new`` in one request (each topic is created or refused on its own: one by one
    took 30 ms a topic); what a concurrent creator made meanwhile fails alone, one by one."""
    if not new:
        return
    try:
        admin.create_topics(new)
        log.info("created topics %s", ", ".join(t.name for t in new))
        return
    except TopicAlreadyExistsError:
        pass
    for topic in new:
        try:
            admin.create_topics([topic])
            log.info("created topic %s", topic.name)
        except TopicAlreadyExistsError:
            pass


class Lag(NamedTuple):
    """How far the consumer is behind its assigned partitions."""

    messages: int
    #: age of the oldest unconsumed message; None when its timestamp could not be read in time
    seconds: float | None


#: how long a lag measurement may read the next unconsumed records (on the loop's thread)
PEEK_SECONDS = 0.5


class StartupStopped(StepRuntimeError):
    """A stop was requested while the broker was still awaited at start-up."""


class _Retry:
    """Waiting for a broker: a growing pause (0.5 s doubling to 10 s), one summarising warning
    per attempt; after ``timeout`` seconds (None: never) TemporaryError naming the address.
    ``waiting()`` is called every half second meanwhile (the runtime's liveness beat); False
    stops the wait (StartupStopped)."""

    def __init__(
        self, cfg: Config, timeout: float | None, waiting: Callable[[], bool] | None
    ) -> None:
        self.address = ",".join(cfg.bootstrap_servers)
        self.started = time.monotonic()
        self.timeout = timeout
        self.waiting = waiting
        self.delay = 0.5
        self.attempts = 0

    def pause(self, what: str, exc: Exception) -> None:
        self.attempts += 1
        waited = time.monotonic() - self.started
        if self.timeout is not None and waited + self.delay > self.timeout:
            raise TemporaryError(
                f"{what}: no Kafka broker answers at {self.address} "
                f"(tried {self.attempts} times in {waited:.0f} s): {exc!r}"
            ) from exc
        log.warning(
            "no Kafka broker answers at %s (attempt %d, %.0f s so far: %r); retrying in %.1f s",
            self.address,
            self.attempts,
            waited,
            exc,
            self.delay,
        )
        end = time.monotonic() + self.delay
        while (left := end - time.monotonic()) > 0:
            if self.waiting is not None and not self.waiting():
                raise StartupStopped("stopped while waiting for the broker")
            time.sleep(min(0.5, left))
        self.delay = min(self.delay * 2, 10.0)


class Transport:
    """One consumer (the step's group, manual commits) and one producer."""

    def __init__(self, cfg: Config) -> None:
        self.cfg = cfg
        randomness.isolate_libraries()  # the client's threads draw while the step's cells run
        self.consumer: KafkaConsumer | None = None
        self.producer: KafkaProducer | None = None
        #: reads the next unconsumed record of a lagging partition (``lag``), made when needed
        self._peek: KafkaConsumer | None = None
        self._next_partition: dict[tuple[str, int | None], int] = {}

    # ---- setup -------------------------------------------------------------------------------
    def ensure_topics(
        self,
        topics: Iterable[str],
        *,
        timeout: float | None = 120.0,
        waiting: Callable[[], bool] | None = None,
    ) -> None:
        """Create the topics idempotently; waits for the broker (it may start after us) as
        ``_Retry`` says."""
        wanted = sorted(set(topics))
        retry = _Retry(self.cfg, timeout, waiting)
        while True:
            try:
                admin = KafkaAdminClient(
                    bootstrap_servers=self.cfg.bootstrap_servers,
                    client_id=f"j2k-{self.cfg.step}-admin",
                    request_timeout_ms=15000,
                )
                try:
                    existing = set(admin.list_topics())
                    new = [
                        NewTopic(
                            t,
                            self.cfg.topic_partitions,
                            self.cfg.topic_replication_factor,
                            topic_configs=self.cfg.topic_configs,
                        )
                        for t in wanted
                        if t not in existing
                    ]
                    _create(admin, new)
                finally:
                    admin.close()
                return
            except TopicAlreadyExistsError:
                return
            except KafkaError as exc:
                retry.pause(f"cannot create topics {wanted}", exc)

    def connect(
        self,
        on_revoked: Callable[[set[TopicPartition]], None],
        on_assigned: Callable[[set[TopicPartition]], None],
        *,
        timeout: float | None = 120.0,
        waiting: Callable[[], bool] | None = None,
    ) -> None:
        """Create the producer and the group consumer; while no broker answers (it may have
        gone since the topics were created), retry as ``_Retry`` says."""
        retry = _Retry(self.cfg, timeout, waiting)
        while True:
            try:
                self._connect(on_revoked, on_assigned)
                return
            except NoBrokersAvailable as exc:
                self.close()
                self.consumer = self.producer = None
                retry.pause("cannot connect", exc)

    def _connect(
        self,
        on_revoked: Callable[[set[TopicPartition]], None],
        on_assigned: Callable[[set[TopicPartition]], None],
    ) -> None:
        cfg = self.cfg
        self.producer = KafkaProducer(
            bootstrap_servers=cfg.bootstrap_servers,
            client_id=f"j2k-{cfg.step}",
            acks="all",
            linger_ms=0,
            retries=2147483647,
            max_block_ms=30000,
            request_timeout_ms=15000,
            delivery_timeout_ms=120000,
            **_no_metrics(KafkaProducer),
        )
        self._await_metadata(cfg.input_topics)
        self.consumer = KafkaConsumer(
            bootstrap_servers=cfg.bootstrap_servers,
            group_id=cfg.consumer_group,
            client_id=f"j2k-{cfg.step}",
            enable_auto_commit=False,
            auto_offset_reset="earliest",
            max_poll_records=1,
            max_poll_interval_ms=cfg.max_poll_interval_ms,
            session_timeout_ms=cfg.session_timeout_ms,
            heartbeat_interval_ms=max(cfg.session_timeout_ms // 3, 300),
            request_timeout_ms=max(cfg.session_timeout_ms + 5000, 30000),
            # Let oversized messages through to our own check, which dead-letters them.
            fetch_max_bytes=max(52428800, cfg.max_message_bytes * 4),
            max_partition_fetch_bytes=max(1048576, cfg.max_message_bytes * 4),
            # A topic created moments ago (by us or a peer) must not stay unassigned until the
            # default 5-minute metadata refresh.
            metadata_max_age_ms=10000,
            # Joining the group takes two retries at start (coordinator lookup, then its
            # connection): 100 ms each by default, on the path of every step's first run.
            retry_backoff_ms=20,
            **_no_metrics(KafkaConsumer),
        )
        self.consumer.subscribe(cfg.input_topics, listener=_Listener(on_revoked, on_assigned))

    def _await_metadata(self, topics: Iterable[str], timeout: float = 60.0) -> None:
        """Wait until the brokers serve partition metadata for every input topic, so that the
        first group join assigns them (a topic created moments ago may not have a leader yet).
        A throwaway client asks: probing with the group consumer itself upsets its fetching."""
        probe = KafkaConsumer(
            bootstrap_servers=self.cfg.bootstrap_servers, client_id=f"j2k-{self.cfg.step}-probe"
        )
        try:
            deadline = time.monotonic() + timeout
            missing = list(topics)
            while missing and time.monotonic() < deadline:
                missing = [t for t in missing if not probe.partitions_for_topic(t)]
                if missing:
                    time.sleep(0.2)
            if missing:
                log.warning("no partition metadata yet for %s; subscribing anyway", missing)
        finally:
            probe.close()

    # ---- consuming ---------------------------------------------------------------------------
    def poll(self, timeout_ms: int) -> list[Any]:
        assert self.consumer is not None
        batches = self.consumer.poll(timeout_ms=timeout_ms, max_records=1)
        return [rec for records in batches.values() for rec in records]

    def commit(self, tp: TopicPartition, next_offset: int) -> None:
        self.commit_many({tp: next_offset})

    def commit_many(self, offsets: dict[TopicPartition, int]) -> None:
        """Commit ``{partition: next offset}`` and wait for the broker."""
        assert self.consumer is not None
        self.consumer.commit({tp: offset_and_metadata(o) for tp, o in offsets.items()})

    def commit_async(
        self,
        offsets: dict[TopicPartition, int],
        callback: Callable[[dict[TopicPartition, int], Any], None],
    ) -> None:
        """Commit without waiting; ``callback(offsets, response or exception)`` runs later on
        the polling thread (inside ``poll``)."""
        assert self.consumer is not None
        self.consumer.commit_async(
            {tp: offset_and_metadata(o) for tp, o in offsets.items()},
            callback=lambda _offsets, response: callback(offsets, response),
        )

    def pause_all(self) -> None:
        assert self.consumer is not None
        assigned = self.consumer.assignment()
        if assigned:
            self.consumer.pause(*assigned)

    def resume_all(self) -> None:
        assert self.consumer is not None
        paused = self.consumer.paused()
        if paused:
            self.consumer.resume(*paused)

    def seek(self, tp: TopicPartition, offset: int) -> None:
        assert self.consumer is not None
        self.consumer.seek(tp, offset)

    def connected(self) -> bool:
        """Best cheap guess that the group coordinator is reachable (readiness)."""
        consumer = self.consumer
        if consumer is None:
            return False
        try:
            coordinator = consumer._coordinator
            if coordinator.coordinator_unknown():
                return False
            # the coordinator is only marked unknown after a request to it fails; a dropped
            # connection to it says "broker gone" at once
            node = coordinator.coordinator_id
            return node is not None and bool(consumer._client.connected(node))
        except Exception:  # private API moved: fall back to the bootstrap connection
            return bool(consumer.bootstrap_connected())

    def lag(self) -> Lag | None:
        """Messages past the consumer's position on its assigned partitions, and the age of
        the oldest of them (its produce timestamp); None while unknown (not connected)."""
        behind = self._behind()
        if behind is None:
            return None
        if not behind:
            return Lag(0, 0.0)
        messages = sum(high - pos for pos, high in behind.values())
        stamps = self._first_timestamps({tp: pos for tp, (pos, _) in behind.items()})
        if not stamps:
            return Lag(messages, None)
        return Lag(messages, max(time.time() - min(stamps) / 1000.0, 0.0))

    def _behind(self) -> dict[TopicPartition, tuple[int, int]] | None:
        """(position, high watermark) of each assigned partition with unconsumed messages."""
        consumer = self.consumer
        if consumer is None:
            return None
        behind: dict[TopicPartition, tuple[int, int]] = {}
        try:
            for tp in consumer.assignment():
                high = consumer.highwater(tp)
                pos = consumer._subscription.assignment[tp].position
                offset = getattr(pos, "offset", pos)
                if high is not None and offset is not None and int(high) > int(offset):
                    behind[tp] = (int(offset), int(high))
        except Exception:  # private API moved, or the assignment changed meanwhile
            return None
        return behind

    def _first_timestamps(self, positions: dict[TopicPartition, int]) -> list[int]:
        """The produce timestamps (ms) of the records at ``positions``, read by a consumer of
        its own (no group, no commits: the group consumer's position stays as it is): one
        fetch per lagging partition, only while behind, at most ``PEEK_SECONDS``."""
        found: dict[TopicPartition, int] = {}
        try:
            peek = self._peek = self._peek or self._peek_consumer()
            peek.assign(list(positions))
            peek.resume(*positions)  # paused by the last measurement (assign keeps that)
            for tp, pos in positions.items():
                peek.seek(tp, pos)
            deadline = time.monotonic() + PEEK_SECONDS
            while len(found) < len(positions) and time.monotonic() < deadline:
                for tp, records in peek.poll(timeout_ms=100, max_records=len(positions)).items():
                    if records and records[0].timestamp is not None:
                        found.setdefault(tp, int(records[0].timestamp))
                        peek.pause(tp)
        except KafkaError as exc:
            log.debug("lag: the next records were not read: %r", exc)
        return [ts for ts in found.values() if ts > 0]

    def _peek_consumer(self) -> KafkaConsumer:
        """A group-less consumer for ``lag``; it takes the group consumer's broker version
        rather than probing for it again (seconds at worst)."""
        known = self.consumer.config.get("api_version") if self.consumer is not None else None
        return KafkaConsumer(
            bootstrap_servers=self.cfg.bootstrap_servers,
            client_id=f"j2k-{self.cfg.step}-lag",
            enable_auto_commit=False,
            auto_offset_reset="earliest",
            **({"api_version": known} if known else {}),
            **_no_metrics(KafkaConsumer),
        )

    # ---- producing ---------------------------------------------------------------------------
    def send(
        self,
        topic: str,
        message: dict[str, Any],
        key: str | None = None,
        *,
        lane: int | None = None,
        headers: list[tuple[str, bytes]] | None = None,
    ) -> Any:
        """Send without waiting; returns the future of the broker's acknowledgement.

        Messages to the step's output (edge) topics go round-robin over the partitions, one
        rotation per ``lane`` (the partition the message being handled came from) starting at
        the lane's own number: equal shares in equal lanes come out as equal shares, whatever
        the number of upstream replicas, which hashing a few run ids does not give. Status and
        dead-letter messages stay keyed (one partition per run, in order). ``headers``: the
        message's (the run's trace context, ``traceparent``), if any."""
        assert self.producer is not None
        partition = None
        if topic in self.cfg.output_topics:
            partitions = sorted(self.producer.partitions_for(topic) or ())
            if partitions:
                n = self._next_partition.get((topic, lane))
                if n is None:
                    n = lane if lane is not None else random.randrange(len(partitions))
                partition = partitions[n % len(partitions)]
                self._next_partition[(topic, lane)] = n + 1
        return self.producer.send(
            topic,
            encode(message),
            partition=partition,
            key=key.encode() if key is not None else None,
            headers=headers or None,
        )

    def flush(self, timeout: float | None = None) -> None:
        assert self.producer is not None
        self.producer.flush(timeout=timeout)

    def close(self) -> None:
        if self._peek is not None:
            try:
                self._peek.close(autocommit=False)
            except Exception as exc:  # like the group consumer's: nothing to save
                log.warning("lag consumer close: %r", exc)
        if self.consumer is not None:
            try:
                self.consumer.close(autocommit=False)
            except Exception as exc:  # closing during broker outage: nothing to save
                log.warning("consumer close: %r", exc)
        if self.producer is not None:
            try:
                self.producer.close(timeout=5)
            except Exception as exc:
                log.warning("producer close: %r", exc)
