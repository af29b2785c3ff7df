"""Failures on a real broker: kill -9, broker restart, raising code, bad messages, long steps,
SIGTERM, and what the health endpoints say meanwhile."""

from __future__ import annotations

import json
import time
from pathlib import Path

import pytest
from kafka import KafkaConsumer, TopicPartition
from test_pipelines import check_linear, linear_specs

from jup2kub_runtime.contract.spec import Cell, StepSpec
from jup2kub_runtime.contract.topics import edge_topic, runs_topic
from tests.support.kafka_broker import KafkaBroker
from tests.support.prometheus import value
from tests.support.runtime_harness import Pipeline, count_effects, effect_cell, unique


def wait_for(cond, timeout: float = 60, what: str = "condition") -> None:  # type: ignore[no-untyped-def]
    deadline = time.monotonic() + timeout
    while not cond():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.05)


def test_kill9_mid_execution_repeatedly(broker: KafkaBroker, tmp_path: Path) -> None:
    effects = tmp_path / "effects"
    effects.mkdir()
    specs = linear_specs(
        unique("kill"),
        effects,
        mid_body="time.sleep(0.4)\ny = x + 1",
        sink_body="time.sleep(0.2)\nz = y * 10",
    )
    p = Pipeline(tmp_path, broker.bootstrap, specs, extra_env={"J2K_MAX_RETRIES": "10"}).start()
    try:
        p.wait_ready()
        runs = {f"k{i:02d}": i for i in range(30)}
        for run_id, seed in runs.items():
            p.submit(run_id, seed=seed, RUN_ID=run_id)
        killed: set[str] = set()
        for victim in ("mid", "mid", "sink", "mid"):
            # Kill while a run not killed before is inside its cell (started, not ended).
            def executing(step: str = victim) -> str | None:
                starts = count_effects(effects, step, "start")
                ends = count_effects(effects, step, "end")
                busy = [r for r in starts if r not in ends and r not in killed]
                return busy[0] if busy else None

            wait_for(lambda v=victim: executing(v) is not None, 90, f"{victim} executing")
            run = executing()
            assert run is not None
            p.proc(victim).kill9()
            killed.add(run)
            assert not p.store.is_complete(run, victim)
            p.restart(victim)
        p.wait_complete(runs)
        check_linear(p, effects, runs)  # every run once to completion, right values
        for run_id in runs:
            for step in ("load", "mid", "sink"):
                assert p.store.completion(run_id, step) is not None
        # the killed runs really were started twice
        starts = count_effects(effects, "mid", "start")
        assert any(starts.get(r, 0) >= 2 for r in killed)
    finally:
        p.stop()


def test_broker_restart_loses_nothing_and_readiness_follows(
    own_broker: KafkaBroker, tmp_path: Path
) -> None:
    effects = tmp_path / "effects"
    effects.mkdir()
    p = Pipeline(
        tmp_path,
        own_broker.bootstrap,
        linear_specs(unique("brk"), effects, mid_body="time.sleep(0.05)\ny = x + 1"),
    ).start()
    try:
        p.wait_ready()
        first = {f"a{i}": i for i in range(30)}
        for run_id, seed in first.items():
            p.submit(run_id, seed=seed, RUN_ID=run_id)
        wait_for(lambda: len(count_effects(effects, "sink")) >= 3, 60, "some runs done")
        p.producer.flush()
        own_broker.stop()
        # readiness drops while the broker is away; liveness stays
        mid = p.proc("mid")
        wait_for(lambda: mid.get("/readiness")[0] == 503, 30, "readiness 503")
        _, body = mid.get("/readiness")
        assert isinstance(body, dict) and body["kafka_connected"] is False
        assert mid.get("/healthz")[0] == 200
        time.sleep(2)
        own_broker.start()
        wait_for(lambda: mid.get("/readiness")[0] == 200, 90, "readiness back to 200")
        second = {f"b{i}": 100 + i for i in range(30)}
        for run_id, seed in second.items():
            p.submit(run_id, seed=seed, RUN_ID=run_id)
        runs = {**first, **second}
        p.wait_complete(runs, timeout=180)
        check_linear(p, effects, runs)
    finally:
        p.stop()


def test_raising_code_is_retried_then_dead_lettered(broker: KafkaBroker, tmp_path: Path) -> None:
    effects = tmp_path / "effects"
    effects.mkdir()
    name = unique("err")
    spec = StepSpec(
        pipeline=name,
        step="only",
        parameters_source="seed = 0\nRUN_ID = 'none'\n",
        cells=[
            Cell(index=1, source="v = seed + 1"),
            effect_cell(
                2, "only", effects, "if seed % 4 == 0:\n    raise ValueError(f'bad seed {seed}')"
            ),
        ],
        outputs=["v"],
    )
    p = Pipeline(
        tmp_path,
        broker.bootstrap,
        [spec],
        extra_env={"J2K_MAX_RETRIES": "2", "J2K_RETRY_BACKOFF_SECONDS": "0.1"},
    ).start()
    try:
        p.wait_ready()
        runs = {f"e{i}": i for i in range(1, 10)}
        for run_id, seed in runs.items():
            p.submit(run_id, seed=seed, RUN_ID=run_id)
        bad = {r for r, s in runs.items() if s % 4 == 0}
        good = set(runs) - bad
        p.wait_complete(good)
        dls = p.dead_letters(lambda ms: len(ms) >= len(bad))
        assert {m["run_id"] for m in dls} == bad
        for m in dls:
            assert m["type"] == "dead-letter" and m["step"] == "only" and m["version"] == 1
            assert m["reason"] == "retries exhausted"
            assert m["error"]["cell"] == 2 and m["error"]["ename"] == "ValueError"
            assert "bad seed" in m["error"]["evalue"]
            assert any("<cell 2>" in line for line in m["error"]["traceback"])
            assert json.loads(m["original"])["run_id"] == m["run_id"]
        statuses = p.statuses(lambda ms: sum(m["state"] == "failed" for m in ms) >= len(bad))
        for run_id in bad:
            states = [m["state"] for m in statuses if m["run_id"] == run_id]
            assert states == ["started", "retrying", "started", "retrying", "started", "failed"]
            assert not p.store.is_complete(run_id, "only")
            assert p.store.attempts(run_id, "only") == 3
            assert p.store.error(run_id, "only")["ename"] == "ValueError"
        starts = count_effects(effects, "only", "start")
        assert all(starts[r] == 3 for r in bad)
        assert all(starts[r] == 1 for r in good)
        _, metrics = p.proc("only").get("/metrics")
        assert isinstance(metrics, str)
        labels = {"pipeline": name, "step": "only"}
        executions = "j2k_step_executions_total"
        assert value(metrics, executions, **labels, outcome="failed") == len(bad)
        assert value(metrics, executions, **labels, outcome="retried") == 2 * len(bad)
    finally:
        p.stop()


def test_malformed_and_oversized_messages_dead_lettered(
    broker: KafkaBroker, tmp_path: Path
) -> None:
    name = unique("bad")
    root = StepSpec(
        pipeline=name,
        step="root",
        parameters_source="seed = 0\n",
        cells=[Cell(index=1, source="w = seed")],
        outputs=["w"],
        downstream=["tail"],
    )
    tail = StepSpec(
        pipeline=name,
        step="tail",
        cells=[Cell(index=2, source="u = w")],
        inputs={"w": "root"},
        outputs=["u"],
        upstream=["root"],
    )
    p = Pipeline(
        tmp_path, broker.bootstrap, [root, tail], extra_env={"J2K_MAX_MESSAGE_BYTES": "65536"}
    ).start()
    try:
        p.wait_ready()
        bad = [
            b"\xff\xfe not utf-8",
            b"{not json",
            b"[1, 2, 3]",
            json.dumps({"version": 2, "type": "run", "run_id": "x"}).encode(),
            json.dumps({"version": 1, "type": "run", "run_id": "../../etc"}).encode(),
            json.dumps({"version": 1, "type": "run", "run_id": "ok", "parameters": [1]}).encode(),
            json.dumps(
                {
                    "version": 1,
                    "type": "run",
                    "run_id": "big",
                    "parameters": {"blob": "x" * 100_000},
                }
            ).encode(),
        ]
        for value in bad:
            p.send_raw(value)
        # a step-done from a step that is not upstream, on the tail's edge topic
        p.send_raw(
            json.dumps(
                {
                    "version": 1,
                    "type": "step-done",
                    "run_id": "zz",
                    "step": "nobody",
                    "parameters": {},
                }
            ).encode(),
            topic=edge_topic(name, "root", "tail"),
        )
        p.submit("fine", seed=5)
        p.wait_complete(["fine"])
        assert p.store.load_value("fine", "tail", "u") == 5
        dls = p.dead_letters(lambda ms: len(ms) >= len(bad) + 1)
        assert len(dls) == len(bad) + 1
        reasons = [m["reason"] for m in dls]
        assert any("not UTF-8 JSON" in r for r in reasons)
        assert any("not a JSON object" in r for r in reasons)
        assert any("unsupported message version 2" in r for r in reasons)
        assert any("run id '../../etc' is invalid" in r for r in reasons)
        assert any("'parameters' must be a JSON object" in r for r in reasons)
        big = [m for m in dls if m["reason"].startswith("oversized message")]
        assert len(big) == 1 and big[0]["original_bytes"] > 100_000
        assert len(big[0]["original"]) <= 4096
        assert any("not upstream" in r for r in reasons)
        assert not (p.state / "runs" / "etc").exists()
    finally:
        p.stop()


def test_long_step_runs_once_and_stays_alive(broker: KafkaBroker, tmp_path: Path) -> None:
    effects = tmp_path / "effects"
    effects.mkdir()
    name = unique("long")
    spec = StepSpec(
        pipeline=name,
        step="slow",
        parameters_source="RUN_ID = 'none'\n",
        cells=[effect_cell(1, "slow", effects, "import time\ntime.sleep(9)\nr = 1")],
        outputs=["r"],
    )
    p = Pipeline(
        tmp_path,
        broker.bootstrap,
        [spec],
        extra_env={"J2K_MAX_POLL_INTERVAL_MS": "3000", "J2K_SESSION_TIMEOUT_MS": "2000"},
    ).start()
    try:
        p.wait_ready()
        p.submit("long1", RUN_ID="long1")
        p.submit("long2", RUN_ID="long2")
        slow = p.proc("slow")
        wait_for(lambda: "long1" in count_effects(effects, "slow", "start"), 30, "start")
        seen_busy = 0.0
        while not p.store.is_complete("long1", "slow"):
            code, body = slow.get("/healthz")
            assert code == 200, body
            assert isinstance(body, dict)
            seen_busy = max(seen_busy, body["busy_seconds"] or 0.0)
            time.sleep(0.5)
        assert seen_busy > 3.0  # longer than max.poll.interval.ms, still alive
        p.wait_complete(["long1", "long2"], timeout=60)
        assert count_effects(effects, "slow", "start") == {"long1": 1, "long2": 1}
        assert count_effects(effects, "slow", "end") == {"long1": 1, "long2": 1}
        # the consumer never left its group: one assignment, offsets committed
        log = slow.log_text()
        assert log.count(f"assigned partitions: {name}.runs") == 1, log
        assert "commit of" not in log, log
        probe = KafkaConsumer(
            bootstrap_servers=broker.bootstrap, group_id=f"{name}.slow", enable_auto_commit=False
        )
        try:
            tps = [TopicPartition(runs_topic(name), i) for i in (0, 1)]
            wait_for(
                lambda: sum(probe.committed(tp) or 0 for tp in tps) == 2, 20, "offsets committed"
            )
        finally:
            probe.close(autocommit=False)
    finally:
        p.stop()


@pytest.mark.parametrize("grace", ["20", "1"])
def test_sigterm_finishes_or_abandons_current_run(
    broker: KafkaBroker, tmp_path: Path, grace: str
) -> None:
    effects = tmp_path / "effects"
    effects.mkdir()
    name = unique("term")
    spec = StepSpec(
        pipeline=name,
        step="s",
        parameters_source="RUN_ID = 'none'\n",
        cells=[effect_cell(1, "s", effects, "import time\ntime.sleep(3)\nq = 2")],
        outputs=["q"],
    )
    p = Pipeline(
        tmp_path, broker.bootstrap, [spec], extra_env={"J2K_SHUTDOWN_GRACE_SECONDS": grace}
    ).start()
    try:
        p.wait_ready()
        p.submit("t1", RUN_ID="t1")
        p.submit("t2", RUN_ID="t2")
        wait_for(lambda: "t1" in count_effects(effects, "s", "start"), 30, "start")
        t0 = time.monotonic()
        assert p.proc("s").terminate() == 0
        took = time.monotonic() - t0
        if grace == "20":
            # finished the current run, committed, took no new one
            assert p.store.is_complete("t1", "s") and not p.store.is_complete("t2", "s")
            assert "t2" not in count_effects(effects, "s", "start")
        else:
            assert took < 3 and not p.store.is_complete("t1", "s")
        p.restart("s")
        p.wait_complete(["t1", "t2"], timeout=60)
        assert count_effects(effects, "s", "end") == {"t1": 1, "t2": 1}
    finally:
        p.stop()


def test_readiness_needs_a_broker(tmp_path: Path) -> None:
    """A step started with no broker reachable is alive but not ready."""
    from tests.support.kafka_broker import free_port

    spec = StepSpec(pipeline="nob", step="s", cells=[Cell(index=1, source="a = 1")], outputs=["a"])
    p = Pipeline(tmp_path, f"127.0.0.1:{free_port()}", [spec]).start()
    try:
        s = p.proc("s")
        wait_for(lambda: _get_or_none(s, "/healthz") is not None, 30, "http up")
        assert s.get("/readiness")[0] == 503
    finally:
        p.stop()


def _get_or_none(proc, path):  # type: ignore[no-untyped-def]
    try:
        return proc.get(path)
    except OSError:
        return None


def test_skip_of_a_completed_step_republishes_its_status(
    broker: KafkaBroker, tmp_path: Path
) -> None:
    """A process that died between a step's COMPLETE marker and its "succeeded" status: the
    redelivery is skipped and re-announced, and its status is said again, so the run does not
    look stuck at "waiting" (reproduced by completing the first step before submitting)."""
    from jup2kub_runtime.execution.step_run import run_step

    effects = tmp_path / "effects"
    effects.mkdir()
    specs = linear_specs(unique("skip"), effects)
    p = Pipeline(tmp_path, broker.bootstrap, specs)
    run_step(specs[0], p.store, "pre", {"seed": 3, "RUN_ID": "pre"})
    assert p.store.is_complete("pre", "load")
    p.start()
    try:
        p.wait_ready()
        p.submit("pre", seed=3, RUN_ID="pre")
        p.wait_complete(["pre"])
        statuses = p.statuses(
            lambda ms: (
                {m["step"] for m in ms if m.get("state") == "succeeded"} >= {"load", "mid", "sink"}
            )
        )
        load = [m for m in statuses if m["step"] == "load"]
        assert [m["state"] for m in load] == ["succeeded"]  # never executed again
        assert count_effects(effects, "load") == {"pre": 1}
    finally:
        p.stop()
