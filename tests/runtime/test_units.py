"""Kafka-free parts of the runtime: spec, messages, config, cells, state store, CLI."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import threading
from pathlib import Path

import pytest

from jup2kub_runtime import STEP_RUN_MODULE
from jup2kub_runtime.contract.config import DEFAULT_CODE_PATH, DEFAULT_PORT, Config
from jup2kub_runtime.contract.errors import (
    CellError,
    ConfigError,
    ErrorRecord,
    MessageError,
    MissingInputError,
    OutputError,
    PermanentError,
    SpecError,
)
from jup2kub_runtime.contract.messages import (
    dead_letter_message,
    parse,
    run_message,
    status_message,
    step_done_message,
)
from jup2kub_runtime.contract.spec import SPEC_VERSION, Cell, ReplayCell, StepSpec
from jup2kub_runtime.contract.states import STATUS_STATES, StepState
from jup2kub_runtime.execution import step_run
from jup2kub_runtime.execution.cell_runner import execute_step
from jup2kub_runtime.execution.step_run import run_step
from jup2kub_runtime.storage.state_store import StateStore
from tests.support.runtime_harness import RUNTIME_DIR

SPEC_JSON = {
    "version": 1,
    "pipeline": "iris",
    "step": "train",
    "parameters_source": "alpha = 0.5\nn = 10\n",
    "parameters": ["alpha"],
    "replay": [{"cell": 1, "source": "import math\ndef f(x):\n    return x * 2\n"}],
    "cells": [{"index": 5, "source": "model = f(len(df)) * alpha\nprint(model)"}],
    "inputs": {"df": "load"},
    "outputs": ["model"],
    "upstream": ["load"],
    "downstream": ["evaluate"],
    "groups": [],
    "readonly_inputs": ["df"],
    "random_guard": True,
    "placeholders": [],
}


def test_spec_roundtrip_and_validation(tmp_path: Path) -> None:
    spec = StepSpec.from_json(json.dumps(SPEC_JSON))
    assert spec.version == SPEC_VERSION == 1
    assert spec.cells == [Cell(5, SPEC_JSON["cells"][0]["source"])]  # type: ignore[index]
    assert spec.replay[0] == ReplayCell(1, SPEC_JSON["replay"][0]["source"])  # type: ignore[index]
    assert json.loads(spec.to_json()) == SPEC_JSON
    assert StepSpec.load(spec.dump(tmp_path)) == spec
    for bad, message in [
        ({**SPEC_JSON, "version": 2}, "version 2"),
        ({**SPEC_JSON, "step": "../x"}, "step name"),
        ({**SPEC_JSON, "inputs": {"df": "elsewhere"}}, "not upstream"),
        ({**SPEC_JSON, "outputs": ["not an id"]}, "identifier"),
        ({k: v for k, v in SPEC_JSON.items() if k != "cells"}, "lacks 'cells'"),
        ({**SPEC_JSON, "cells": [{"index": "1", "source": ""}]}, "'index' must be int"),
        ({**SPEC_JSON, "groups": [["model", "other"]]}, "not outputs"),
        ({**SPEC_JSON, "readonly_inputs": ["model"]}, "must be inputs"),
        ({**SPEC_JSON, "random_guard": "yes"}, "'random_guard' must be bool"),
    ]:
        with pytest.raises(SpecError, match=message):
            StepSpec.from_json(json.dumps(bad))
    with pytest.raises(SpecError, match="not valid JSON"):
        StepSpec.from_json("{")


def test_step_state_values_are_the_wire_values() -> None:
    # "blocked": a step failed for good before this step's first cell (issue 28)
    wire = {"started", "succeeded", "failed", "retrying", "blocked"}
    assert {s.value for s in STATUS_STATES} == wire
    assert (StepState.WAITING.value, StepState.BLOCKED.value) == ("waiting", "blocked")
    assert json.dumps({"state": StepState.SUCCEEDED}) == '{"state": "succeeded"}'


def test_error_record_json() -> None:
    record = ErrorRecord(2, "ValueError", "bad", ["Traceback", "ValueError: bad"], phase="cell")
    doc = record.to_json()
    assert doc == {
        "output_type": "error",
        "cell": 2,
        "phase": "cell",
        "ename": "ValueError",
        "evalue": "bad",
        "traceback": ["Traceback", "ValueError: bad"],
    }
    assert ErrorRecord.from_json(json.loads(json.dumps(doc))) == record
    assert record.summary() == {"cell": 2, "ename": "ValueError", "evalue": "bad"}
    stored = ErrorRecord.of(OutputError("variable 'x' ...", variable="x"))
    assert stored.to_message() == {
        "cell": None,
        "ename": "OutputError",
        "evalue": "variable 'x' ...",
        "traceback": [],
        "variable": "x",
    }
    # older records: no variable, no phase, even no traceback
    old = ErrorRecord.from_json({"cell": None, "ename": "E", "evalue": "v"})
    assert (old.variable, old.phase, old.traceback) == (None, None, [])
    assert str(CellError(record)) == "cell 2: ValueError: bad"
    dead = dead_letter_message("permanent error", "s", b"{}", run_id="r", error=stored)
    assert dead["error"]["variable"] == "x"


def test_messages_validation() -> None:
    ok = parse(json.dumps(run_message("r-1", {"a": 1})).encode(), max_bytes=10_000)
    assert (ok.type, ok.run_id, ok.parameters) == ("run", "r-1", {"a": 1})
    done = parse(json.dumps(step_done_message("r-1", "load", {})).encode(), max_bytes=10_000)
    assert (done.type, done.step) == ("step-done", "load")
    failed = status_message("r", "s", StepState.FAILED, 2, {"ename": "E"})
    assert (failed["state"], failed["error"]) == ("failed", {"ename": "E"})
    with pytest.raises(AssertionError):
        status_message("r", "s", StepState.WAITING, 1)  # the local runner's, not on the wire
    for raw, reason in [
        (None, "empty"),
        (b"x" * 2000, "oversized"),
        (b"\xff", "UTF-8"),
        (b'{"version": 1, "type": "run", "run_id": "a", "parameters": {"x": NaN}}', "JSON"),
        (b'{"version": true, "type": "run", "run_id": "a"}', "version"),
        (b'{"version": 1, "type": "status", "run_id": "a"}', "type"),
        (b'{"version": 1, "type": "run", "run_id": ".."}', "run id"),
        (b'{"version": 1, "type": "run", "run_id": "a/b"}', "run id"),
        (b'{"version": 1, "type": "run", "run_id": "a", "parameters": {"1x": 1}}', "identifier"),
        (b'{"version": 1, "type": "step-done", "run_id": "a"}', "invalid step"),
    ]:
        with pytest.raises(MessageError, match=reason):
            parse(raw, max_bytes=1000)


BASE_ENV = {
    "J2K_BOOTSTRAP_SERVERS": "k:9092,k2:9093",
    "J2K_PIPELINE": "iris",
    "J2K_STEP": "train",
    "J2K_INPUT_TOPICS": "iris.edge.load.train",
    "J2K_STATE_PATH": "/state",
}


def test_config_defaults_and_errors() -> None:
    cfg = Config.from_env(BASE_ENV)
    assert cfg.bootstrap_servers == ["k:9092", "k2:9093"]
    assert (cfg.status_topic, cfg.dead_letter_topic, cfg.consumer_group) == (
        "iris.status",
        "iris.dead-letter",
        "iris.train",
    )
    assert cfg.output_topics == [] and cfg.max_retries == 3 and cfg.port == 8080
    assert str(cfg.code_path) == "/app/step"
    assert [cfg.retry_delay(a) for a in (1, 2, 3)] == [1.0, 2.0, 4.0]
    assert Config.from_env({**BASE_ENV, "J2K_RETRY_BACKOFF_MAX_SECONDS": "3"}).retry_delay(5) == 3
    for var, value in [
        ("J2K_BOOTSTRAP_SERVERS", "nohost"),
        ("J2K_MAX_RETRIES", "x"),
        ("J2K_STEP_TIMEOUT_SECONDS", "-1"),
        ("J2K_PORT", "70000"),
        ("J2K_INPUT_TOPICS", " , "),
        ("J2K_PIPELINE", "a b"),
        ("J2K_STATE_PATH", ""),
    ]:
        with pytest.raises(ConfigError) as info:
            Config.from_env({**BASE_ENV, var: value})
        assert info.value.variable == var


def test_config_to_env_round_trips() -> None:
    cfg = Config.from_env(
        {
            **BASE_ENV,
            "J2K_OUTPUT_TOPICS": "iris.edge.train.eval",
            "J2K_RETRY_BACKOFF_SECONDS": "0.1",
            "J2K_FSYNC": "no",
            "J2K_LOG_LEVEL": "debug",
            "J2K_STEP_TIMEOUT_SECONDS": "2.5",
        }
    )
    env = cfg.to_env()
    assert all(k.startswith("J2K_") and isinstance(v, str) for k, v in env.items())
    assert Config.from_env(env) == cfg
    bare = Config.from_env(BASE_ENV)
    assert Config.from_env(bare.to_env()) == bare


def test_config_for_step_derives_the_wiring() -> None:
    root = Config.for_step("iris", "load", [], ["train", "plot"], "k:9092", "/state")
    assert root.input_topics == ["iris.runs"]
    assert root.output_topics == ["iris.edge.load.train", "iris.edge.load.plot"]
    assert (root.consumer_group, root.status_topic, root.dead_letter_topic) == (
        "iris.load",
        "iris.status",
        "iris.dead-letter",
    )
    assert (root.code_path, root.port) == (DEFAULT_CODE_PATH, DEFAULT_PORT)
    join = Config.for_step(
        "iris",
        "eval",
        ["train", "load"],
        [],
        ["a:1", "b:2"],
        "/s",
        "/c",
        port=0,
        max_retries=0,
        run_files=False,
        health_host="127.0.0.1",
    )
    assert join.input_topics == ["iris.edge.train.eval", "iris.edge.load.eval"]
    assert (join.output_topics, join.bootstrap_servers) == ([], ["a:1", "b:2"])
    assert (join.port, join.max_retries, join.run_files) == (0, 0, False)
    assert Config.from_env(join.to_env()) == join
    with pytest.raises(ConfigError, match="J2K_STEP"):
        Config.for_step("iris", "no good", [], [], "k:9092", "/s")


def test_missing_variable_stops_process_with_code_2() -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith("J2K_")}
    env.update({k: v for k, v in BASE_ENV.items() if k != "J2K_STEP"}, PYTHONPATH=str(RUNTIME_DIR))
    proc = subprocess.run(
        [sys.executable, "-m", "jup2kub_runtime"],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert proc.returncode == 2
    assert "J2K_STEP" in proc.stderr and "required" in proc.stderr


def spec_of(*cells: str, **kw: object) -> StepSpec:
    return StepSpec(
        pipeline="p",
        step=str(kw.pop("step", "s")),
        cells=[Cell(i + 1, c) for i, c in enumerate(cells)],
        **kw,
    )  # type: ignore[arg-type]


def test_cells_capture_like_jupyter() -> None:
    spec = spec_of(
        "print('out'); import sys; print('err', file=sys.stderr); print('more')\n1 + 1",
        "x = 3;",
        "x;",
        "from IPython.display import display, HTML\ndisplay(HTML('<b>b</b>'))\nclass K:\n"
        "    def _repr_html_(self): return '<i>k</i>'\nK()",
        "import matplotlib.pyplot as plt\nfig = plt.figure()\nplt.plot([1, 2])\nNone",
        parameters_source="x = 1\ny = 2\n",
        outputs=["x", "y"],
    )
    result = execute_step(spec, {}, {"y": 20})
    assert result.ok and result.values == {"x": 3, "y": 20}
    c1, c2, c3, c4, c5 = (c.outputs for c in result.cells)
    assert c1 == [  # ipykernel buffers each stream and flushes stdout first
        {"output_type": "stream", "name": "stdout", "text": "out\nmore\n"},
        {"output_type": "stream", "name": "stderr", "text": "err\n"},
        {
            "output_type": "execute_result",
            "execution_count": 1,
            "data": {"text/plain": "2"},
            "metadata": {},
        },
    ]
    assert c2 == [] and c3 == []  # a trailing ';' hides the value
    assert c4[0]["output_type"] == "display_data" and c4[0]["data"]["text/html"] == "<b>b</b>"
    assert c4[1]["output_type"] == "execute_result"
    assert c4[1]["data"]["text/html"] == "<i>k</i>"
    assert [o["output_type"] for o in c5] == ["display_data"]
    assert c5[0]["data"]["image/png"].startswith("iVBOR")  # base64 PNG
    doc = result.outputs_document()
    assert [c["index"] for c in doc["cells"]] == [1, 2, 3, 4, 5] and doc["error"] is None
    json.dumps(doc)


def test_cells_report_the_failing_cell() -> None:
    result = execute_step(
        spec_of("a = 1", "def g():\n    raise KeyError('k')\n", "print('x')\ng()", "never = 1"), {}
    )
    assert not result.ok and result.error is not None and not result.permanent
    assert result.error is not None
    assert (result.error.cell, result.error.ename) == (3, "KeyError")
    tb = "\n".join(result.error.traceback)
    assert 'File "<cell 3>", line 2' in tb and 'File "<cell 2>", line 2, in g' in tb
    assert "cells.py" not in tb
    assert len(result.cells) == 3
    assert result.cells[2].outputs[-1]["output_type"] == "error"
    syntax = execute_step(spec_of("def (:"), {})
    assert syntax.permanent and syntax.error is not None
    assert syntax.error is not None and syntax.error.ename == "SyntaxError"
    missing = execute_step(spec_of("a = 1", outputs=["b"]), {})
    assert missing.permanent and missing.error is not None and "b" in missing.error.evalue


def test_cells_timeout_in_a_worker_thread() -> None:
    out: list[object] = []
    t = threading.Thread(
        target=lambda: out.append(execute_step(spec_of("while True:\n    pass"), {}, timeout=0.5))
    )
    t.start()
    t.join(10)
    assert not t.is_alive()
    result = out[0]
    assert result.error is not None and result.error.ename == "StepTimeout"  # type: ignore[attr-defined]


def test_state_store_and_run_step(tmp_path: Path) -> None:
    store = StateStore(tmp_path)
    load = spec_of(
        "import threading\ndata = {'n': n}\nfn = lambda v: v + n",
        step="load",
        parameters_source="n = 1\n",
        outputs=["data", "fn"],
        downstream=["use"],
    )
    use = StepSpec(
        pipeline="p",
        step="use",
        cells=[Cell(9, "res = fn(data['n'])")],
        inputs={"data": "load", "fn": "load"},
        outputs=["res"],
        upstream=["load"],
    )
    with pytest.raises(MissingInputError, match="waits for load"):
        run_step(use, store, "r1")
    assert run_step(load, store, "r1", {"n": 5}).status == "succeeded"
    assert run_step(load, store, "r1", {"n": 5}).status == "skipped"
    assert run_step(use, store, "r1").status == "succeeded"
    assert store.load_value("r1", "use", "res") == 10
    marker = store.completion("r1", "use")
    assert marker is not None and marker["attempt"] == 1
    assert not list(tmp_path.rglob(".*.tmp-*"))
    # another process holds the lock: busy, not executed
    with store.lock("r2", "load") as got:
        assert got
        assert run_step(load, store, "r2").status == "busy"
    bad = spec_of("import threading\nlock = threading.Lock()", step="bad", outputs=["lock"])
    with pytest.raises(OutputError, match=r"'lock'.*cannot be stored"):
        run_step(bad, store, "r1")
    bad_error = store.error("r1", "bad")
    assert bad_error is not None and bad_error["ename"] == "OutputError"
    assert (bad_error["variable"], bad_error["phase"]) == ("lock", "outputs")
    failing = spec_of("raise RuntimeError('no')", step="failing")
    with pytest.raises(CellError) as info:
        run_step(failing, store, "r1")
    assert info.value.record.cell == 1 and store.attempts("r1", "failing") == 1
    with pytest.raises(PermanentError):
        store.run_dir("../etc")


def test_step_run_module_is_named_for_callers() -> None:
    assert step_run.__name__ == STEP_RUN_MODULE
    code = (
        "import sys, jup2kub_runtime; print('jup2kub_runtime.execution.cell_runner' in sys.modules)"
    )
    out = subprocess.run(
        [sys.executable, "-c", code],
        capture_output=True,
        text=True,
        check=True,
        env={**os.environ, "PYTHONPATH": str(RUNTIME_DIR)},
    )
    assert out.stdout.strip() == "False"  # naming the command does not import the cells


def test_step_run_command(tmp_path: Path) -> None:
    spec = spec_of("print('hello', x)\ny = x * 2", parameters_source="x = 1\n", outputs=["y"])
    spec.dump(tmp_path)
    env = {**os.environ, "PYTHONPATH": str(RUNTIME_DIR)}

    def run(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [
                sys.executable,
                "-m",
                STEP_RUN_MODULE,
                "--spec",
                str(tmp_path / "step.json"),
                "--state",
                str(tmp_path / "st"),
                *args,
            ],
            env=env,
            capture_output=True,
            text=True,
            timeout=60,
        )

    first = run("--run-id", "one", "--params", '{"x": 21}')
    assert first.returncode == 0, first.stderr
    assert json.loads(first.stdout)["status"] == "succeeded"
    assert StateStore(tmp_path / "st").load_value("one", "s", "y") == 42
    assert json.loads(run("--run-id", "one").stdout)["status"] == "skipped"
    assert run("--run-id", "../x").returncode == 2
    assert run("--run-id", "two", "--params", "[1]").returncode == 2
    spec_of("1/0").dump(tmp_path)
    failed = run("--run-id", "three")
    assert failed.returncode == 1
    assert json.loads(failed.stderr)["error"]["ename"] == "ZeroDivisionError"


def test_execute_command_started_ahead_waits_for_go(tmp_path: Path) -> None:
    """``--wait``: prepared ahead (imports, compiling), executes only after "go" on stdin;
    end of input cancels it without touching the state."""
    spec = spec_of("y = x * 2", parameters_source="x = 1\n", outputs=["y"])
    spec.dump(tmp_path)
    env = {**os.environ, "PYTHONPATH": str(RUNTIME_DIR)}

    def run(run_id: str, stdin: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [
                sys.executable,
                "-m",
                STEP_RUN_MODULE,
                "--spec",
                str(tmp_path / "step.json"),
                "--state",
                str(tmp_path / "st"),
                "--run-id",
                run_id,
                "--params",
                '{"x": 4}',
                "--wait",
            ],
            env=env,
            input=stdin,
            capture_output=True,
            text=True,
            timeout=60,
        )

    cancelled = run("early", "")
    assert cancelled.returncode == 4, cancelled.stderr
    assert not (tmp_path / "st" / "runs" / "early").exists()
    started = run("late", "go\n")
    assert started.returncode == 0, started.stderr
    assert StateStore(tmp_path / "st").load_value("late", "s", "y") == 8


def test_connect_retries_then_names_the_address_no_broker_answers() -> None:
    """With no broker (a loopback port nobody listens on), connecting retries with a growing
    pause, then fails as a temporary error naming the address: no NoBrokersAvailable
    traceback out of the process."""
    import socket

    from jup2kub_runtime.contract.errors import TemporaryError
    from jup2kub_runtime.serving.transport import Transport

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    cfg = Config.for_step("p", "s", [], [], f"127.0.0.1:{port}")
    transport = Transport(cfg)
    with pytest.raises(TemporaryError, match=f"no Kafka broker answers at 127.0.0.1:{port}"):
        transport.connect(lambda _: None, lambda _: None, timeout=1.5)
    assert transport.consumer is None and transport.producer is None
