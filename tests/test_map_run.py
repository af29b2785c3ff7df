"""Map cells (issue 18), run: every qualifying form gives the notebook's results (nbclient,
real kernels), its elements run in several processes, and an element that fails, or does what
the analysis could not see, fails the run naming the element's index."""

from __future__ import annotations

import json
import os
import re
from collections.abc import Callable
from pathlib import Path

import nbformat
import pytest

from tests.support.cli_runner import jup2kub
from tests.support.equivalence import reference_run, shown
from tests.test_fidelity_run import run_and_compare

MakeNb = Callable[..., Path]

SETUP = (
    "import os\nimport math\nrows = [{'id': i, 'v': (i * 37) % 11} for i in range(23)]\n"
    "lookup = {i: chr(97 + i % 26) for i in range(30)}\n"
    "def score(row):\n    return round(math.sqrt(row['v'] + 1) * 3, 4)\n"
    "def label(i):\n    return lookup[i]"
)

FORMS = [
    SETUP,
    "#| map: true\n#| map-chunk: 2\nscores = [score(r) for r in rows if r['v'] != 3]\nscores[:5]",
    "#| map: true\npairs = [(r['id'], k) for r in rows for k in range(r['v'] % 3)]\nlen(pairs)",
    "#| map: true\nby_id = {r['id']: label(r['id']) for r in rows}",
    "#| map: true\nkinds = {r['v'] % 4 for r in rows}",
    "#| map: true\nsquares = list(map(lambda r, n: r['v'] * n, rows, range(100)))",
    "#| map: true\nout = []\ntable = {}\nseen = set()\nfor i, r in enumerate(rows):\n"
    "    if r['v'] == 5:\n        continue\n    s = score(r)\n    parts = [s]\n"
    "    parts.append(i)\n    print('element', i, s)\n    out.append(parts)\n"
    "    table[r['v']] = s\n    seen.add(r['v'])\nprint('done', len(out))\nlen(table)",
    "#| map: true\nsame = []\nfor r in rows:\n    same.append(r)",
    "print(scores, pairs[:4], by_id, sorted(kinds), squares[-3:])\n"
    "print(out[-2:], table, sorted(seen), i, r, s, parts)\n"
    "print(r is rows[-1], same == rows)",
]


def test_every_form_equals_the_notebook(tmp_path: Path, make_notebook: MakeNb) -> None:
    run_and_compare(make_notebook(FORMS), tmp_path, ["--jobs", "2"])


def test_with_one_job_the_elements_run_in_the_step_process(
    tmp_path: Path, make_notebook: MakeNb
) -> None:
    run_and_compare(make_notebook(FORMS), tmp_path, ["--jobs", "1"])


def test_elements_run_in_several_processes(tmp_path: Path, make_notebook: MakeNb) -> None:
    nb = make_notebook(
        [
            "import os\nimport time\nxs = list(range(8))",
            "#| map: true\n#| map-chunk: 1\npids = [(time.sleep(0.2), os.getpid())[1] for x in xs]",
            "print(len(set(pids)) > 1, os.getpid() not in pids)",
        ]
    )
    proc = jup2kub("run", nb, "--jobs", "2", "--workdir", tmp_path / "w", cwd=tmp_path)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    run_id = re.search(r"run (\S+): succeeded", proc.stdout).group(1)  # type: ignore[union-attr]
    result = nbformat.read(tmp_path / "w" / "runs" / run_id / "result.ipynb", as_version=4)
    assert result.cells[2].outputs[0]["text"] == "True True\n"


def _failing_run(tmp_path: Path, make_notebook: MakeNb, cells: list[str]) -> str:
    nb = make_notebook(cells)
    proc = jup2kub("run", nb, "--jobs", "2", "--workdir", tmp_path / "w", cwd=tmp_path)
    assert proc.returncode == 1, proc.stdout + proc.stderr
    return proc.stderr


def test_a_failing_element_names_its_index_and_exception(
    tmp_path: Path, make_notebook: MakeNb
) -> None:
    err = _failing_run(
        tmp_path,
        make_notebook,
        [
            "xs = list(range(10))\ndef inverse(x):\n    return 1 / (x - 7)",
            "#| map: true\n#| map-chunk: 3\nys = [inverse(x) for x in xs]",
        ],
    )
    assert "element 7 of 10 (cell 1, line 3) failed: ZeroDivisionError: division by zero" in err
    assert "return 1 / (x - 7)" in err


def test_an_unseen_change_to_shared_state_fails_naming_the_variable(
    tmp_path: Path, make_notebook: MakeNb
) -> None:
    err = _failing_run(
        tmp_path,
        make_notebook,
        [
            "import operator\ntotals = {}\nxs = [1.0, 2.0, 3.0, 4.0]",
            "#| map: true\n#| map-chunk: 1\nys = [operator.setitem(totals, x, x) for x in xs]",
        ],
    )
    assert "element 0 of 4" in err and "changed 'totals'" in err


def test_an_unseen_draw_fails_naming_the_element(tmp_path: Path, make_notebook: MakeNb) -> None:
    err = _failing_run(
        tmp_path,
        make_notebook,
        [
            "import random\nrandom.seed(3)\nxs = [1, 2, 3]",
            "#| map: true\nys = [getattr(random, 'random')() * x for x in xs]",
        ],
    )
    assert "element 0 of 3" in err and "random generator" in err


def test_a_figure_left_open_by_an_element_fails_the_run(
    tmp_path: Path, make_notebook: MakeNb
) -> None:
    err = _failing_run(
        tmp_path,
        make_notebook,
        [
            "import matplotlib.pyplot as plt\nxs = [1, 2]\ndef draw(x):\n"
            "    plt.figure()\n    return x",
            "#| map: true\nys = [draw(x) for x in xs]",
        ],
    )
    assert "element 0 of 2" in err and "figure" in err


@pytest.mark.parametrize("jobs", ["1", "2"])
def test_an_empty_collection_leaves_the_names_as_the_notebook_does(
    jobs: str, tmp_path: Path, make_notebook: MakeNb
) -> None:
    nb = make_notebook(
        [
            "xs = []\nx = 'before'",
            "#| map: true\nout = []\nfor x in xs:\n    out.append(x)",
            "#| map: true\nys = [x for x in xs]",
            "print(out, ys, x)",
        ]
    )
    run_and_compare(nb, tmp_path, ["--jobs", jobs])


def test_summary_records_the_map_step(tmp_path: Path, make_notebook: MakeNb) -> None:
    nb = make_notebook(["xs = [1, 2, 3]", "#| map: true\nys = [x * 2 for x in xs]", "print(ys)"])
    proc = jup2kub("run", nb, "--workdir", tmp_path / "w", cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    run_id = re.search(r"run (\S+): succeeded", proc.stdout).group(1)  # type: ignore[union-attr]
    summary = json.loads((tmp_path / "w" / "runs" / run_id / "summary.json").read_text())
    assert summary["status"] == "succeeded"


def test_annotations_are_evaluated_as_in_the_kernel(tmp_path: Path, make_notebook: MakeNb) -> None:
    nb = make_notebook(
        [
            "def f(x: int) -> list[int]:\n    return [x]\nprint(f.__annotations__)",
            "#| map: true\nys = [f.__annotations__['x'] for x in range(3)]",
            "print(ys)",
        ]
    )
    run_and_compare(nb, tmp_path)


FLAKY_LIB = (
    "import os\n\n\ndef flaky(x, fails=(1, 4)):\n"
    "    '''Raises on the first try of the elements ``fails`` when FLAKY_DIR is set (the\n"
    "    pipeline's run only): a marker file per element remembers the try.'''\n"
    "    marks = os.environ.get('FLAKY_DIR')\n"
    "    if marks and x in fails:\n"
    "        mark = os.path.join(marks, f'tried-{x}')\n"
    "        tries = len(open(mark).read()) if os.path.exists(mark) else 0\n"
    "        with open(mark, 'a') as f:\n"
    "            f.write('x')\n"
    "        if tries < int(os.environ.get('FLAKY_TRIES', '1')):\n"
    "            print('failing', x)\n"
    "            if os.environ.get('FLAKY_EXIT'):\n"
    "                os._exit(3)\n"
    "            raise RuntimeError(f'try {tries} of element {x}')\n"
    "    return x * 10\n"
)

FLAKY = [
    "from flakylib import flaky\nxs = list(range(7))",
    "#| map: true\n#| map-chunk: 3\nout = []\nseen = set()\nfor x in xs:\n    y = flaky(x)\n"
    "    print('element', x)\n    out.append(y)\n    seen.add(y)",
    "print(out, sorted(seen), x, y)",
]


def _flaky_env(marks: Path, tries: int) -> dict[str, str]:
    marks.mkdir()
    return {
        **os.environ,
        "FLAKY_DIR": str(marks),
        "FLAKY_TRIES": str(tries),
        "J2K_MAX_RETRIES": "1",
        "J2K_RETRY_BACKOFF_SECONDS": "0.01",
    }


@pytest.mark.parametrize("jobs", ["1", "2"])
def test_an_element_failing_once_is_retried_alone(
    jobs: str, tmp_path: Path, make_notebook: MakeNb
) -> None:
    """The elements of its chunk that succeeded are kept, the failing one runs again, and
    what its failed try printed or appended is dropped: the notebook's results."""
    nb = make_notebook(FLAKY)
    for d in (tmp_path, tmp_path / "ref"):
        d.mkdir(exist_ok=True)
        (d / "flakylib.py").write_text(FLAKY_LIB)
    ref, _ = reference_run(nb, [], tmp_path / "ref")
    env = _flaky_env(tmp_path / "marks", tries=1)
    proc = jup2kub("run", nb, "--jobs", jobs, "--workdir", tmp_path / "w", cwd=tmp_path, env=env)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    run_id = re.search(r"run (\S+): succeeded", proc.stdout).group(1)  # type: ignore[union-attr]
    result = nbformat.read(tmp_path / "w" / "runs" / run_id / "result.ipynb", as_version=4)
    assert shown(result) == shown(ref)
    assert "".join(o["text"] for o in result.cells[1].outputs) == "".join(
        f"element {x}\n" for x in range(7)
    )
    # elements 1 and 4 failed once each, then succeeded (two tries each)
    assert {m.name: m.read_text() for m in (tmp_path / "marks").iterdir()} == {
        "tried-1": "xx",
        "tried-4": "xx",
    }


def test_an_element_failing_on_every_try_names_its_index(
    tmp_path: Path, make_notebook: MakeNb
) -> None:
    nb = make_notebook(FLAKY)
    (tmp_path / "flakylib.py").write_text(FLAKY_LIB)
    env = _flaky_env(tmp_path / "marks", tries=5)
    proc = jup2kub("run", nb, "--jobs", "2", "--workdir", tmp_path / "w", cwd=tmp_path, env=env)
    assert proc.returncode == 1, proc.stdout + proc.stderr
    assert "element 1 of 7 (cell 1, line 5) failed: RuntimeError: try 1 of element 1" in proc.stderr
    assert (tmp_path / "marks" / "tried-1").read_text() == "xx"  # J2K_MAX_RETRIES=1: two tries


def test_a_chunk_whose_process_dies_runs_again(tmp_path: Path, make_notebook: MakeNb) -> None:
    """Its process gone, a chunk's work is lost with it: the chunk runs whole again (the
    retry policy's tries), and nothing of the dead try shows."""
    nb = make_notebook(FLAKY)
    (tmp_path / "flakylib.py").write_text(FLAKY_LIB)
    env = {**_flaky_env(tmp_path / "marks", tries=1), "FLAKY_EXIT": "1"}
    proc = jup2kub("run", nb, "--jobs", "2", "--workdir", tmp_path / "w", cwd=tmp_path, env=env)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    run_id = re.search(r"run (\S+): succeeded", proc.stdout).group(1)  # type: ignore[union-attr]
    result = nbformat.read(tmp_path / "w" / "runs" / run_id / "result.ipynb", as_version=4)
    assert "".join(o["text"] for o in result.cells[1].outputs) == "".join(
        f"element {x}\n" for x in range(7)
    )
    assert result.cells[2].outputs[0]["text"] == (
        "[0, 10, 20, 30, 40, 50, 60] [0, 10, 20, 30, 40, 50, 60] 6 60\n"
    )
