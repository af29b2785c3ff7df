"""The runtime's side of the step cache (``run_step(..., cache=...)``, as the Kafka loop calls
it): a cacheable step whose key has an entry is loaded, marker last, under the step's lock;
its key chains into the downstream keys; a damaged entry is never loaded."""

from __future__ import annotations

import json
from pathlib import Path

from jup2kub_runtime.contract.spec import Cell, StepSpec
from jup2kub_runtime.execution.step_run import StepOutcome, run_step
from jup2kub_runtime.storage.state_store import StateStore
from jup2kub_runtime.storage.stepcache import KEY_FILE, CacheStore, cache_enabled


def _specs(code: str = "y = x + 1") -> tuple[StepSpec, StepSpec]:
    first = StepSpec(
        pipeline="p",
        step="first",
        cells=[Cell(0, "x = 20\nprint('first', x)\nopen('out.txt', 'w').write(str(x))")],
        outputs=["x"],
        downstream=["second"],
        cache=True,
        cache_writes=["out.txt"],
    )
    second = StepSpec(
        pipeline="p",
        step="second",
        cells=[Cell(1, code)],
        inputs={"x": "first"},
        upstream=["first"],
        outputs=["y"],
        cache=True,
    )
    return first, second


def _run(
    store: StateStore, cache: CacheStore, run_id: str, specs: tuple[StepSpec, ...], cwd: Path
) -> list[StepOutcome]:
    return [run_step(s, store, run_id, {}, cache=cache, workdir=cwd) for s in specs]


def test_an_unchanged_step_is_loaded_and_chains_its_key(tmp_path: Path) -> None:
    store, cache = StateStore(tmp_path / "state", fsync=False), CacheStore(tmp_path / "cache")
    specs = _specs()
    executed = _run(store, cache, "r1", specs, tmp_path / "files")
    assert [o.reused for o in executed] == [False, False]
    (tmp_path / "files" / "out.txt").unlink()

    reused = _run(store, cache, "r2", specs, tmp_path / "files")
    assert [o.reused for o in reused] == [True, True]
    assert store.load_value("r2", "second", "y") == 21
    assert store.outputs("r2", "first") == store.outputs("r1", "first")
    assert (tmp_path / "files" / "out.txt").read_text() == "20"  # the file it wrote
    marker = store.completion("r2", "first") or {}
    assert marker["from_run"] == "r1" and marker["attempt"] == 0
    keys = [json.loads((store.result_dir(r, "first") / KEY_FILE).read_text()) for r in ("r1", "r2")]
    assert keys[0] == keys[1] and keys[0]["cacheable"] is True

    changed = _run(store, cache, "r3", (specs[0], _specs("y = x + 2")[1]), tmp_path / "files")
    assert [o.reused for o in changed] == [True, False]
    assert store.load_value("r3", "second", "y") == 22


def test_a_damaged_entry_is_executed_again_and_replaced(tmp_path: Path) -> None:
    store, cache = StateStore(tmp_path / "state", fsync=False), CacheStore(tmp_path / "cache")
    first = _specs()[0]
    run_step(first, store, "r1", {}, cache=cache, workdir=tmp_path)
    key = json.loads((store.result_dir("r1", "first") / KEY_FILE).read_text())["key"]
    outputs = cache.entry_dir(key) / "step" / "outputs.json"
    outputs.unlink()
    outputs.write_text('{"cells": []}')
    again = run_step(first, store, "r2", {}, cache=cache, workdir=tmp_path)
    assert not again.reused
    assert _shown(store, "r2") == _shown(store, "r1") == [[("stdout", "first 20\n")]]
    assert run_step(first, store, "r3", {}, cache=cache, workdir=tmp_path).reused


def _shown(store: StateStore, run_id: str) -> list[list[tuple[str, str]]]:
    cells = (store.outputs(run_id, "first") or {})["cells"]
    return [
        [(o["name"], o["text"]) for o in c["outputs"] if o["output_type"] == "stream"]
        for c in cells
    ]


def test_the_chart_value_turns_it_off() -> None:
    assert cache_enabled({}) and cache_enabled({"J2K_CACHE": "on"})
    assert not cache_enabled({"J2K_CACHE": "off"}) and not cache_enabled({"J2K_CACHE": "false"})
