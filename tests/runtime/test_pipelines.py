"""200 runs through a linear and a diamond pipeline of real step processes on a real broker."""

from __future__ import annotations

from pathlib import Path

from jup2kub_runtime.contract.spec import Cell, ReplayCell, StepSpec
from tests.support.kafka_broker import KafkaBroker
from tests.support.prometheus import value
from tests.support.runtime_harness import Pipeline, count_effects, effect_cell, unique

RUNS = 200


def linear_specs(
    name: str, effects: Path, mid_body: str = "y = x + 1", sink_body: str = "z = y * 10"
) -> list[StepSpec]:
    params = "seed = 0\nRUN_ID = 'none'\n"
    return [
        StepSpec(
            pipeline=name,
            step="load",
            parameters_source=params,
            parameters=["seed"],
            cells=[effect_cell(1, "load", effects, "x = seed * 2")],
            outputs=["x"],
            downstream=["mid"],
        ),
        StepSpec(
            pipeline=name,
            step="mid",
            parameters_source=params,
            replay=[ReplayCell(cell=0, source="import time")],
            cells=[effect_cell(2, "mid", effects, mid_body)],
            inputs={"x": "load"},
            outputs=["y"],
            upstream=["load"],
            downstream=["sink"],
        ),
        StepSpec(
            pipeline=name,
            step="sink",
            parameters_source=params,
            replay=[ReplayCell(cell=0, source="import time")],
            cells=[
                effect_cell(3, "sink", effects, sink_body),
                Cell(index=4, source="print('z =', z)\nz"),
            ],
            inputs={"y": "mid"},
            outputs=["z"],
            upstream=["mid"],
        ),
    ]


def check_linear(p: Pipeline, effects: Path, runs: dict[str, int]) -> None:
    for run_id, seed in runs.items():
        assert p.store.load_value(run_id, "sink", "z") == (seed * 2 + 1) * 10
    for step in ("load", "mid", "sink"):
        ends = count_effects(effects, step)
        assert {r: ends.get(r, 0) for r in runs} == dict.fromkeys(runs, 1), step


def test_linear_200_runs(broker: KafkaBroker, tmp_path: Path) -> None:
    effects = tmp_path / "effects"
    effects.mkdir()
    p = Pipeline(tmp_path, broker.bootstrap, linear_specs(unique("lin"), effects)).start()
    try:
        p.wait_ready()
        runs = {f"run-{i:03d}": i for i in range(RUNS)}
        for run_id, seed in runs.items():
            p.submit(run_id, seed=seed, RUN_ID=run_id)
        p.wait_complete(runs)
        check_linear(p, effects, runs)
        out = p.store.outputs("run-007", "sink")
        assert out["cells"][1]["outputs"] == [
            {"output_type": "stream", "name": "stdout", "text": "z = 150\n"},
            {
                "output_type": "execute_result",
                "execution_count": 2,
                "data": {"text/plain": "150"},
                "metadata": {},
            },
        ]
        statuses = p.statuses(lambda ms: sum(m["state"] == "succeeded" for m in ms) >= 3 * RUNS)
        assert {(m["run_id"], m["step"]) for m in statuses if m["state"] == "succeeded"} == {
            (r, s) for r in runs for s in ("load", "mid", "sink")
        }
        code, metrics = p.proc("mid").get("/metrics")
        assert code == 200 and isinstance(metrics, str)
        executions = "j2k_step_executions_total"
        assert value(metrics, executions, step="mid", outcome="succeeded") == RUNS
        assert value(metrics, executions, pipeline=p.name, step="mid", outcome="failed") == 0
    finally:
        p.stop()


def diamond_specs(name: str, effects: Path) -> list[StepSpec]:
    params = "seed = 0\nRUN_ID = 'none'\n"
    return [
        StepSpec(
            pipeline=name,
            step="a",
            parameters_source=params,
            cells=[effect_cell(1, "a", effects, "base = [seed, seed + 1]")],
            outputs=["base"],
            downstream=["b", "c"],
        ),
        StepSpec(
            pipeline=name,
            step="b",
            parameters_source=params,
            cells=[effect_cell(2, "b", effects, "left = sum(base)")],
            inputs={"base": "a"},
            outputs=["left"],
            upstream=["a"],
            downstream=["d"],
        ),
        StepSpec(
            pipeline=name,
            step="c",
            parameters_source=params,
            replay=[ReplayCell(cell=0, source="def triple(v):\n    return 3 * v\n")],
            cells=[effect_cell(3, "c", effects, "right = triple(base[1])")],
            inputs={"base": "a"},
            outputs=["right"],
            upstream=["a"],
            downstream=["d"],
        ),
        StepSpec(
            pipeline=name,
            step="d",
            parameters_source=params,
            cells=[effect_cell(4, "d", effects, "total = left * 1000 + right")],
            inputs={"left": "b", "right": "c"},
            outputs=["total"],
            upstream=["b", "c"],
        ),
    ]


def test_diamond_200_runs(broker: KafkaBroker, tmp_path: Path) -> None:
    effects = tmp_path / "effects"
    effects.mkdir()
    p = Pipeline(tmp_path, broker.bootstrap, diamond_specs(unique("dia"), effects)).start()
    try:
        p.wait_ready()
        runs = {f"r{i}": i for i in range(RUNS)}
        for run_id, seed in runs.items():
            p.submit(run_id, seed=seed, RUN_ID=run_id)
        p.wait_complete(runs)
        for run_id, seed in runs.items():
            assert p.store.load_value(run_id, "d", "total") == (2 * seed + 1) * 1000 + 3 * (
                seed + 1
            )
            assert p.store.joined(run_id, "d") <= {"b", "c"}
        for step in "abcd":
            ends = count_effects(effects, step)
            assert {r: ends.get(r, 0) for r in runs} == dict.fromkeys(runs, 1), step
    finally:
        p.stop()
