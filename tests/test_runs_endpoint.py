"""``GET /runs``: the recent runs one step reports for ``jup2kub status --release``."""

from __future__ import annotations

import os
from pathlib import Path

from jup2kub_runtime.contract.errors import ErrorRecord
from jup2kub_runtime.serving.health import Health, create_app
from jup2kub_runtime.serving.history import recent_runs, run_outputs
from jup2kub_runtime.storage.state_store import StateStore


def _store(tmp_path: Path) -> StateStore:
    store = StateStore(tmp_path, fsync=False)
    for i, run_id in enumerate(["r-old", "r-done", "r-failed", "r-busy", "r-new"]):
        store.record_run(run_id, {"n": i}, submitted_at=1000.0 + i)
        # distinct directory mtimes: newest first is the order asked for
        os.utime(store.run_dir(run_id), (2000.0 + i, 2000.0 + i))
    store.save_step("r-done", "load", {"x": 1}, outputs=[], timing={"seconds": 1.5})
    store.next_attempt("r-failed", "load")
    store.save_failure(
        "r-failed",
        "load",
        outputs=[],
        timing={},
        error=ErrorRecord(3, "ValueError", "bad", ["secret frame"]),
    )
    for i, run_id in enumerate(["r-old", "r-done", "r-failed", "r-busy", "r-new"]):
        os.utime(store.run_dir(run_id), (2000.0 + i, 2000.0 + i))
    return store


def test_recent_runs_states_and_order(tmp_path: Path) -> None:
    store = _store(tmp_path)
    runs = recent_runs(store, "load", limit=10, busy_run="r-busy")
    assert [r["run_id"] for r in runs] == ["r-new", "r-busy", "r-failed", "r-done", "r-old"]
    by_id = {r["run_id"]: r for r in runs}
    assert by_id["r-done"]["state"] == "succeeded" and by_id["r-done"]["seconds"] == 1.5
    assert by_id["r-failed"]["state"] == "failed"
    assert by_id["r-failed"]["error"] == {"ename": "ValueError", "evalue": "bad", "cell": 3}
    assert by_id["r-failed"]["attempts"] == 1
    assert by_id["r-busy"]["state"] == "running"
    assert by_id["r-new"]["state"] == "pending" and by_id["r-new"]["submitted_at"] == 1004.0
    assert [r["run_id"] for r in recent_runs(store, "load", limit=2)] == ["r-new", "r-busy"]


def test_recent_runs_ignores_foreign_entries_and_empty_store(tmp_path: Path) -> None:
    assert recent_runs(StateStore(tmp_path / "none"), "load") == []
    store = _store(tmp_path)
    (store.root / "runs" / ".tmp-x").mkdir()
    (store.root / "runs" / "bad name!").mkdir()
    (store.root / "runs" / "a-file").write_text("x")
    assert len(recent_runs(store, "load", limit=50)) == 5


def test_runs_endpoint(tmp_path: Path) -> None:
    store = _store(tmp_path)
    health = Health("p", "load", 30.0, store.writable)
    client = create_app(health).test_client()
    assert client.get("/runs").status_code == 404  # no provider: not a step process
    health.runs_provider = lambda limit, busy: recent_runs(store, "load", limit, busy)
    health.busy_run = "r-busy"
    body = client.get("/runs?limit=3").get_json()
    assert body["step"] == "load" and body["busy_run"] == "r-busy"
    assert [r["run_id"] for r in body["runs"]] == ["r-new", "r-busy", "r-failed"]
    assert "secret frame" not in str(body)  # tracebacks stay on the volume
    assert client.get("/runs/2").get_json()["runs"] == body["runs"][:2]
    bad = client.get("/runs?limit=-1")
    assert bad.status_code == 400 and "limit" in bad.get_json()["error"]


def test_run_outputs_endpoint(tmp_path: Path) -> None:
    store = _store(tmp_path)
    store.save_step(
        "r-new",
        "load",
        {"secret_value": "never served"},
        outputs={
            "cells": [
                {
                    "index": 1,
                    "outputs": [{"output_type": "stream", "name": "stdout", "text": "hello\n"}],
                }
            ]
        },
        timing={"seconds": 0.1},
    )
    health = Health("p", "load", 30.0, store.writable)
    client = create_app(health).test_client()
    assert client.get("/runs/r-new/outputs").status_code == 404  # not a step process
    health.outputs_provider = lambda run_id, busy: run_outputs(store, "load", run_id, busy)
    body = client.get("/runs/r-new/outputs").get_json()
    assert body["parameters"] == {"n": 4} and body["status"]["state"] == "succeeded"
    assert body["outputs"]["cells"][0]["outputs"][0]["text"] == "hello\n"
    assert "never served" not in str(body)  # values stay on the volume
    failed = client.get("/runs/r-failed/outputs").get_json()
    assert failed["status"]["state"] == "failed" and failed["outputs"] == []
    assert client.get("/runs/r-unknown/outputs").status_code == 404
    assert client.get("/runs/bad%20id!/outputs").status_code == 400
