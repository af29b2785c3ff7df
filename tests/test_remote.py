"""``jup2kub submit``/``status``/``results`` against a pipeline running on a real Kafka."""

from __future__ import annotations

import gc
import json
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import nbformat
import pytest

from jup2kub.api import inspect_notebook
from jup2kub.plan import plan_pipeline
from jup2kub.run.kafka import free_port
from jup2kub_runtime.contract.topics import runs_topic
from tests.support.cli_runner import CORPUS, jup2kub
from tests.support.crate_validation import validate
from tests.support.processes import processes_in
from tests.support.step_runtimes import start_runtimes, stop_runtimes

MakeNb = Callable[..., Path]


def test_submit_status_results(kafka: str, tmp_path: Path, make_notebook: MakeNb) -> None:
    nb = make_notebook(
        [
            ("code", "n = 3", ["parameters"]),
            "#| step: make\nvalues = [i * i for i in range(n)]",
            "#| step: total\nprint('total', sum(values))",
            "#| step: boom\nif n > 5:\n    raise RuntimeError(f'n too large: {n}')\nprint('ok')",
        ],
        name="02 Remote Demo.ipynb",
    )
    pipeline = inspect_notebook(nb)
    assert pipeline.name == "nb-02-remote-demo"  # a leading digit is not allowed in Services
    state = tmp_path / "state"
    procs = start_runtimes(plan_pipeline(pipeline), kafka, tmp_path)
    try:
        ok = jup2kub("submit", nb, "--kafka", kafka, "-p", "n", "4", cwd=tmp_path)
        assert ok.returncode == 0, ok.stderr
        good = ok.stdout.strip()
        bad = jup2kub(
            "submit", nb, "--kafka", kafka, "-p", "n", "9", "--run-id", "bad-run", cwd=tmp_path
        )
        assert bad.returncode == 0 and bad.stdout.strip() == "bad-run"
        assert (
            jup2kub("submit", nb, "--kafka", kafka, "--run-id", "../x", cwd=tmp_path).returncode
            == 2
        )

        def states(run: str) -> dict[str, str]:
            proc = jup2kub("status", nb, run, "--kafka", kafka, "--json", cwd=tmp_path)
            assert proc.returncode == 0, proc.stderr
            return {k: v["state"] for k, v in json.loads(proc.stdout).items()}

        deadline = time.monotonic() + 120
        while states(good) != {"make": "succeeded", "total": "succeeded", "boom": "succeeded"}:
            assert time.monotonic() < deadline, states(good)
        while states("bad-run").get("boom") != "failed":
            assert time.monotonic() < deadline, states("bad-run")
        text = jup2kub("status", nb, "bad-run", "--kafka", kafka, cwd=tmp_path).stdout
        assert "RuntimeError: n too large: 9 (cell 3)" in text

        out = tmp_path / "good.ipynb"
        res = jup2kub("results", nb, good, "--state", state, "-o", out, cwd=tmp_path)
        assert res.returncode == 0, res.stderr
        assert "succeeded" in res.stdout
        result = nbformat.read(out, as_version=4)
        assert result.cells[1].source == "# Parameters\nn = 4\n"
        assert result.cells[3].outputs[0]["text"] == "total 14\n"
        crate = tmp_path / "good-crate" / "ro-crate-metadata.json"  # its provenance, beside it
        assert f"provenance (RO-Crate): {crate}" in res.stdout
        checked = validate(crate.parent)
        assert checked.passed, "\n".join(checked.issues)
        graph = {e["@id"]: e for e in json.loads(crate.read_text())["@graph"]}
        assert graph[f"#{good}"]["actionStatus"]["@id"] == "http://schema.org/CompletedActionStatus"
        assert {
            graph[f"#{good}/{s}"]["actionStatus"]["@id"] for s in ("make", "total", "boom")
        } == {"http://schema.org/CompletedActionStatus"}
        missing = jup2kub("results", nb, "nope", "--state", state, cwd=tmp_path)
        assert missing.returncode == 2 and "no run 'nope'" in missing.stderr
    finally:
        stop_runtimes(procs)


def test_submit_and_status_address_the_pipeline_by_its_name(
    kafka: str, tmp_path: Path, make_notebook: MakeNb
) -> None:
    """`build --name X` names the topics X.*; submit and status must reach them with --name X
    (they used to derive the topics from the notebook's file name, whatever the build said)."""
    nb = make_notebook(["#| step: one\nx = 1", "#| step: two\nprint(x + 1)"], name="nb.ipynb")
    chart = tmp_path / "chart"
    built = jup2kub("build", nb, "-o", chart, "--no-images", "--name", "fraud-check", cwd=tmp_path)
    assert built.returncode == 0, built.stderr
    recorded = json.loads((chart / "pipeline.json").read_text())
    assert recorded["name"] == "fraud-check"
    procs = start_runtimes(plan_pipeline(inspect_notebook(nb, name="fraud-check")), kafka, tmp_path)
    try:
        sub = jup2kub("submit", nb, "--kafka", kafka, "--name", "fraud-check", cwd=tmp_path)
        assert sub.returncode == 0, sub.stderr
        run_id = sub.stdout.strip()
        deadline = time.monotonic() + 120
        while True:
            st = jup2kub(
                "status",
                nb,
                run_id,
                "--kafka",
                kafka,
                "--name",
                "fraud-check",
                "--json",
                cwd=tmp_path,
            )
            assert st.returncode == 0, st.stderr
            states = {k: v["state"] for k, v in json.loads(st.stdout).items()}
            if states == {"one": "succeeded", "two": "succeeded"}:
                break
            assert time.monotonic() < deadline, states
        # the notebook's own name addresses other topics, where this run is unknown
        other = jup2kub("status", nb, run_id, "--kafka", kafka, "--json", cwd=tmp_path)
        assert other.returncode == 0 and json.loads(other.stdout) == {}
        bad = jup2kub("submit", nb, "--kafka", kafka, "--name", "Not_A_Label", cwd=tmp_path)
        assert bad.returncode == 2 and "--name" in bad.stderr
    finally:
        stop_runtimes(procs)


def test_submit_and_status_without_a_broker_say_which_address(tmp_path: Path) -> None:
    """No broker at --kafka: a bounded wait, then one sentence naming the address (exit 1),
    never a NoBrokersAvailable traceback."""
    dead = f"127.0.0.1:{free_port()}"  # nothing listens there
    nb = CORPUS / "plain_cells.ipynb"
    for args in (("submit", nb, "--kafka", dead), ("status", nb, "some-run", "--kafka", dead)):
        proc = jup2kub(*args, "--kafka-timeout", "3s", timeout=120)
        assert proc.returncode == 1, proc.stderr
        assert f"cannot reach Kafka at {dead}" in proc.stderr, proc.stderr
        assert "waited 3 s" in proc.stderr
        assert "Traceback" not in proc.stderr


def test_submit_waits_for_a_broker_that_comes_up(tmp_path: Path) -> None:
    """A broker restarting (or its pod name not yet in DNS) when `submit` starts: it is waited
    for within --kafka-timeout, and the run is submitted once it answers."""
    from tests.support.kafka_broker import KafkaBroker

    broker = KafkaBroker(tmp_path / "kafka")  # its port is chosen, nothing listens yet
    nb = CORPUS / "plain_cells.ipynb"
    cmd = ["submit", nb, "--kafka", broker.bootstrap, "--kafka-timeout", "5m", "--run-id", "late"]
    proc = subprocess.Popen(
        [sys.executable, "-m", "jup2kub.cli", *map(str, cmd)],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        time.sleep(3)
        assert proc.poll() is None, proc.communicate()  # still waiting, not failed
        broker.start()
        from kafka.admin import KafkaAdminClient, NewTopic

        admin = KafkaAdminClient(bootstrap_servers=broker.bootstrap)  # the deployed pipeline's
        admin.create_topics([NewTopic(runs_topic("plain-cells"), 1, 1)])
        admin.close()
        out, err = proc.communicate(timeout=300)
        assert proc.returncode == 0, err
        assert out.strip() == "late"
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        broker.stop()


def test_run_kafka_without_a_broker_gives_up_after_kafka_timeout(tmp_path: Path) -> None:
    """`run --kafka` with nobody at the address: it waits --kafka-timeout, not for ever, then
    names the address (exit 1), and no step runtime is left behind."""
    dead = f"127.0.0.1:{free_port()}"  # nothing listens there
    nb = CORPUS / "plain_cells.ipynb"
    proc = jup2kub("run", nb, "--kafka", dead, "--kafka-timeout", "3s", cwd=tmp_path, timeout=120)
    assert proc.returncode == 1, proc.stderr
    assert f"check that Kafka answers at {dead}" in proc.stderr, proc.stderr
    assert "Traceback" not in proc.stderr
    assert processes_in(tmp_path) == []  # the runtimes started (in its cwd) have ended


def test_submit_outlives_a_broker_dying_under_it(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The broker killed after `submit` connected, before its message was acknowledged: no
    traceback (closing the producer used to raise while flushing), the message is sent again
    once the broker is back, within --kafka-timeout."""
    import threading

    from kafka import KafkaConsumer, TopicPartition
    from kafka.admin import KafkaAdminClient, NewTopic

    from jup2kub.run import remote
    from tests.support.kafka_broker import KafkaBroker

    broker = KafkaBroker(tmp_path / "kafka")
    broker.start()
    topic = runs_topic("dying")
    admin = KafkaAdminClient(bootstrap_servers=broker.bootstrap)
    admin.create_topics([NewTopic(topic, 1, 1)])
    admin.close()
    made: list[int] = []
    real = remote._producer

    def producer_then_kill(bootstrap: str, timeout: float) -> Any:
        producer = real(bootstrap, timeout)
        if not made:  # the first time: the broker dies now, back after the send timed out
            producer.partitions_for(topic)  # its metadata known: the send goes out at once
            assert broker.proc is not None
            broker.proc.kill()
            broker.proc.wait()
            broker.proc = None
            threading.Timer(8, broker.start).start()
        made.append(1)
        return producer

    monkeypatch.setattr(remote, "_producer", producer_then_kill)
    unraisable: list[Any] = []
    monkeypatch.setattr(sys, "unraisablehook", unraisable.append)
    try:
        remote.submit_run(broker.bootstrap, "dying", "r1", {}, timeout=5, connect_timeout=240)
        assert len(made) >= 2  # sent again with a new producer
        gc.collect()  # the abandoned producer is closed: its __del__ has nothing to raise
        assert unraisable == []
        consumer = KafkaConsumer(bootstrap_servers=broker.bootstrap, consumer_timeout_ms=10000)
        tp = TopicPartition(topic, 0)
        consumer.assign([tp])
        consumer.seek_to_beginning(tp)
        keys = {r.key for r in consumer}
        consumer.close()
        assert b"r1" in keys
    finally:
        broker.stop()
