"""The consume-execute-produce loop of one step process (``python -m jup2kub_runtime``).

The main thread owns the consumer: it polls, hands one message at a time to a worker thread,
and while the worker runs keeps polling now and then with every assigned partition paused (so
a step longer than max.poll.interval.ms neither leaves the group nor is fetched twice). Once
the worker has stored the results and sent the downstream, status and dead-letter messages,
the next message may start while that thread waits for the broker's acknowledgements; a
message's offset is committed (asynchronously, in consumption order per partition, and
synchronously on revocation and shutdown) only after its handling is complete and every message
it produced is acknowledged. A crash before the commit redelivers the message: the completion
marker on the volume makes it a skip and a re-announcement, never a second execution. Fan-in
steps run once every upstream step is complete, under an exclusive lock. A step never starts
once a step of the run has failed for good in a cell before its own first cell (nbclient stops
at the first failure; the volume records it): it reports ``blocked`` instead.
"""

from __future__ import annotations

import logging
import os
import signal
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from types import FrameType
from typing import Any

from kafka import TopicPartition
from kafka.errors import CommitFailedError, IllegalStateError, KafkaError

from ..contract.config import CELL_OUTPUT_ENV, MAP_ROLE_ENV, Config
from ..contract.errors import (
    CellError,
    ErrorRecord,
    MessageError,
    StateError,
    StepRuntimeError,
    TemporaryError,
)
from ..contract.messages import (
    Incoming,
    dead_letter_message,
    parse,
    status_message,
    step_done_message,
)
from ..contract.metrics import ExecutionOutcome
from ..contract.spec import StepSpec
from ..contract.states import StepState
from ..contract.tracing import PIPELINE, RUN_ID, STEP, step_span_name
from ..execution import preimport
from ..execution.map_chunks import distributing
from ..execution.output_capture import CellRecord, echoed_into
from ..execution.step_run import run_step
from ..execution.tracing import Deferred, Headers, tracer
from ..storage.state_store import StateStore
from ..storage.stepcache import DEFAULT_DIRNAME as CACHE_DIR
from ..storage.stepcache import CacheStore, cache_enabled
from .health import Health
from .map_distribution import Distributor, ElementWorker
from .offsets import CommitBook
from .outcomes import (
    Blocked,
    DeadLetter,
    Outcome,
    Retry,
    Skipped,
    Succeeded,
    Waiting,
    counted_as,
    executed_seconds,
)
from .transport import StartupStopped, Transport

log = logging.getLogger("jup2kub_runtime")


@dataclass
class Job:
    """One consumed message being handled by the worker thread."""

    record: Any
    tp: TopicPartition
    started: float = field(default_factory=time.monotonic)
    #: set once the worker no longer needs the step: results stored and the messages sent
    #: (their acknowledgements may still be pending), or the handling ended otherwise
    handled: threading.Event = field(default_factory=threading.Event)
    #: set once the handling is over, acknowledgements included
    done: threading.Event = field(default_factory=threading.Event)
    commit: bool = False  # set by the worker: True once the message is fully handled
    revoked: bool = False
    thread: threading.Thread | None = None

    @property
    def offset(self) -> int:
        return int(self.record.offset)

    @property
    def finished(self) -> bool:
        return self.done.is_set()


#: handled jobs whose acknowledgements may still be pending, at most (then no new message)
MAX_IN_FLIGHT = 32


class Abandon(Exception):
    """Shutting down: leave the message uncommitted so that another process redoes it."""


class StepLoop:
    def __init__(
        self, cfg: Config, spec: StepSpec, store: StateStore, transport: Transport, health: Health
    ) -> None:
        self.cfg = cfg
        self.spec = spec
        self.store = store
        self.transport = transport
        self.health = health
        health.connected_probe = transport.connected
        self.stop = threading.Event()
        #: cleared while the warm-up runs: a run waits for it (it may restart the process)
        self.warmed = threading.Event()
        self.warmed.set()
        #: a module the warm-up found noisy: the process starts again without it
        self.restart_for: str | None = None
        self.stop_at: float | None = None
        self.job: Job | None = None
        #: handled jobs awaiting their acknowledgements, and the offsets they make committable
        self.commits: CommitBook[Job] = CommitBook()
        self._committing = False
        self._commit_retry_at = 0.0
        self._tls = threading.local()
        self._last_lag = 0.0
        self._last_poll = 0.0
        #: every assigned partition paused (by _pause); _resume undoes it before taking records
        self.paused = False
        #: a map step's worker for the elements topic (``map_distribution``)
        self.elements: ElementWorker | None = None
        #: a span per execution, when the environment turns traces on (``execution.tracing``)
        self.tracer = tracer()

    # ---- lifecycle ---------------------------------------------------------------------------
    def request_stop(self, signum: int | None = None, frame: FrameType | None = None) -> None:
        if not self.stop.is_set():
            log.info(
                "stop requested (signal %s): finishing the current run, taking no new one", signum
            )
            self.stop_at = time.monotonic()
            self.stop.set()

    def run(self) -> int:
        signal.signal(signal.SIGTERM, self.request_stop)
        signal.signal(signal.SIGINT, self.request_stop)
        cfg = self.cfg
        # Imports and compiling for the first run, while the consumer connects and joins.
        self.warmed.clear()
        threading.Thread(target=self._warm_up, name="warm-up", daemon=True).start()
        # While the broker is away (an outage), wait as long as it takes: alive (/healthz, so
        # the kubelet restarts nothing), not ready; a stop request ends the wait.
        self.health.starting = True
        try:
            self.transport.ensure_topics(
                [*cfg.input_topics, *cfg.output_topics, cfg.status_topic, cfg.dead_letter_topic],
                timeout=None,
                waiting=self._starting,
            )
            self.transport.connect(
                self._on_revoked, self._on_assigned, timeout=None, waiting=self._starting
            )
        except StartupStopped:
            log.info("stopped before the broker answered")
            return 0
        finally:
            self.health.starting = False
        if self.spec.maps:  # every replica takes a share of the map cells' chunks
            elements = self.elements = ElementWorker(cfg, self.spec, self.store, self.stop)
            elements.ensure_topic()
            self.transport._await_metadata([elements.topic])
            elements.start()
            if os.environ.get(MAP_ROLE_ENV) == "elements":
                return self._elements_only(elements)
        self.health.loop_running = True
        log.info(
            "step %s of pipeline %s consuming %s as group %s",
            cfg.step,
            cfg.pipeline,
            ",".join(cfg.input_topics),
            cfg.consumer_group,
        )
        try:
            while self._iterate():
                pass
        finally:
            self.health.loop_running = False
            self.transport.close()
            self.tracer.flush()
        log.info("stopped")
        return 0

    def _elements_only(self, elements: ElementWorker) -> int:
        """A helper that only runs map chunks (J2K_MAP_ROLE=elements, ``run --kafka``'s extra
        replicas): it leaves the step's own group alone, so that joining it never moves the
        partition of a step being executed."""
        self.transport.close()
        log.info("step %s: running map chunks only", self.spec.step)
        self.health.loop_running = self.health.subscribed = self.health.warmed_up = True
        self.health.connected_probe = elements.is_alive
        while not self.stop.wait(0.5):
            self.health.beat()
        elements.join(timeout=30)
        log.info("stopped")
        return 0

    def _starting(self) -> bool:
        """Start-up goes on (a liveness beat) unless a stop was requested."""
        self.health.beat()
        return not self.stop.is_set()

    def _warm_up(self) -> None:
        """Ready (``/readiness``) only once done, whatever happened. A noisy import restarts
        the process (``preimport``): no run has started then, they wait for the warm-up."""
        try:
            preimport.warm_up(self.spec, restart=self._restart_without)
        except Exception as exc:  # the first execution meets the problem itself
            log.warning("warm-up: %r", exc)
        finally:
            self.health.warmed_up = True
            self.warmed.set()

    def _restart_without(self, module: str) -> None:
        """From the warm-up thread: the main thread leaves the group, then restarts."""
        self.restart_for = module

    def _restart_if_asked(self) -> None:
        """A noisy import happened ahead (its output lost): this process must not run a step.
        Leave the consumer group cleanly (a quick rebalance), then start again without it."""
        if self.restart_for is None or (self.job is not None and not self.job.finished):
            return
        log.info("restarting without importing %s ahead (it is not quiet)", self.restart_for)
        self.health.loop_running = False
        self.transport.close()
        preimport.restart_without(self.restart_for)

    def _iterate(self) -> bool:
        """One pass of the loop; False once it should end."""
        self._restart_if_asked()
        self.health.beat()
        self.health.connected = self.transport.connected()
        now = time.monotonic()
        if now - self._last_lag > 5.0:
            self._last_lag = now
            self._measure_lag()
        self._settle()
        job = self.job
        if job is None:
            if self.stop.is_set():
                return not self._drain()
            if len(self.commits.in_flight) >= MAX_IN_FLIGHT:
                self.commits.in_flight[0].done.wait(0.02)
                if now - self._last_poll > 0.5:
                    self._poll_paused()
                return True
            # the in-flight wait above may have left the partitions paused
            self._resume()
            for record in self._poll(20 if self.commits.in_flight else 200):
                self._start(record)
                break
            return True
        # A job is running: keep polling now and then (group membership, max.poll.interval)
        # with every partition paused, so no new record arrives.
        if job.handled.wait(0.02):
            self._release(job)
            return True
        if now - self._last_poll > 0.5:
            self._poll_paused()
        if (
            self.stop.is_set()
            and self.stop_at is not None
            and time.monotonic() - self.stop_at > self.cfg.shutdown_grace_seconds
        ):
            log.warning("grace period over: abandoning the current run uncommitted")
            return False
        limit = self.cfg.step_timeout_seconds
        if limit and time.monotonic() - job.started > limit + 60:
            log.critical("the step ignored its %gs timeout; exiting without commit", limit)
            logging.shutdown()
            os._exit(3)
        return True

    # ---- consumer side (main thread only) ------------------------------------------------------
    def _measure_lag(self) -> None:
        lag = self.transport.lag()
        if lag is not None:
            self.health.metrics.lag(lag.messages, lag.seconds)

    def _poll(self, timeout_ms: int) -> list[Any]:
        self._last_poll = time.monotonic()
        try:
            return self.transport.poll(timeout_ms)
        except KafkaError as exc:
            log.warning("poll failed: %r", exc)
            time.sleep(0.5)
            return []

    def _pause(self) -> None:
        self.transport.pause_all()
        self.paused = True

    def _resume(self) -> None:
        if self.paused:
            self.transport.resume_all()
            self.paused = False

    def _poll_paused(self, timeout_ms: int = 0) -> None:
        self._pause()
        for record in self._poll(timeout_ms):
            # A partition assigned mid-job delivered a record: rewind it for later.
            tp = TopicPartition(record.topic, record.partition)
            self.transport.seek(tp, record.offset)
            self._pause()

    def _start(self, record: Any) -> None:
        # No pause here: a short job ends before the next poll, and pausing would drop the
        # records already fetched. _poll_paused pauses before polling during a long job.
        tp = TopicPartition(record.topic, record.partition)
        job = Job(record=record, tp=tp)
        job.thread = threading.Thread(
            target=self._work, args=(job,), name="step-worker", daemon=True
        )
        self.job = job
        self.health.busy_since = time.monotonic()
        self.health.metrics.consumed()
        job.thread.start()

    def _release(self, job: Job) -> None:
        """The worker is done with the step: the next message may start."""
        self.job = None
        self.health.busy_since = None
        self.health.busy_run = None
        self.commits.add(job)
        self._resume()
        self._settle()

    def _settle(self) -> None:
        """Commit what is fully handled, in consumption order (asynchronously)."""
        self.commits.settle()
        if self._committing or time.monotonic() < self._commit_retry_at:
            return
        offsets = self.commits.due()
        if not offsets:
            return
        self._committing = True
        try:
            self.transport.commit_async(offsets, self._on_committed)
        except KafkaError as exc:
            self._on_committed(offsets, exc)

    def _on_committed(self, offsets: dict[TopicPartition, Any], response: Any) -> None:
        self._committing = False
        if isinstance(response, BaseException):
            # Retried with the newest offsets; a partition that moved to another member will
            # redeliver, and the marker turns that into a re-announcement.
            log.warning(
                "commit of %s failed, will retry: %r",
                ", ".join(f"{tp.topic}[{tp.partition}]" for tp in offsets),
                response,
            )
            self._commit_retry_at = time.monotonic() + 0.5
            return
        self.commits.confirm({tp: getattr(off, "offset", off) for tp, off in offsets.items()})

    def _commit_sync(self, offsets: dict[TopicPartition, int]) -> None:
        offsets = self.commits.unconfirmed(offsets)
        if not offsets:
            return
        try:
            self.transport.commit_many(offsets)
        except (CommitFailedError, IllegalStateError) as exc:
            # Partition moved to another member: it will redeliver and find the marker.
            log.warning("commit of %s dropped: %r", offsets, exc)
            return
        except KafkaError as exc:
            log.warning("commit of %s failed: %r", offsets, exc)
            return
        self.commits.confirm(offsets)

    def _drain(self) -> bool:
        """Stopping: wait for the acknowledgements in flight, then commit synchronously.
        True once done (the publishing threads give up after half the grace period)."""
        self._settle()
        in_flight = self.commits.in_flight
        if in_flight:
            if in_flight[0].done.wait(0.02):
                return False
            if time.monotonic() - self._last_poll > 0.5:
                self._poll_paused()
            if (
                self.stop_at is not None
                and time.monotonic() - self.stop_at > self.cfg.shutdown_grace_seconds
            ):
                log.warning("grace period over: %d handled runs left uncommitted", len(in_flight))
                return True
            return False
        self._commit_sync(dict(self.commits.to_commit))
        return True

    def _on_revoked(self, revoked: set[TopicPartition]) -> None:
        self.health.subscribed = False
        # Commit what is fully handled of the revoked partitions, in consumption order.
        self.commits.revoke(revoked, self.job, self._commit_sync)

    def _on_assigned(self, assigned: set[TopicPartition]) -> None:
        log.info(
            "assigned partitions: %s",
            ", ".join(sorted(f"{tp.topic}[{tp.partition}]" for tp in assigned)) or "none",
        )
        self.health.subscribed = True
        if self.job is not None and assigned:
            self._pause()

    # ---- worker side ---------------------------------------------------------------------------
    def _work(self, job: Job) -> None:
        self._tls.job = job
        self.warmed.wait()
        try:
            if self.restart_for is not None:
                raise Abandon(f"restarting without importing {self.restart_for} ahead")
            job.commit = self._handle(job.record)
        except Abandon:
            job.commit = False
        except Exception:
            log.exception(
                "unexpected error handling %s@%d; leaving it uncommitted", job.tp, job.record.offset
            )
            job.commit = False
            self.stop.wait(1.0)
        finally:
            job.handled.set()
            job.done.set()

    def _handle(self, record: Any) -> bool:
        raw: bytes | None = record.value
        try:
            msg = parse(raw, max_bytes=self.cfg.max_message_bytes)
            self._check_fits(msg)
        except MessageError as exc:
            log.warning(
                "dead-lettering a bad message from %s@%d: %s",
                record.topic,
                record.offset,
                exc.reason,
            )
            self._publish(
                [
                    (
                        self.cfg.dead_letter_topic,
                        dead_letter_message(exc.reason, self.spec.step, raw),
                        None,
                    )
                ],
                final=True,
            )
            self.health.metrics.dead_lettered()
            self.health.metrics.count(ExecutionOutcome.DEAD_LETTERED)
            return True
        if record.timestamp and record.timestamp > 0:
            self.health.metrics.observe_handoff(time.time() - record.timestamp / 1000.0)
        self.health.busy_run = msg.run_id
        self._retrying(lambda: self._record_arrival(msg))
        return self._execute(msg, raw, list(getattr(record, "headers", None) or []))

    def _check_fits(self, msg: Incoming) -> None:
        if msg.type == "run" and not self.spec.is_root:
            raise MessageError(
                f"a run message reached step {self.spec.step!r}, which has "
                f"upstream steps {self.spec.upstream}"
            )
        if msg.type == "step-done" and msg.step not in self.spec.upstream:
            raise MessageError(
                f"step-done from {msg.step!r}, which is not upstream of {self.spec.step!r}"
            )

    def _record_arrival(self, msg: Incoming) -> None:
        if msg.type == "run":
            self.store.record_run(msg.run_id, msg.parameters, submitted_at=msg.submitted_at)
        elif msg.step is not None:
            self.store.record_join(msg.run_id, self.spec.step, msg.step)

    def _retrying(self, fn: Any) -> Any:
        """Run ``fn`` until it stops raising StateError (volume trouble), unless stopping."""
        delay = self.cfg.retry_backoff_seconds
        while True:
            try:
                return fn()
            except StateError as exc:
                log.warning("state volume error, retrying in %.1fs: %s", delay, exc)
                if self.stop.wait(delay):
                    raise Abandon() from exc
                delay = min(max(delay, 0.1) * 2, self.cfg.retry_backoff_max_seconds)

    def _execute(self, msg: Incoming, raw: bytes | None, headers: Headers) -> bool:
        """Attempt the run until it comes to something other than a retry; act on that. Each
        attempt is a span (unless it waits for upstream steps or finds the step complete), the
        child of the message's; the downstream messages carry the last one's."""
        attributes = {PIPELINE: self.cfg.pipeline, STEP: self.spec.step, RUN_ID: msg.run_id}
        name = step_span_name(self.spec.step)
        while True:
            pending = Deferred(self.tracer, name, attributes, headers)
            try:
                outcome = self._attempt(msg, pending)
            except BaseException:
                pending.span().end(error=True)
                raise
            self._count(outcome)
            idle = isinstance(outcome, Waiting | Skipped) or (
                isinstance(outcome, Retry) and outcome.error is None  # volume, or busy elsewhere
            )
            if idle and not pending.made:
                # nothing executed here, no span: a re-announcement keeps the message's context
                self._tls.trace = headers
            else:
                label = counted_as(outcome) or ExecutionOutcome.RETRIED
                span = pending.span()
                span.end(
                    label.value,
                    attempt=getattr(outcome, "attempt", None),
                    reused=isinstance(outcome, Succeeded) and outcome.reused,
                    error=label in (ExecutionOutcome.FAILED, ExecutionOutcome.RETRIED),
                )
                self._tls.trace = span.headers()
            if not isinstance(outcome, Retry):
                self._conclude(msg, raw, outcome)
                return True
            self._retry(msg, outcome)

    def _count(self, outcome: Outcome) -> None:
        """Every attempt's outcome counted, in this one place; its execution timed, if any."""
        label = counted_as(outcome)
        if label is not None:
            self.health.metrics.count(label)
        seconds = executed_seconds(outcome)
        if seconds is not None:
            self.health.metrics.observe_execution(seconds)

    def _attempt(self, msg: Incoming, span: Deferred) -> Outcome:
        """One attempt at the run: the step's policy, publishing nothing but "started"."""
        spec, store, cfg = self.spec, self.store, self.cfg
        run_id = msg.run_id
        max_attempts = 1 + cfg.max_retries
        if store.is_complete(run_id, spec.step):
            return Skipped()
        failed_at = store.failed_at(run_id)
        if failed_at is not None and failed_at < self._first_cell:
            return Blocked(failed_at)
        if not store.all_complete(run_id, spec.upstream):
            return Waiting([s for s in spec.upstream if not store.is_complete(run_id, s)])
        if store.attempts(run_id, spec.step) >= max_attempts:
            stored = store.error(run_id, spec.step)
            error = (
                ErrorRecord.from_json(stored)
                if stored
                else ErrorRecord(
                    None,
                    "AttemptsExhausted",
                    f"{max_attempts} executions started without "
                    "finishing (the process died or timed out)",
                )
            )
            return DeadLetter("retries exhausted", error, store.attempts(run_id, spec.step))
        distributor = (
            Distributor(
                cfg,
                spec,
                store,
                self.transport.producer,
                run_id,
                msg.parameters,
                self.stop,
                self.elements,
            )
            if spec.maps
            else None
        )
        started = time.monotonic()
        try:
            with distributing(distributor), echoed_into(os.environ.get(CELL_OUTPUT_ENV)) as echo:
                result = run_step(
                    spec,
                    store,
                    run_id,
                    msg.parameters,
                    echo=echo,
                    timeout=cfg.step_timeout_seconds or None,
                    on_start=lambda attempt: self._status(run_id, StepState.STARTED, attempt),
                    workdir=store.run_dir(run_id) / "files" if cfg.run_files else None,
                    guards=cfg.guards,
                    cache=CacheStore(store.root / CACHE_DIR) if cache_enabled() else None,
                    on_cells=_cell_spans(span) if self.tracer.on else None,
                )
        except CellError as exc:
            seconds = time.monotonic() - started
            attempt = store.attempts(run_id, spec.step)
            log.warning("run %s attempt %d failed: %s", run_id, attempt, exc)
            if exc.permanent or attempt >= max_attempts:
                reason = "permanent error" if exc.permanent else "retries exhausted"
                return DeadLetter(reason, exc.record, attempt, seconds)
            return Retry(cfg.retry_delay(attempt), exc.record, attempt, seconds)
        except StateError as exc:
            log.warning("run %s: state volume error: %s", run_id, exc)
            return Retry(cfg.retry_backoff_seconds)
        except StepRuntimeError as exc:
            if isinstance(exc, TemporaryError):  # pragma: no cover - future subclasses
                return Retry(cfg.retry_backoff_seconds)
            return DeadLetter(
                "permanent error", ErrorRecord.of(exc), store.attempts(run_id, spec.step)
            )
        if result.status is StepState.BUSY:
            return Retry(0.2)  # another process on the volume executes it: await its marker
        if result.status is StepState.SUCCEEDED:
            if result.reused:
                log.info("run %s: reused the step cache's result (its key is unchanged)", run_id)
                return Succeeded(result.attempt, time.monotonic() - started, reused=True)
            return Succeeded(result.attempt, time.monotonic() - started)
        return Skipped(meanwhile=True)

    @property
    def _first_cell(self) -> int:
        return min((c.index for c in self.spec.cells), default=0)

    def _retry(self, msg: Incoming, retry: Retry) -> None:
        """Report a failure of the step's code as "retrying", then wait (Abandon if stopped)."""
        if retry.error is not None:
            self._publish(
                [
                    (
                        self.cfg.status_topic,
                        status_message(
                            msg.run_id,
                            self.spec.step,
                            StepState.RETRYING,
                            retry.attempt,
                            retry.error.summary(),
                        ),
                        msg.run_id,
                    )
                ]
            )
        if self.stop.wait(retry.delay):
            raise Abandon()

    def _conclude(
        self,
        msg: Incoming,
        raw: bytes | None,
        outcome: Succeeded | Skipped | Waiting | Blocked | DeadLetter,
    ) -> None:
        """Publish what the run came to; the handling of the message ends with it."""
        run_id = msg.run_id
        if isinstance(outcome, Succeeded):
            log.info("run %s done in %.3fs (attempt %d)", run_id, outcome.seconds, outcome.attempt)
            self._publish(
                [
                    (
                        self.cfg.status_topic,
                        status_message(
                            run_id, self.spec.step, StepState.SUCCEEDED, outcome.attempt
                        ),
                        run_id,
                    ),
                    *self._downstream(msg),
                ],
                final=True,
            )
        elif isinstance(outcome, Skipped):
            if not outcome.meanwhile:
                log.info("run %s already complete here: re-announcing it", run_id)
            # The process that completed it may have died before its status went out: say it
            # again (a repeated "succeeded" changes nothing for those who fold the topic).
            attempt = max(self.store.attempts(run_id, self.spec.step), 1)
            succeeded = status_message(run_id, self.spec.step, StepState.SUCCEEDED, attempt)
            self._publish(
                [(self.cfg.status_topic, succeeded, run_id), *self._downstream(msg)], final=True
            )
        elif isinstance(outcome, Waiting):
            log.info("run %s: waiting for %s", run_id, outcome.missing)
        elif isinstance(outcome, Blocked):
            log.info("run %s: not started, cell %d failed before it", run_id, outcome.failed_at)
            blocked = status_message(run_id, self.spec.step, StepState.BLOCKED, 0)
            self._publish([(self.cfg.status_topic, blocked, run_id)], final=True)
        else:
            self._fail(msg, raw, outcome)

    def _downstream(self, msg: Incoming) -> list[tuple[str, dict[str, Any], str | None]]:
        done = step_done_message(msg.run_id, self.spec.step, msg.parameters)
        return [(topic, done, msg.run_id) for topic in self.cfg.output_topics]

    def _fail(self, msg: Incoming, raw: bytes | None, dead: DeadLetter) -> None:
        error, reason = dead.error, dead.reason
        cell = error.cell if error.cell is not None else self._first_cell
        self._retrying(lambda: self.store.record_failed(msg.run_id, self.spec.step, cell))
        self.health.metrics.dead_lettered()
        log.error(
            "run %s failed for good (%s): %s: %s", msg.run_id, reason, error.ename, error.evalue
        )
        self._publish(
            [
                (
                    self.cfg.dead_letter_topic,
                    dead_letter_message(
                        reason, self.spec.step, raw, run_id=msg.run_id, error=error
                    ),
                    msg.run_id,
                ),
                (
                    self.cfg.status_topic,
                    status_message(
                        msg.run_id, self.spec.step, StepState.FAILED, dead.attempt, error.summary()
                    ),
                    msg.run_id,
                ),
            ],
            final=True,
        )

    def _status(self, run_id: str, state: StepState, attempt: int) -> None:
        # Best effort: "started" is informative, the later messages are the ones awaited.
        try:
            self.transport.send(
                self.cfg.status_topic,
                status_message(run_id, self.spec.step, state, attempt),
                run_id,
            )
        except KafkaError as exc:
            log.warning("status %s not sent: %r", state.value, exc)

    def _publish(
        self, messages: list[tuple[str, dict[str, Any], str | None]], *, final: bool = False
    ) -> None:
        """Send and wait for every ack; retry the batch (duplicates are tolerated downstream)
        until the broker takes it, or abandon when stopping. ``final``: the handling of the
        message ends with these, so the next message may start while the acks are awaited."""
        delay = 0.5
        job: Job | None = getattr(self._tls, "job", None)
        lane = job.tp.partition if job is not None else None
        # the downstream messages carry the execution's span (``traceparent``), if traced
        trace: Headers = getattr(self._tls, "trace", None) or []
        outputs = self.cfg.output_topics
        while True:
            try:
                futures = [
                    self.transport.send(t, m, k, lane=lane, headers=trace if t in outputs else None)
                    for t, m, k in messages
                ]
                if final and job is not None:
                    job.handled.set()
                for fut in futures:
                    fut.get(timeout=60)
                return
            except KafkaError as exc:
                log.warning("publishing failed, retrying in %.1fs: %r", delay, exc)
            if (
                self.stop.is_set()
                and self.stop_at is not None
                and time.monotonic() - self.stop_at > self.cfg.shutdown_grace_seconds / 2
            ):
                raise Abandon()
            time.sleep(delay)
            delay = min(delay * 2, 10.0)


def _cell_spans(span: Deferred) -> Callable[[list[CellRecord], ErrorRecord | None], None]:
    """``run_step``'s ``on_cells``: a span per cell executed under ``span`` (index only)."""

    def cells(records: list[CellRecord], error: ErrorRecord | None) -> None:
        failed = error.cell if error is not None else None
        timings = ((c.index, c.started_at, c.seconds) for c in records)
        span.span().cells(timings, failed, error.ename if error is not None else "")

    return cells
