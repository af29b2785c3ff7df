"""Runs pipelines of real ``python -m jup2kub_runtime`` processes against a real broker."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
import urllib.error
import urllib.request
import uuid
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any

from kafka import KafkaConsumer, KafkaProducer, TopicPartition

from jup2kub_runtime.contract.messages import run_message
from jup2kub_runtime.contract.spec import Cell, StepSpec
from jup2kub_runtime.contract.topics import dead_letter_topic, edge_topic, runs_topic, status_topic
from jup2kub_runtime.storage.state_store import StateStore
from tests.support.kafka_broker import free_port

REPO = Path(__file__).resolve().parents[2]
RUNTIME_DIR = REPO / "runtime"


def effect_cell(index: int, step: str, effects: Path, body: str) -> Cell:
    """A cell that logs 'start'/'end' side effects around ``body`` (to count executions)."""
    log = effects / f"{step}.log"
    src = (
        f"with open({str(log)!r}, 'a') as _f: _f.write('start ' + RUN_ID + '\\n')\n"
        f"{body}\n"
        f"with open({str(log)!r}, 'a') as _f: _f.write('end ' + RUN_ID + '\\n')\n"
    )
    return Cell(index=index, source=src)


def count_effects(effects: Path, step: str, kind: str = "end") -> dict[str, int]:
    counts: dict[str, int] = {}
    path = effects / f"{step}.log"
    if not path.exists():
        return counts
    for line in path.read_text().splitlines():
        k, _, run = line.partition(" ")
        if k == kind:
            counts[run] = counts.get(run, 0) + 1
    return counts


class StepProcess:
    """One runtime process; killed/stopped by its own pid only."""

    def __init__(self, pipeline: Pipeline, spec: StepSpec, env: dict[str, str], n: int) -> None:
        self.pipeline = pipeline
        self.spec = spec
        self.env = env
        self.port = int(env["J2K_PORT"])
        self.log = pipeline.root / "logs" / f"{spec.step}.{n}.log"
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        self.log.parent.mkdir(parents=True, exist_ok=True)
        with self.log.open("ab") as out:
            self.proc = subprocess.Popen(
                [sys.executable, "-m", "jup2kub_runtime"],
                env=self.env,
                stdout=out,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )

    def kill9(self) -> None:
        assert self.proc is not None
        self.proc.send_signal(signal.SIGKILL)
        self.proc.wait(10)

    def terminate(self, timeout: float = 60) -> int:
        assert self.proc is not None
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
        try:
            return self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait(10)
            raise

    def get(self, path: str, timeout: float = 3.0) -> tuple[int, dict[str, Any] | str]:
        url = f"http://127.0.0.1:{self.port}{path}"
        try:
            with urllib.request.urlopen(url, timeout=timeout) as resp:
                body = resp.read().decode()
                code = resp.status
        except urllib.error.HTTPError as exc:
            body, code = exc.read().decode(), exc.code
        try:
            return code, json.loads(body)
        except ValueError:
            return code, body

    def log_text(self) -> str:
        return self.log.read_text(errors="replace") if self.log.exists() else ""


class Pipeline:
    """Writes step bundles for ``specs``, starts one process per step, submits runs."""

    def __init__(
        self,
        root: Path,
        bootstrap: str,
        specs: list[StepSpec],
        extra_env: dict[str, str] | None = None,
        step_env: dict[str, dict[str, str]] | None = None,
    ) -> None:
        self.root = root
        self.bootstrap = bootstrap
        self.name = specs[0].pipeline
        self.specs = {s.step: s for s in specs}
        self.state = root / "state"
        self.store = StateStore(self.state)
        self.procs: dict[str, list[StepProcess]] = {}
        self.extra_env = extra_env or {}
        self.step_env = step_env or {}
        self._producer: KafkaProducer | None = None
        self._submitted = 0

    def env_for(self, spec: StepSpec) -> dict[str, str]:
        code = self.root / "code" / spec.step
        code.mkdir(parents=True, exist_ok=True)
        spec.dump(code)
        inputs = (
            [runs_topic(spec.pipeline)]
            if spec.is_root
            else [edge_topic(spec.pipeline, u, spec.step) for u in spec.upstream]
        )
        outputs = [edge_topic(spec.pipeline, spec.step, d) for d in spec.downstream]
        env = {k: v for k, v in os.environ.items() if not k.startswith("J2K_")}
        env.update(
            {
                "PYTHONPATH": str(RUNTIME_DIR),
                "J2K_BOOTSTRAP_SERVERS": self.bootstrap,
                "J2K_PIPELINE": spec.pipeline,
                "J2K_STEP": spec.step,
                "J2K_INPUT_TOPICS": ",".join(inputs),
                "J2K_OUTPUT_TOPICS": ",".join(outputs),
                "J2K_STATE_PATH": str(self.state),
                "J2K_CODE_PATH": str(code),
                "J2K_PORT": str(free_port()),
                "J2K_HEALTH_HOST": "127.0.0.1",
                "J2K_SESSION_TIMEOUT_MS": "3000",
                "J2K_RETRY_BACKOFF_SECONDS": "0.1",
                "J2K_TOPIC_PARTITIONS": "2",
                "J2K_SHUTDOWN_GRACE_SECONDS": "20",
            }
        )
        env.update(self.extra_env)
        env.update(self.step_env.get(spec.step, {}))
        return env

    def start(self, replicas: dict[str, int] | None = None) -> Pipeline:
        for spec in self.specs.values():
            for n in range((replicas or {}).get(spec.step, 1)):
                env = self.env_for(spec)
                if n:
                    env["J2K_PORT"] = str(free_port())
                p = StepProcess(self, spec, env, n)
                p.start()
                self.procs.setdefault(spec.step, []).append(p)
        return self

    def proc(self, step: str, n: int = 0) -> StepProcess:
        return self.procs[step][n]

    def restart(self, step: str, n: int = 0) -> StepProcess:
        old = self.procs[step][n]
        new = StepProcess(self, old.spec, old.env, n)
        new.log = old.log
        new.start()
        self.procs[step][n] = new
        return new

    def wait_ready(self, timeout: float = 60) -> None:
        deadline = time.monotonic() + timeout
        for procs in self.procs.values():
            for p in procs:
                while True:
                    try:
                        if p.get("/readiness")[0] == 200:
                            break
                    except OSError:
                        pass
                    assert p.proc is not None and p.proc.poll() is None, p.log_text()[-3000:]
                    if time.monotonic() > deadline:
                        raise AssertionError(f"{p.spec.step} not ready:\n{p.log_text()[-3000:]}")
                    time.sleep(0.2)

    @property
    def producer(self) -> KafkaProducer:
        if self._producer is None:
            self._producer = KafkaProducer(
                bootstrap_servers=self.bootstrap, acks="all", max_request_size=4 * 1024 * 1024
            )
        return self._producer

    def submit(self, run_id: str, **params: Any) -> None:
        """Submit a run; runs go round-robin over the partitions, so that replicas of the
        root step get equal shares (hashing a few run ids does not spread them evenly)."""
        topic = runs_topic(self.name)
        parts = sorted(self.producer.partitions_for(topic) or [0])
        self._submitted += 1
        self.send_raw(
            json.dumps(run_message(run_id, params)).encode(),
            key=run_id,
            partition=parts[self._submitted % len(parts)],
        )

    def send_raw(
        self,
        value: bytes,
        key: str | None = None,
        topic: str | None = None,
        partition: int | None = None,
        headers: list[tuple[str, bytes]] | None = None,
    ) -> None:
        self.producer.send(
            topic or runs_topic(self.name),
            value,
            partition=partition,
            key=key.encode() if key else None,
            headers=headers,
        ).get(60)

    def wait_complete(
        self, run_ids: Iterable[str], steps: Iterable[str] | None = None, timeout: float = 240
    ) -> None:
        run_ids = list(run_ids)
        steps = list(steps or self.specs)
        deadline = time.monotonic() + timeout
        while True:
            missing = [(r, s) for r in run_ids for s in steps if not self.store.is_complete(r, s)]
            if not missing:
                return
            if time.monotonic() > deadline:
                logs = "\n".join(
                    f"--- {s}\n{p.log_text()[-2000:]}" for s, ps in self.procs.items() for p in ps
                )
                raise AssertionError(f"{len(missing)} not complete, e.g. {missing[:5]}\n{logs}")
            time.sleep(0.2)

    def read_topic(
        self, topic: str, until: Callable[[list[dict[str, Any]]], bool], timeout: float = 60
    ) -> list[dict[str, Any]]:
        """All JSON messages of ``topic`` from the start, once ``until(messages)`` holds."""
        consumer = KafkaConsumer(
            bootstrap_servers=self.bootstrap,
            group_id=None,
            enable_auto_commit=False,
            auto_offset_reset="earliest",
        )
        try:
            parts = consumer.partitions_for_topic(topic) or set()
            tps = [TopicPartition(topic, p) for p in parts]
            consumer.assign(tps)
            consumer.seek_to_beginning(*tps)
            out: list[dict[str, Any]] = []
            deadline = time.monotonic() + timeout
            while True:
                for recs in consumer.poll(timeout_ms=500).values():
                    out.extend(json.loads(r.value) for r in recs)
                if until(out):
                    return out
                if time.monotonic() > deadline:
                    raise AssertionError(f"{topic}: condition not met; got {out[-10:]}")
        finally:
            consumer.close()

    def statuses(
        self, until: Callable[[list[dict[str, Any]]], bool], timeout: float = 60
    ) -> list[dict[str, Any]]:
        return self.read_topic(status_topic(self.name), until, timeout)

    def dead_letters(
        self, until: Callable[[list[dict[str, Any]]], bool], timeout: float = 60
    ) -> list[dict[str, Any]]:
        return self.read_topic(dead_letter_topic(self.name), until, timeout)

    def stop(self) -> None:
        for procs in self.procs.values():
            for p in procs:
                if p.proc is not None and p.proc.poll() is None:
                    p.proc.send_signal(signal.SIGKILL)
                    p.proc.wait(10)
        if self._producer is not None:
            self._producer.close(timeout=5)


def unique(prefix: str) -> str:
    return f"{prefix}{uuid.uuid4().hex[:6]}"
