"""The global random generators across steps (``RANDOM_STATE``): restored after the replay,
captured after the cells, so that each step continues the stream where the previous one left
it, in separate processes as on the cluster; and the guard against draws the analysis did not
see (``random_guard``). Steps run with the real runtime over a real state store."""

from __future__ import annotations

import json
import random
import subprocess
import sys
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from jup2kub_runtime import STEP_RUN_MODULE
from jup2kub_runtime.contract.config import GuardSettings
from jup2kub_runtime.contract.errors import GUARD_PHASE as PHASE
from jup2kub_runtime.contract.errors import RANDOM_DRAWN, CellError
from jup2kub_runtime.contract.spec import Cell, ReplayCell, StepSpec
from jup2kub_runtime.execution import randomness
from jup2kub_runtime.execution.randomness import RANDOM_STATE
from jup2kub_runtime.execution.step_run import run_step
from jup2kub_runtime.storage.state_store import StateStore

RUN = "r1"
SEED = "import random\nimport numpy as np\nrandom.seed(1)\nnp.random.seed(1)\n"
CELLS = {
    "one": "a = [random.random() for _ in range(3)]\nb = np.random.rand(3).tolist()\n",
    "two": "c = random.gauss(0, 1)\n",  # only Python's generator; numpy not imported here
    "three": "d = np.random.randint(0, 1000, 5).tolist()\ne = random.random()\n",
}
REPLAY = {
    "one": "import random\nimport numpy as np\n",
    "two": "import random\n",
    "three": "import random\nimport numpy as np\n",
}
OUTPUTS = {"one": ["a", "b"], "two": ["c"], "three": ["d", "e"]}


def chain() -> list[StepSpec]:
    """seed -> one -> two -> three, the random state handed from each to the next."""
    names = ["seed", *CELLS]
    specs = []
    for i, name in enumerate(names):
        before = names[i - 1] if i else None
        after = names[i + 1] if i + 1 < len(names) else None
        specs.append(
            StepSpec(
                pipeline="p",
                step=name,
                cells=[Cell(i, SEED if name == "seed" else CELLS[name])],
                replay=[ReplayCell(0, REPLAY[name])] if name in REPLAY else [],
                inputs={RANDOM_STATE: before} if before else {},
                outputs=[*OUTPUTS.get(name, []), *([RANDOM_STATE] if after else [])],
                upstream=[before] if before else [],
                downstream=[after] if after else [],
            )
        )
    return specs


def top_to_bottom() -> dict[str, Any]:
    ns: dict[str, Any] = {}
    for source in [SEED, *CELLS.values()]:
        exec(source, ns)
    return {k: ns[k] for names in OUTPUTS.values() for k in names}


def test_each_step_continues_the_stream_in_its_own_process(tmp_path: Path) -> None:
    expected = top_to_bottom()
    random.seed(99)  # this process's generators hold another stream: nothing leaks from here
    np.random.seed(99)
    store = StateStore(tmp_path / "state", fsync=False)
    command = [sys.executable, "-m", STEP_RUN_MODULE, "--state", str(store.root), "--run-id", RUN]
    for spec in chain():
        bundle = spec.dump(tmp_path / f"{spec.step}.json")
        proc = subprocess.run(
            [*command, "--spec", str(bundle)],
            capture_output=True,
            text=True,
            check=False,
        )
        assert proc.returncode == 0, proc.stderr
    got = {k: store.load_value(RUN, s, k) for s, names in OUTPUTS.items() for k in names}
    assert got == expected
    # step two had no numpy in its replay: the runtime imported it to carry numpy's state on
    state = store.load_value(RUN, "two", RANDOM_STATE)
    assert set(state) == {"random", "numpy"}
    assert isinstance(state["random"], tuple) and state["numpy"][0] == "MT19937"
    manifest = json.loads((store.result_dir(RUN, "two") / "values.json").read_text())
    assert manifest[RANDOM_STATE]["type"] == "builtins.dict"


def test_a_state_without_numpy_leaves_numpy_alone(tmp_path: Path) -> None:
    spec = StepSpec(
        pipeline="p",
        step="draw",
        cells=[Cell(3, "x = random.random()")],
        replay=[ReplayCell(0, "import random")],
        inputs={RANDOM_STATE: "up"},
        outputs=["x", RANDOM_STATE],
        upstream=["up"],
    )
    random.seed(5)
    expected = random.random()
    random.seed(5)
    store = StateStore(tmp_path, fsync=False)
    store.save_step(RUN, "up", {RANDOM_STATE: {"random": random.getstate()}}, outputs={}, timing={})
    random.seed(77)
    np_before = np.random.get_state()[1].tobytes()
    run_step(spec, store, RUN)
    assert store.load_value(RUN, "draw", "x") == expected
    assert np.random.get_state()[1].tobytes() == np_before


def guarded(cells: list[str], replay: str = "import random\nimport numpy as np") -> StepSpec:
    return StepSpec(
        pipeline="p",
        step="plot",
        cells=[Cell(5 + i, src) for i, src in enumerate(cells)],
        replay=[ReplayCell(0, replay)],
        random_guard=True,
    )


@pytest.mark.parametrize(
    ("draw", "generator", "fix"),
    [
        (
            "funcs = {'draw': np.random.rand}\nx = funcs['draw'](2)",
            "numpy's global random generator",
            "pass an explicit random_state/seed or a Generator (np.random.default_rng)",
        ),
        (
            "pick = getattr(random, 'choice')\nx = pick([1, 2, 3])",
            "Python's global random generator (the random module)",
            "random.Random(seed)",
        ),
    ],
)
def test_an_unseen_draw_fails_the_step(draw: str, generator: str, fix: str, tmp_path: Path) -> None:
    spec = guarded(["print('before')", draw, "print('after')"])
    with pytest.raises(CellError) as info:
        run_step(spec, StateStore(tmp_path, fsync=False), RUN, guards=GuardSettings())
    record = info.value.record
    assert info.value.permanent
    assert (record.ename, record.phase, record.cell) == (RANDOM_DRAWN, PHASE, 6)
    assert record.evalue.startswith(
        f"step 'plot': cell 6 drew from {generator} through a call the analysis did not "
        "recognise, so later steps would not continue the notebook's random stream"
    )
    assert fix in record.evalue


def test_no_alarm_without_a_draw_from_the_global_generators(tmp_path: Path) -> None:
    cells = [
        "import numpy as np\nrng = np.random.default_rng(0)\nx = rng.random(3)",
        "r = random.Random(4)\ny = r.random()",
        "import numpy.linalg\nz = np.linalg.norm([3, 4])",  # an import draws nothing either
    ]
    store = StateStore(tmp_path, fsync=False)
    run_step(guarded(cells, replay="import random"), store, RUN, guards=GuardSettings())
    assert store.is_complete(RUN, "plot")
    # warn mode: the draw is reported on the cell's stderr, the step completes
    spec = guarded(["x = np.random.rand()", "print('on')"])
    run_step(spec, StateStore(tmp_path / "w", fsync=False), RUN, guards=GuardSettings("warn"))
    cells_out = StateStore(tmp_path / "w").outputs(RUN, "plot")["cells"]
    assert cells_out[0]["outputs"][0]["text"].startswith("[jup2kub] warning: step 'plot': cell 5")
    assert cells_out[1]["outputs"] == [{"output_type": "stream", "name": "stdout", "text": "on\n"}]


def test_library_threads_draw_from_their_own_generator() -> None:
    import kafka.client_async

    randomness.isolate_libraries()
    assert kafka.client_async.random is not random
    random.seed(3)
    before = random.getstate()
    kafka.client_async.random.shuffle([1, 2, 3, 4])
    assert random.getstate() == before
