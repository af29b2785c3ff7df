"""Map cells (issue 18) over a real Kafka broker: the chunks fan out over the elements topic's
partitions to every replica of the step, the results equal the notebook's, an element failing
fails the run naming its index, and a replica killed with SIGKILL mid-map loses and doubles
nothing."""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import nbformat

from tests.support.cli_runner import jup2kub
from tests.test_fidelity_run import run_and_compare
from tests.test_map_run import FORMS

MakeNb = Callable[..., Path]


def _chunks_done(logs: Path) -> dict[str, int]:
    return {
        log.name: len(re.findall(r"map chunk \d+ of cell", log.read_text(errors="replace")))
        for log in logs.glob("*.log")
    }


def test_every_form_equals_the_notebook_over_kafka(
    tmp_path: Path, make_notebook: MakeNb, kafka: str
) -> None:
    run_and_compare(make_notebook(FORMS, name="mapforms.ipynb"), tmp_path, ["--kafka", kafka])
    logs = next((tmp_path / "pipeline" / "work" / "runs").glob("*/logs"))
    done = _chunks_done(logs)
    assert sum(done.values()) > 0  # the chunks went through the elements topic


def test_both_replicas_take_chunks(tmp_path: Path, make_notebook: MakeNb, kafka: str) -> None:
    nb = make_notebook(
        [
            "import time\nxs = list(range(16))",
            "#| map: true\n#| map-chunk: 1\nys = [(time.sleep(0.3), x * x)[1] for x in xs]",
            "print(ys)",
        ],
        name="mapshare.ipynb",
    )
    run_and_compare(nb, tmp_path, ["--kafka", kafka])
    logs = next((tmp_path / "pipeline" / "work" / "runs").glob("*/logs"))
    done = {k: v for k, v in _chunks_done(logs).items() if v}
    # the chunks go out once both have joined the elements group, to each in turn
    assert sorted(done.values()) == [8, 8], done


def test_a_failing_element_names_its_index_over_kafka(
    tmp_path: Path, make_notebook: MakeNb, kafka: str
) -> None:
    nb = make_notebook(
        [
            "xs = list(range(6))\ndef inverse(x):\n    return 1 / (x - 4)",
            "#| map: true\nys = [inverse(x) for x in xs]",
        ],
        name="mapfail.ipynb",
    )
    proc = jup2kub("run", nb, "--kafka", kafka, "--workdir", tmp_path / "w", cwd=tmp_path)
    assert proc.returncode == 1, proc.stdout + proc.stderr
    assert "element 4 of 6 (cell 1, line 2) failed: ZeroDivisionError" in proc.stderr


SLOW = [
    "import time\nxs = list(range(12))\ndef slow(x):\n    time.sleep(0.6)\n    return x * 3",
    "#| map: true\n#| map-chunk: 1\nout = []\nfor x in xs:\n    y = slow(x)\n"
    "    print('element', x)\n    out.append(y)",
    "print(out, x, y)",
]


def test_a_replica_killed_mid_map_loses_and_doubles_nothing(
    tmp_path: Path, make_notebook: MakeNb, kafka: str
) -> None:
    nb = make_notebook(SLOW, name="mapkill.ipynb")
    work = tmp_path / "w"
    proc = subprocess.Popen(
        [sys.executable, "-m", "jup2kub.cli", "run", str(nb), "--kafka", kafka, "--workdir", work],
        cwd=tmp_path,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        victim = _helper_replica_mid_chunk(work, proc)
        os.kill(victim, signal.SIGKILL)
        out, err = proc.communicate(timeout=300)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert proc.returncode == 0, out + err
    run_id = re.search(r"run (\S+): succeeded", out).group(1)  # type: ignore[union-attr]
    result = nbformat.read(work / "runs" / run_id / "result.ipynb", as_version=4)
    printed = "".join(o.get("text", "") for o in result.cells[1].outputs)
    assert printed == "".join(f"element {x}\n" for x in range(12))
    assert result.cells[2].outputs[0]["text"] == f"{[x * 3 for x in range(12)]} 11 33\n"


def _helper_replica_mid_chunk(work: Path, proc: subprocess.Popen[str]) -> int:
    """The pid of a helper replica (map chunks only) once it has run a chunk: it takes the next
    at once, so it is killed mid-chunk."""
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline and proc.poll() is None:
        for log in work.glob("runs/*/logs/*.log"):
            text = log.read_text(errors="replace")
            if "running map chunks only" in text and "map chunk " in text:
                found = re.search(r"\[(\d+)\] jup2kub_runtime", text)
                assert found is not None
                return int(found.group(1))
        time.sleep(0.05)
    raise AssertionError("no replica took a chunk")


def _flaky_step(tmp_path: Path) -> tuple[Any, Any, Any]:
    """A map step whose element 1 fails on its first try (a file counts the tries)."""
    from jup2kub_runtime.contract.config import Config
    from jup2kub_runtime.contract.mapspec import ACC, ITEM, MapSpec
    from jup2kub_runtime.contract.spec import Cell, ReplayCell, StepSpec
    from jup2kub_runtime.storage.state_store import StateStore

    helper = (
        "import os\ndef flaky(x, path):\n    open(path + '.all', 'a').write(str(x))\n"
        "    print('element', x)\n    if x == 1:\n"
        "        tries = len(open(path).read()) if os.path.exists(path) else 0\n"
        "        open(path, 'a').write('x')\n        if tries < FAILS:\n"
        "            raise ValueError(f'try {tries}')\n    return x * 10"
    )
    m = MapSpec(
        cell=1,
        line=1,
        form="list",
        iterable="xs",
        element=f"{ACC}.extend([flaky(x, PATH) for x in [{ITEM}]])\n",
        accumulators=[ACC],
        reads=["PATH", "FAILS"],
        result="ys",
    )
    spec = StepSpec(
        pipeline="p",
        step="s",
        cells=[Cell(1, "ys = [flaky(x, PATH) for x in xs]")],
        replay=[ReplayCell(0, helper)],
        maps=[m],
    )
    cfg = Config.for_step(
        "p",
        "s",
        [],
        [],
        "127.0.0.1:9",
        tmp_path / "state",
        max_retries=1,
        retry_backoff_seconds=0.01,
    )
    return cfg, spec, StateStore(tmp_path / "state")


def _chunk_result(tmp_path: Path, fails: int) -> Any:
    import pickle
    import threading

    from jup2kub_runtime.contract.messages import encode
    from jup2kub_runtime.serving.map_distribution import ElementWorker, map_dir

    cfg, spec, store = _flaky_step(tmp_path)
    d = map_dir(store, "r1", "s", 1, 0)
    shared = {"PATH": str(tmp_path / f"tries-{fails}"), "FAILS": fails}
    store.write_bytes(d / "context.pkl", pickle.dumps({"shared": shared, "parameters": {}}))
    store.write_bytes(d / "chunk-00000.in", pickle.dumps((0, [0, 1, 2])))
    worker = ElementWorker(cfg, spec, store, threading.Event())
    worker._handle(encode({"run_id": "r1", "cell": 1, "attempt": 0, "chunk": 0}))
    return pickle.loads((d / "chunk-00000.out").read_bytes())


def test_an_element_is_retried_alone_with_the_steps_policy(tmp_path: Path) -> None:
    """Elements 0 and 2 of the chunk run once; element 1 fails once and runs again; what its
    failed try printed and appended is dropped."""
    result = _chunk_result(tmp_path, fails=1)
    assert result.error is None
    assert [args for _, _, args in result.ops] == [([0],), ([10],), ([20],)]
    assert (tmp_path / "tries-1").read_text() == "xx"  # failed once, then succeeded
    assert (tmp_path / "tries-1.all").read_text() == "0112"
    assert "".join(o["text"] for o in result.outputs) == "element 0\nelement 1\nelement 2\n"


def test_an_element_failing_after_its_retries_names_its_index(tmp_path: Path) -> None:
    result = _chunk_result(tmp_path, fails=5)
    index, what, trace = result.error
    assert index == 1 and what == "ValueError: try 1"
    assert "raise ValueError" in trace
    assert (tmp_path / "tries-5").read_text() == "xx"  # max_retries=1: two tries
    assert (tmp_path / "tries-5.all").read_text() == "011"  # the chunk stops at element 1
    assert [args for _, _, args in result.ops] == [([0],)]  # element 0's result is kept


def test_items_that_cannot_cross_the_volume_are_named(
    tmp_path: Path, make_notebook: MakeNb, kafka: str
) -> None:
    nb = make_notebook(
        [
            "import threading\nout = []",
            "#| map: true\nfor lock in [threading.Lock(), threading.Lock()]:\n"
            "    out.append(id(lock) > 0)",
        ],
        name="maplocks.ipynb",
    )
    proc = jup2kub("run", nb, "--kafka", kafka, "--workdir", tmp_path / "w", cwd=tmp_path)
    assert proc.returncode == 1, proc.stdout + proc.stderr
    assert "map cell 1, line 2: element 0's item" in proc.stderr
    assert "cannot be stored for the step's other replicas" in proc.stderr


def test_the_elements_topic_splits_evenly_over_the_step_replicas(tmp_path: Path) -> None:
    """A multiple of the step topics' partitions (the chart's most replicas), at least 4."""
    from jup2kub_runtime.contract.config import Config
    from jup2kub_runtime.serving.map_distribution import elements_partitions

    def partitions(per: int) -> int:
        cfg = Config.for_step("p", "s", [], [], "127.0.0.1:9", tmp_path, topic_partitions=per)
        return elements_partitions(cfg)

    assert [partitions(n) for n in (1, 2, 3, 4, 5, 6)] == [4, 4, 6, 4, 5, 6]


def test_chunks_go_to_the_members_in_turn_whatever_they_own() -> None:
    """10 partitions over 3 replicas (4, 3, 3): each replica still gets a third of 36
    chunks; unknown owners: round robin over the partitions."""
    from collections import Counter

    from jup2kub_runtime.serving.map_distribution import spread

    owned = [[0, 1, 2, 3], [4, 5, 6], [7, 8, 9]]
    member = {p: m for m, parts in enumerate(owned) for p in parts}
    chosen = spread(36, owned, list(range(10)))
    assert Counter(member[p] for p in chosen) == {0: 12, 1: 12, 2: 12}
    assert Counter(chosen)[0] == 3 and Counter(chosen)[4] == 4  # spread over its partitions
    assert spread(5, [], [0, 1, 2]) == [0, 1, 2, 0, 1]


def test_an_element_failing_after_its_retries_is_not_retried_with_the_step() -> None:
    """The element had its tries: the step's failure is permanent (dead-lettered at once on
    Kafka), not retried whole, which would run every element again."""
    from jup2kub_runtime.contract.mapspec import ACC, ITEM, MapSpec
    from jup2kub_runtime.contract.spec import Cell, StepSpec
    from jup2kub_runtime.execution.cell_runner import execute_step

    m = MapSpec(
        cell=0,
        line=1,
        form="list",
        iterable="[1, 0, 2]",
        element=f"{ACC}.append(1 / {ITEM})\n",
        before=f"{ACC} = []",
        finish=f"ys = {ACC}",
        accumulators=[ACC],
        result="ys",
    )
    cells = [Cell(0, "ys = [1 / x for x in [1, 0, 2]]")]
    spec = StepSpec(pipeline="p", step="s", cells=cells, maps=[m])
    result = execute_step(spec, {})
    assert result.error is not None and result.permanent
    assert "element 1 of 3 (cell 0, line 1) failed: ZeroDivisionError" in result.error.evalue
