"""``jup2kub run`` on the classes of code that used to give silent differences (issue 13): the
results equal nbclient's top-to-bottom run, or the run fails naming the step, cell and cause.

Each notebook is small but written the way scientists write these patterns; the real-world
corpus (tests/test_corpus.py) covers them again inside larger notebooks.
"""

from __future__ import annotations

import re
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import nbformat
import pytest

from tests.support.cli_runner import jup2kub
from tests.support.equivalence import differing_files, reference_run, shown

MakeNb = Callable[..., Path]


def run_and_compare(
    nb: Path, tmp_path: Path, extra: list[str] | None = None, beside: dict[str, str] | None = None
) -> subprocess.CompletedProcess[str]:
    """Run ``nb`` both ways; assert same outputs per cell and the same files written; the run's
    process. ``beside``: files the user keeps beside the notebook (and in the working
    directories)."""
    ref_dir, run_dir = tmp_path / "reference", tmp_path / "pipeline"
    ref_dir.mkdir()
    run_dir.mkdir()
    for name, text in (beside or {}).items():
        for directory in (nb.parent, ref_dir, run_dir):
            (directory / name).write_text(text)
    ref_nb, _ = reference_run(nb, [], ref_dir)
    proc = jup2kub("run", nb, "--workdir", run_dir / "work", *(extra or []), cwd=run_dir)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    run_id = re.search(r"run (\S+): succeeded", proc.stdout).group(1)  # type: ignore[union-attr]
    result = nbformat.read(run_dir / "work" / "runs" / run_id / "result.ipynb", as_version=4)
    assert shown(result) == shown(ref_nb)
    assert differing_files(ref_dir, run_dir) == []
    return proc


ALIASES = [
    "#| step: load\nimport pandas as pd\ntrain = pd.DataFrame({'x': [1, 2, 3]})\n"
    "test = pd.DataFrame({'x': [4, 5]})\nhistory = [1, 2]\nlatest = history\n"
    "models = [{'name': 'a', 'fitted': False}, {'name': 'b', 'fitted': False}]",
    "#| step: features\nfor d in [train, test]:\n    d['x2'] = d['x'] ** 2\nlatest.append(3)",
    "#| step: pick\nbest = models[1]",
    "#| step: fit\nbest['fitted'] = True",
    "#| step: report\nprint(train.to_dict('list'))\nprint(test.to_dict('list'))\n"
    "print(history, latest is history)\nprint(models)",
]

FIGURE = [
    "#| step: fig\nimport matplotlib\nmatplotlib.use('Agg')\nimport matplotlib.pyplot as plt\n"
    "fig, ax = plt.subplots(figsize=(3, 2))\nplt.close(fig)",
    "#| step: draw\nax.plot([1, 2, 3], [3, 1, 2])\nax.set_title('trend')",
    "#| step: more\ndef style(axes):\n    axes.grid(True)\n    axes.set_xlabel('t')\nstyle(ax)",
    "#| step: save\nfig.savefig('trend.png', dpi=50)\nprint(len(ax.lines), ax.get_title(), "
    "ax.get_xlabel())",
]

FUNCTIONS = [
    "#| step: helpers\nlog = []\ndef add_features(frame):\n    frame['double'] = "
    "[v * 2 for v in frame['v']]\n    log.append('features')",
    "#| step: data\ndata = {'v': [1, 2, 3]}",
    "#| step: prep\nadd_features(data)",
    "#| step: use\nprint(data, log)",
]

#: changes made through a chain of the notebook's functions (issue 28): an interpreter whose
#: ``eval`` assigns into its ``env`` inside a ``match``, reached from ``batch`` with the global
#: ``ENV``; helpers filling a global ``grammar``; a class whose methods change ``self.state``
CALL_CHAINS = [
    "#| step: interpreter\nENV = {'pi': 3}\n"
    "def parse(program):\n    return program.replace('(', ' ').replace(')', ' ').split()\n"
    "def eval(exp, env):\n    match exp:\n        case ['define', name, *value]:\n"
    "            env[name] = eval(value, env)\n        case [x]:\n"
    "            return env.get(x, x)\n"
    "def batch(program):\n    return eval(parse(program), ENV)",
    "#| step: define\nbatch('(define r 10)')\nbatch('(define area pi)')",
    "#| step: grammar\ngrammar = {}\ndef rule(name, *words):\n    grammar[name] = words\n"
    "def fill(table, name):\n    table.setdefault(name, 0)\n    table[name] += 1\n"
    "class Machine:\n    def __init__(self):\n        self.state = {'pc': 0}\n"
    "    def step(self, counts):\n        self.state['pc'] += 1\n        fill(counts, 'step')",
    "#| step: load\nrule('stmt', 'PRINT', 'expr')\nrule('expr', 'NUM')\n"
    "machine = Machine()\nmachine.step(grammar)\nmachine.step(grammar)",
    "#| step: report\nprint(sorted(ENV.items()))\nprint(sorted(grammar))\n"
    "print(grammar['step'], machine.state)",
]

RANDOM = [
    "#| step: setup\nimport random\nimport numpy as np\nprint('unseeded so far')",
    "#| step: seed\nnp.random.seed(1)\nrandom.seed(1)",
    "#| step: first\na = np.random.rand(3).round(6)\nr1 = random.random()",
    "#| step: second\nb = np.random.randint(0, 100, 5)\nr2 = random.choice('abcdef')",
    "#| step: third\nimport pandas as pd\nframe = pd.DataFrame({'v': range(20)})\n"
    "picked = frame.sample(3)\nprint(a, b, r1, r2, list(picked['v']))",
]

LOOPS = [
    "#| step: notes\nimport os\nos.makedirs('logs', exist_ok=True)\n"
    "with open('logs/notes.txt', 'w') as file:\n    file.write('hello\\n')",
    "#| step: listing\nfor file in sorted(os.listdir('logs')):\n"
    "    if file.endswith('.txt'):\n        size = os.path.getsize(os.path.join('logs', file))\n"
    "        print(file, size)",
    "#| step: last\nprint('last:', file)",
    *[
        f"#| step: loop-{k}\nfor i in range({k + 2}):\n    sq = i * i\n    last = sq\n"
        f"print({k}, last)"
        for k in range(4)
    ],
]

OPAQUE = [
    "#| step: shell\n!echo a,b > data.csv\n!echo 1,2 >> data.csv",
    "#| step: read\nimport pandas as pd\nframe = pd.read_csv('data.csv')\nprint(frame)",
    "#| step: computed\nfor name in ['x', 'y']:\n    with open(f'out_{name}.txt', 'w') as fh:\n"
    "        fh.write(name * 3)",
    "#| step: gather\nimport glob\nprint(sorted(open(p).read() for p in glob.glob('out_*.txt')))",
    "#| step: move\nimport os\nos.makedirs('sub', exist_ok=True)\nos.chdir('sub')",
    "#| step: inside\nwith open('here.txt', 'w') as fh:\n    fh.write('in sub')\n"
    "print(os.path.basename(os.getcwd()))",
    "#| step: back\nos.chdir('..')\nprint(sorted(os.listdir('sub')))",
    "#| step: plots\nimport matplotlib\nimport pandas as pd\n"
    "pd.DataFrame({'a': [1, 2]}).plot();  # pandas loads matplotlib.pyplot",
    "#| step: later\nimport matplotlib\nprint(type(matplotlib.pyplot.figure).__name__)",
]

#: the notebook's own modules (issue 28, item 3): written by ``%%writefile`` (slowly: an import
#: not waiting for it fails) and imported two steps later, with a step in between that may run
#: in parallel and uses it through the replayed import; written by ``open``; kept beside the
#: notebook; a script run by ``%run`` whose definitions later steps use
LOCAL_MODULES = [
    "#| step: write\nimport time\ntime.sleep(1)",
    "%%writefile mathfoo.py\ndef double(x):\n    return 2 * x\n",
    "#| step: other\ny = 5",
    "#| step: use\nimport mathfoo\nprint(mathfoo.double(21))",
    "#| step: again\nprint(mathfoo.double(y))",
    "#| step: helpers\nimport time\ntime.sleep(1)\n"
    "with open('helpers.py', 'w') as fh:\n    fh.write('def f(x):\\n    return x + 1\\n')",
    "#| step: use-helpers\nfrom helpers import f\nprint(f(1))",
    "#| step: beside\nimport besidemod\nprint(besidemod.VALUE)",
    "#| step: script\nimport time\ntime.sleep(1)",
    "%%file scaling.py\nSCALE = 3\ndef scale(v):\n    return v * SCALE\nprint('script ran')\n",
    "#| step: run-it\n%run scaling.py",
    "#| step: use-run\nprint(scale(4), SCALE)",
]
BESIDE = {"besidemod.py": "VALUE = 'kept beside the notebook'\n"}


def test_local_modules_equal_to_the_notebook(tmp_path: Path, make_notebook: MakeNb) -> None:
    run_and_compare(make_notebook(LOCAL_MODULES), tmp_path, beside=BESIDE)


def test_local_modules_equal_to_the_notebook_over_kafka(
    tmp_path: Path, make_notebook: MakeNb, kafka: str
) -> None:
    run_and_compare(make_notebook(LOCAL_MODULES), tmp_path, ["--kafka", kafka], beside=BESIDE)


@pytest.mark.parametrize(
    "cells",
    [ALIASES, FIGURE, FUNCTIONS, CALL_CHAINS, RANDOM, LOOPS, OPAQUE],
    ids=["aliases", "figure", "functions", "call_chains", "random", "loops", "opaque"],
)
def test_equal_to_the_notebook(cells: list[str], tmp_path: Path, make_notebook: MakeNb) -> None:
    run_and_compare(make_notebook(cells), tmp_path)


@pytest.mark.parametrize(
    "cells", [ALIASES, RANDOM, CALL_CHAINS], ids=["aliases", "random", "call_chains"]
)
def test_equal_to_the_notebook_over_kafka(
    cells: list[str], tmp_path: Path, make_notebook: MakeNb, kafka: str
) -> None:
    run_and_compare(make_notebook(cells), tmp_path, ["--kafka", kafka])


def test_a_draw_through_a_stored_global_generator_fails_naming_the_cell(
    tmp_path: Path, make_notebook: MakeNb
) -> None:
    """``draw = np.random.rand`` stored, drawn from in a later step: that step draws from a copy,
    so no re-plan can continue the notebook's global stream; the run fails, naming the step,
    the cell and the fix, and does not recover (a silent difference otherwise: issue 28)."""
    nb = make_notebook(
        [
            "#| step: seed\nimport numpy as np\nnp.random.seed(0)\ndraw = getattr(np.random, "
            "'rand')",
            "#| step: hidden\nvalue = draw()",
            "#| step: later\nprint(np.random.rand())",
        ]
    )
    proc = jup2kub("run", nb, "--workdir", tmp_path / "w", cwd=tmp_path)
    assert proc.returncode == 1, proc.stdout + proc.stderr
    assert "step 'hidden'" in proc.stderr and "cell 1" in proc.stderr
    assert "RandomDrawError" in proc.stderr and "create the generator" in proc.stderr
    assert "re-planned" not in proc.stderr


def test_an_unseen_mutation_is_recovered_naming_the_variable(
    tmp_path: Path, make_notebook: MakeNb
) -> None:
    """An object holding its constructor's argument changes it (not followed by the analysis):
    the guard catches it and the run re-plans with ``rows`` an output of ``tidy``."""
    nb = make_notebook(
        [
            "#| step: data\nrows = [3, 1, 2]\nclass Box:\n    def __init__(self, items):\n"
            "        self.items = items\n    def tidy(self):\n        self.items.sort()",
            "#| step: tidy\nbox = Box(rows)\nbox.tidy()",
            "#| step: use\nprint(rows)",
        ]
    )
    proc = run_and_compare(nb, tmp_path)
    assert (
        "warning: step 'tidy' changed 'rows' in place in cell 1, which the analysis did not see"
    ) in proc.stderr
    assert "'rows' made an output of step 'tidy', read from there by step 'use'" in proc.stderr


def test_a_value_handed_on_only_in_case_is_a_loud_placeholder(
    tmp_path: Path, make_notebook: MakeNb
) -> None:
    nb = make_notebook(
        [
            "#| step: notes\nwith open('notes.txt', 'w') as file:\n    file.write('x')",
            "#| step: scan\nimport os\nfor file in os.listdir('empty'):\n    print(file)",
            "#| step: last\nprint('last:', file)",
        ]
    )
    (tmp_path / "empty").mkdir()
    assert "cannot be stored" not in jup2kub("inspect", nb, cwd=tmp_path).stderr
    proc = jup2kub("run", nb, "--workdir", tmp_path / "w", cwd=tmp_path)
    assert proc.returncode == 1, proc.stdout + proc.stderr
    assert "step 'last' failed in cell 2: UnstorableValueError" in proc.stderr
    assert "'file' was not stored by step 'notes': it held a TextIOWrapper" in proc.stderr


def test_steps_keep_what_the_command_line_leaves_out(tmp_path: Path, make_notebook: MakeNb) -> None:
    """The command line's process goes without jsonschema's optional format checkers (slow
    imports, jup2kub.startup); a step importing jsonschema still has them, as in Jupyter."""
    import jsonschema

    formats = ["iri", "uri", "duration", "date-time", "color"]
    available = [f for f in formats if f in jsonschema.FormatChecker.checkers]  # this process
    nb = make_notebook(
        [
            "#| step: check\nimport jsonschema\n"
            f"print([f for f in {formats!r} if f in jsonschema.FormatChecker.checkers])",
        ]
    )
    run_and_compare(nb, tmp_path)
    assert available == formats  # so the comparison above covered checkers that exist here
    # the command line's own process leaves them out, once nbformat (and jsonschema) are in
    code = (
        "import jup2kub.cli, sys, jsonschema\n"
        "from jup2kub.startup import FORMAT_CHECKERS\n"
        "print([n for n in FORMAT_CHECKERS if sys.modules.get(n, 'absent') is not None])\n"
        f"print([f for f in {formats!r} if f in jsonschema.FormatChecker.checkers])"
    )
    cli = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True
    ).stdout.splitlines()
    assert cli == ["[]", "[]"]
