"""``jup2kub run`` on small notebooks: the global random stream continues across steps as in a
top-to-bottom nbclient run (both local modes); a draw the analysis did not recognise (from the
global generators or a generator held in a variable) is caught by the runtime's check and the
run recovers from it (tests/test_guard_recovery.py: the same for a value changed in place), or
only warns under J2K_GUARD_MODE=warn."""

from __future__ import annotations

import os
import re
from pathlib import Path
from typing import Any

import nbformat
import pytest
from nbclient import NotebookClient

from tests.support.cli_runner import jup2kub
from tests.support.equivalence import reference_run
from tests.support.nb_outputs import text_outputs

MakeNb = Any
NO_TIMING = re.compile(r"(?!x)x")  # these notebooks print nothing that varies between runs

RANDOM_CELLS = [
    "#| step: seed\nimport random\nimport numpy as np\nrandom.seed(1)\nnp.random.seed(1)",
    "#| step: one\na = random.random()\nb = random.gauss(0, 1)\nprint(round(a, 12), round(b, 12))",
    "#| step: two\nprint(np.random.randint(0, 1000, 5), random.randint(0, 99))",
    "#| step: three\nprint(np.random.rand(2).round(12), random.choice('abcdef'))",
]


@pytest.mark.parametrize("mode", ["embedded", "kafka"])
def test_random_stream_continues_as_top_to_bottom(
    mode: str, tmp_path: Path, make_notebook: MakeNb, request: pytest.FixtureRequest
) -> None:
    nb_path = make_notebook(RANDOM_CELLS)
    reference = nbformat.read(nb_path, as_version=4)
    client = NotebookClient(
        reference,
        timeout=300,
        kernel_name="python3",
        resources={"metadata": {"path": str(tmp_path)}},
    )
    client.execute()
    extra = ["--kafka", request.getfixturevalue("kafka")] if mode == "kafka" else []
    proc = jup2kub("run", nb_path, "--workdir", tmp_path / "w", *extra, cwd=tmp_path)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    run_id = re.search(r"run (\S+): succeeded", proc.stdout).group(1)  # type: ignore[union-attr]
    result = nbformat.read(tmp_path / "w" / "runs" / run_id / "result.ipynb", as_version=4)
    shown = text_outputs(result, NO_TIMING)
    assert shown == text_outputs(reference, NO_TIMING)
    assert shown[3][0][0] == "stdout"  # the last step printed (the comparison is not vacuous)


MUTATING_CELLS = [
    "#| step: load\nimport pandas as pd\ndf = pd.DataFrame({'x': [1, 2, 3]})\n"
    "def add_total(frame):\n    frame['total'] = frame['x'].sum()",
    "#| step: clean\nsteps = [add_total]\nfor f in steps:\n    f(df)",  # a call nothing sees
    "#| step: report\nprint(list(df.columns))",
]


def test_a_hidden_in_place_change_warns_in_warn_mode(tmp_path: Path, make_notebook: MakeNb) -> None:
    """J2K_GUARD_MODE=warn: the run goes on (no re-plan: nothing failed), the warning is in the
    cell's output and the step's log. (Mode ``fail``, the default, and the re-plan that follows:
    tests/test_guard_recovery.py.)"""
    nb_path = make_notebook(MUTATING_CELLS)
    env = {**os.environ, "J2K_GUARD_MODE": "warn"}
    proc = jup2kub("run", nb_path, "--workdir", tmp_path / "w2", cwd=tmp_path, env=env)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "re-planned" not in proc.stderr
    run_id = re.search(r"run (\S+): succeeded", proc.stdout).group(1)  # type: ignore[union-attr]
    result = nbformat.read(tmp_path / "w2" / "runs" / run_id / "result.ipynb", as_version=4)
    shown = text_outputs(result, NO_TIMING)
    assert shown[1][0][0] == "stderr" and "changed 'df' in place" in shown[1][0][1]
    log = tmp_path / "w2" / "runs" / run_id / "logs" / "clean.log"  # and in the step's log
    assert "[jup2kub] warning: step 'clean' changed 'df' in place" in log.read_text()


DRAWS = {
    # the global generators, drawn from through a function kept in a dict
    "global": [
        *RANDOM_CELLS[:2],
        "#| step: hidden\ndraw = {'uniform': np.random.rand}\nprint(draw['uniform']())",
        "#| step: later\nprint(np.random.rand(), random.random())",
    ],
}


HELD = [
    "#| step: make\nimport numpy as np\nrng = np.random.default_rng(5)",
    "#| step: hidden\ndraw = {'uniform': rng.random}\nprint(draw['uniform']())",
    "#| step: later\nprint(rng.random())",
]


@pytest.mark.parametrize("kind", sorted(DRAWS))
def test_an_unrecognised_draw_is_recovered_from(
    kind: str, tmp_path: Path, make_notebook: MakeNb
) -> None:
    """The guard catches the draw; the run re-plans with the generator's state handed on from
    the drawing step, so the later draw continues the notebook's stream (issue 28, item 2)."""
    nb_path = make_notebook(DRAWS[kind])
    reference, _ = reference_run(nb_path, [], tmp_path)
    proc = jup2kub("run", nb_path, "--workdir", tmp_path / "w", cwd=tmp_path)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    what = (
        "drew from the global random generators" if kind == "global" else "changed 'rng' in place"
    )
    value = "the global random state" if kind == "global" else "'rng'"
    assert (
        f"warning: step 'hidden' {what} in cell {len(DRAWS[kind]) - 2}, which the analysis did "
        f"not see (the guard did): re-planned with {value} made an output of step 'hidden', read "
        "from there by step 'later'"
    ) in proc.stderr
    run_id = re.search(r"run (\S+): succeeded", proc.stdout).group(1)  # type: ignore[union-attr]
    result = nbformat.read(tmp_path / "w" / "runs" / run_id / "result.ipynb", as_version=4)
    assert text_outputs(result, NO_TIMING) == text_outputs(reference, NO_TIMING)


def test_a_draw_from_a_held_generator_fails_the_run(tmp_path: Path, make_notebook: MakeNb) -> None:
    """A generator held in a variable is a copy in the step that draws from it (it may be a copy
    of a global one: ``draw = np.random.rand``): no re-plan can make later draws continue the
    notebook's stream, so the run fails with the guard's message and does not recover."""
    proc = jup2kub("run", make_notebook(HELD), "--workdir", tmp_path / "w", cwd=tmp_path)
    assert proc.returncode == 1, proc.stdout + proc.stderr
    assert (
        "error: step 'hidden' failed in cell 1: RandomDrawError: step 'hidden' drew from the "
        "random generator 'rng' holds (cell 1)"
    ) in proc.stderr
    assert "re-planned" not in proc.stderr
