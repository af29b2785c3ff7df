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
    assert sum(done.values()) == 16
    assert len(done) == 2, done


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
