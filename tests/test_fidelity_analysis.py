"""The analysis classes behind "never a silent difference" (issue 13), as pure logic: aliases,
upward-exposed reads in loops, the global random state, effects the analysis cannot follow.
The end-to-end comparisons with nbclient are in tests/test_fidelity_run.py."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from jup2kub.api import inspect_notebook
from jup2kub.errors import SplitError
from jup2kub.model.pipeline import Pipeline
from jup2kub.plan import plan_pipeline
from jup2kub_runtime.execution.randomness import RANDOM_STATE

MakeNb = Callable[..., Path]


@pytest.fixture
def pipe(make_notebook: MakeNb) -> Callable[..., Pipeline]:
    def run(*cells: Any) -> Pipeline:
        return inspect_notebook(make_notebook(list(cells)), "cells")

    return run


Pipe = Callable[..., Pipeline]


# ---- loops: reads are upward-exposed uses only ------------------------------------------------


def test_names_bound_in_a_loop_body_before_use_are_not_inputs(pipe: Pipe) -> None:
    p = pipe(
        "i = 0\ny = 0\nrows = [1, 2]",
        *[f"for i in range(3):\n    y = i * {k}\n    print(y)" for k in range(6)],
    )
    for k in range(1, 7):
        s = p.step(f"cell-{k}")
        assert s.inputs == {} and s.after == [], (k, s.inputs)


def test_a_name_read_before_it_is_bound_in_the_loop_is_an_input(pipe: Pipe) -> None:
    p = pipe("total = 10", "for v in [1, 2]:\n    total = total + v", "print(total)")
    assert p.step("cell-1").inputs == {"total": "cell-0"}
    assert p.step("cell-2").inputs == {"total": "cell-1"}


def test_a_loop_that_may_not_run_still_hands_the_older_value_on(pipe: Pipe) -> None:
    p = pipe("x = 1\ndata = []", "for v in data:\n    x = v", "print(x)")
    assert p.step("cell-1").inputs == {"data": "cell-0", "x": "cell-0"}
    assert p.step("cell-2").inputs == {"x": "cell-1"}


def test_with_target_then_loop_variable_of_the_same_name_is_not_refused(pipe: Pipe) -> None:
    p = pipe(
        "with open('notes.txt', 'w') as file:\n    file.write('x')",
        "import os\nfor file in sorted(os.listdir('.')):\n    if file.endswith('.txt'):\n"
        "        print(file)",
    )
    assert p.unshippable == []
    assert "file" not in p.step("cell-1").inputs


def test_branch_local_names_and_handler_names_are_not_inputs(pipe: Pipe) -> None:
    p = pipe(
        "z = 0\ne = 'old'\nflag = True",
        "if flag:\n    z = 5\n    print(z)\ntry:\n    1 / 0\nexcept ZeroDivisionError as e:\n"
        "    print(e)",
    )
    assert p.step("cell-1").inputs == {"flag": "cell-0"}


# ---- one object, several names -------------------------------------------------------------


def test_mutation_through_an_alias_changes_the_original(pipe: Pipe) -> None:
    p = pipe("a = [1]", "b = a", "b.append(2)", "print(a)")
    assert p.step("cell-3").inputs == {"a": "cell-2"}
    # both come from the same stored group, so the step sees one object
    assert p.step("cell-2").inputs == {"a": "cell-1", "b": "cell-1"}
    assert p.step("cell-1").groups == [["a", "b"]]


def test_loop_over_a_list_of_frames_changes_each(pipe: Pipe) -> None:
    p = pipe(
        "train = {'x': 1}\ntest = {'x': 2}",
        "for d in [train, test]:\n    d['y'] = d['x'] * 2",
        "print(train, test)",
    )
    assert p.step("cell-2").inputs == {"test": "cell-1", "train": "cell-1"}


def test_an_element_taken_out_of_a_container_then_changed(pipe: Pipe) -> None:
    p = pipe(
        "models = [{'k': 1}, {'k': 2}]", "first = models[0]", "first['k'] = 9", "print(models)"
    )
    assert p.step("cell-3").inputs == {"models": "cell-2"}


def test_figure_changed_through_its_axes_then_saved(pipe: Pipe) -> None:
    p = pipe(
        "import matplotlib.pyplot as plt\nfig, ax = plt.subplots()",
        "ax.plot([1, 2, 3])\nax.set_title('t')",
        "fig.savefig('f.png')",
    )
    assert p.step("cell-2").inputs == {"fig": "cell-1"}
    assert p.step("cell-0").groups == [["ax", "fig"]]  # stored together: one figure


def test_a_function_that_changes_its_argument(pipe: Pipe) -> None:
    p = pipe(
        "def prep(d):\n    d['x2'] = d['x'] ** 2",
        "df = {'x': 3}",
        "prep(df)",
        "print(df)",
    )
    assert p.step("cell-3").inputs == {"df": "cell-2"}


def test_a_function_that_changes_a_module_level_object(pipe: Pipe) -> None:
    p = pipe("log = []\ndef add(v):\n    log.append(v)", "add(1)", "print(log)")
    assert p.step("cell-2").inputs == {"log": "cell-1"}


def test_drawing_on_an_axes_passed_as_keyword(pipe: Pipe) -> None:
    p = pipe(
        "import matplotlib.pyplot as plt\nfig, ax = plt.subplots()\ndata = [1, 2]",
        "import seaborn as sns\nsns.histplot(data, ax=ax)",
        "fig.savefig('h.png')",
    )
    assert p.step("cell-2").inputs == {"fig": "cell-1"}


def test_readonly_inputs_are_declared_for_the_runtime_guard(pipe: Pipe) -> None:
    p = pipe("a = [1]\nb = [2]", "print(a)\nb.append(3)", "print(b)")
    spec = plan_pipeline(p).step("cell-1").spec
    assert spec.readonly_inputs == ["a"]


def test_rebinding_ends_the_alias(pipe: Pipe) -> None:
    p = pipe("a = [1]", "b = a\nb = [5]", "b.append(1)", "print(a)")
    assert p.step("cell-3").inputs == {"a": "cell-0"}


# ---- the global random generators -----------------------------------------------------------


def test_random_state_flows_from_the_seed_through_each_draw(pipe: Pipe) -> None:
    p = pipe(
        "import numpy as np\nimport random\nprint('before')",
        "np.random.seed(1)\nrandom.seed(1)",
        "a = np.random.rand(3)",
        "b = random.choice([1, 2, 3])",
        "print('no draw here')",
    )
    assert RANDOM_STATE not in p.step("cell-0").inputs
    assert p.step("cell-2").inputs == {RANDOM_STATE: "cell-1"}
    assert p.step("cell-3").inputs == {RANDOM_STATE: "cell-2"}
    assert p.step("cell-4").random_guard and not p.step("cell-0").random_guard
    assert not p.step("cell-3").random_guard


def test_imported_random_functions_and_implicit_draws(pipe: Pipe) -> None:
    p = pipe(
        "from numpy.random import rand, seed\nfrom sklearn.model_selection import "
        "train_test_split\nimport numpy as np\nseed(0)",
        "x = rand(4)",
        "parts = train_test_split(x)",
        "fixed = train_test_split(x, random_state=0)",
        "rng = np.random.default_rng(0)\nr = rng.normal()",
    )
    assert RANDOM_STATE in p.step("cell-1").inputs
    assert p.step("cell-2").inputs[RANDOM_STATE] == "cell-1"
    assert RANDOM_STATE not in p.step("cell-3").inputs
    assert RANDOM_STATE not in p.step("cell-4").inputs


def test_without_a_seed_nothing_is_carried(pipe: Pipe) -> None:
    p = pipe("import numpy as np", "a = np.random.rand()", "b = np.random.rand()")
    assert p.step("cell-2").inputs == {} and not p.step("cell-2").random_guard


# ---- effects the analysis cannot follow -----------------------------------------------------


def test_a_shell_command_writing_files_is_a_barrier(pipe: Pipe) -> None:
    p = pipe(
        "x = 1",
        "!echo a,b > data.csv",
        "import pandas as pd\nframe = pd.read_csv('data.csv')",
        "y = 2",
    )
    assert p.step("cell-1").barrier is not None
    assert p.step("cell-1").after == ["cell-0"]
    assert p.step("cell-2").after == ["cell-1"]
    assert p.step("cell-3").after == ["cell-1"]


def test_files_under_computed_names(pipe: Pipe) -> None:
    p = pipe(
        "names = ['a', 'b']",
        "for n in names:\n    with open(f'out_{n}.csv', 'w') as fh:\n        fh.write(n)",
        "import os\nprint(sorted(f for f in os.listdir('.') if f.startswith('out_')))",
    )
    assert p.step("cell-1").barrier is not None
    assert "cell-1" in p.step("cell-2").after


def test_computed_read_follows_earlier_writers(pipe: Pipe) -> None:
    p = pipe(
        "open('a.txt', 'w').write('x')",
        "name = 'a' + '.txt'",
        "print(open(name).read())",
    )
    assert p.step("cell-2").after == ["cell-0", "cell-1"]


def test_an_import_of_a_package_replays_its_earlier_submodule_imports(pipe: Pipe) -> None:
    p = pipe(
        "import matplotlib.pyplot as plt\nimport matplotlib",
        "matplotlib.pyplot.close('all')",
        "import matplotlib\nprint(matplotlib.pyplot.get_backend())",
    )
    for name in ("cell-1", "cell-2"):
        sources = [d.source for d in p.step(name).replay]
        assert "import matplotlib.pyplot as plt" in sources, name


def test_changing_a_loop_variable_is_no_read_of_an_older_value(pipe: Pipe) -> None:
    p = pipe(
        "import threading\nd = threading.Lock()\ntrain = {'x': 1}",
        "for d in [train]:\n    d['y'] = 2",
        "print(train)",
    )
    assert p.unshippable == []  # the lock named d is not needed by the loop
    assert p.step("cell-1").inputs == {"train": "cell-0"}
    assert p.step("cell-2").inputs == {"train": "cell-1"}


def test_a_seed_in_the_parameters_cell_or_a_kale_prelude(make_notebook: MakeNb) -> None:
    for first in [
        ("code", "import numpy as np\nnp.random.seed(3)\nn = 2", ["parameters"]),
        ("code", "import numpy as np\nnp.random.seed(3)", ["imports"]),
    ]:
        nb = make_notebook(
            [
                first,
                ("code", "a = np.random.rand()", ["block:one"]),
                ("code", "b = np.random.rand()", ["block:two"]),
                ("code", "print('quiet')", ["block:three", "prev:two"]),
            ]
        )
        p = inspect_notebook(nb, "tags")
        assert RANDOM_STATE not in p.step("one").inputs  # starts from the re-run seed
        assert p.step("two").inputs == {RANDOM_STATE: "one"}
        assert p.step("three").random_guard


def test_seeding_and_drawing_inside_the_notebook_s_functions(pipe: Pipe) -> None:
    p = pipe(
        "import random\nimport numpy as np\ndef seed_everything(s):\n    random.seed(s)\n"
        "    np.random.seed(s)\ndef noisy(v):\n    return v + np.random.normal()",
        "seed_everything(42)",
        "x = noisy(1.0)",
        "print('nothing random')",
    )
    assert p.step("cell-2").inputs == {RANDOM_STATE: "cell-1"}
    assert p.step("cell-3").random_guard


def test_a_submodule_loaded_implicitly_is_imported_where_it_is_reached(pipe: Pipe) -> None:
    p = pipe(
        "import matplotlib\nimport seaborn",  # seaborn imports matplotlib.pyplot
        "fig = matplotlib.pyplot.figure()",
    )
    (submodules,) = [d for d in p.step("cell-1").replay if d.kind == "submodules"]
    assert "'matplotlib.pyplot'" in submodules.source
    namespace: dict[str, object] = {}
    exec(submodules.source, namespace)  # imports what exists, binds nothing
    assert set(namespace) == {"__builtins__"}


def test_what_is_read_from_a_file_or_cursor_is_a_new_object(pipe: Pipe) -> None:
    p = pipe(
        "import sqlite3\nconn = sqlite3.connect(':memory:')\ncur = conn.cursor()\n"
        "rows = cur.execute('select 1').fetchall()\nfh = open('data.txt', 'w')\n"
        "lines = ['a']",
        "rows.append((2,))\nlines.sort()",
        "print(rows, lines)",
    )
    assert p.unshippable == []
    assert p.step("cell-1").inputs == {"lines": "cell-0", "rows": "cell-0"}


def test_pylab_is_a_star_import_and_skip_execution_cells_are_left_out(
    make_notebook: MakeNb,
) -> None:
    nb = make_notebook(
        [
            ("code", "print('slow')", ["skip-execution"]),
            "%pylab inline",
            "a = uniform(size=3)",
            "hist(a)",
        ]
    )
    p = inspect_notebook(nb, "cells")
    assert p.skipped == [0] and [s.name for s in p.steps] == ["cell-1", "cell-2", "cell-3"]
    assert p.warnings == []  # uniform and hist come from the star import
    assert [d.kind for d in p.step("cell-3").replay] == ["star"]


def test_in_place_augmented_assignment_and_draws_in_comprehensions(pipe: Pipe) -> None:
    p = pipe(
        "import numpy as np\nimport random\ncontrol = [1.0, 2.0]\ngroups = [control]\n"
        "np.random.seed(0)\nrandom.seed(0)",
        "baseline = groups[0]\nbaseline += [3.0]",
        "print(control)",
        "draws = [np.random.rand() for _ in range(3)]\npicks = {k: random.random() for k in 'ab'}",
    )
    assert p.step("cell-2").inputs == {"control": "cell-1"}
    assert p.step("cell-3").inputs == {RANDOM_STATE: "cell-0"}


def test_a_generator_that_is_not_carried_is_named_in_a_warning(pipe: Pipe) -> None:
    p = pipe("import torch\ntorch.manual_seed(0)", "x = torch.rand(2)")
    assert any("torch.manual_seed" in d.message for d in p.warnings)


# ---- local modules: an import of the notebook's own .py file reads it (issue 28, item 3) -------

MATHFOO = "%%writefile mathfoo.py\ndef double(x):\n    return 2 * x\n"


def test_importing_a_module_the_notebook_writes_follows_its_writer(pipe: Pipe) -> None:
    p = pipe(
        MATHFOO,
        "import time\ny = 5",
        "import mathfoo\nprint(mathfoo.double(21))",
        "print(mathfoo.double(y))",  # the import replayed here reads the file too
        "import mathfoo.sub as ms",
        "import importlib\nm = importlib.import_module('mathfoo')",
    )
    assert p.step("cell-1").after == []
    for k in (2, 4, 5):
        assert p.step(f"cell-{k}").file_deps == {"cell-0": {"mathfoo.py"}}, k
    assert p.step("cell-3").after == ["cell-0", "cell-1"]


def test_file_magic_open_and_package_directories_are_module_writes(pipe: Pipe) -> None:
    p = pipe(
        "%%file tools.py\nX = 1\n",
        "open('helpers.py', 'w').write('def f(x):\\n    return x + 1\\n')",
        "import os\nos.makedirs('pkg', exist_ok=True)\nopen('pkg/__init__.py', 'w').close()",
        "from helpers import f\nfrom tools import X\nfrom pkg import *",
        "import tool",  # another module: no read of tools.py
    )
    assert p.step("cell-3").file_deps == {
        "cell-0": {"tools.py"},
        "cell-1": {"helpers.py"},
        "cell-2": {"pkg", "pkg/__init__.py"},
    }
    assert p.step("cell-4").file_deps == {}


def test_a_module_written_after_its_import_is_written_after_it(pipe: Pipe) -> None:
    p = pipe("import mathfoo", MATHFOO)
    assert p.step("cell-1").file_deps == {"cell-0": {"mathfoo.py"}}


def test_a_module_written_and_imported_in_one_step(make_notebook: MakeNb) -> None:
    nb = make_notebook(
        ["#| step: both\nprint(1)", MATHFOO, "import mathfoo\nz = mathfoo.double(2)"]
    )
    p = inspect_notebook(nb, "markers")
    assert [s.name for s in p.steps] == ["both"] and p.step("both").after == []


def test_a_local_module_s_file_is_part_of_the_cache_key(make_notebook: MakeNb) -> None:
    nb = make_notebook(["import beside\nimport os\nv = beside.VALUE", MATHFOO, "import mathfoo"])
    (nb.parent / "beside.py").write_text("VALUE = 1\n")
    p = inspect_notebook(nb, "cells")
    assert "beside.py" in p.cache["cell-0"].reads
    assert "os.py" not in p.cache["cell-0"].reads and "os" not in p.cache["cell-0"].reads
    assert "mathfoo.py" in p.cache["cell-2"].reads


def test_run_defines_what_the_script_defines(pipe: Pipe) -> None:
    p = pipe(
        "%%writefile setup_vals.py\nSCALE = 3\ndef scale(v):\n    return v * SCALE\n",
        "x = 1",
        "%run setup_vals.py",
        "print(scale(4), SCALE, x)",
    )
    run = p.step("cell-2")
    assert run.file_deps == {"cell-0": {"setup_vals.py"}}
    assert run.inputs == {}  # without -i the script sees none of the notebook's names
    assert run.barrier is not None and "%run setup_vals.py" in run.barrier[1]
    assert p.step("cell-3").inputs == {"SCALE": "cell-2", "scale": "cell-2", "x": "cell-1"}


def test_run_i_reads_the_notebook_s_names_and_a_script_beside_it(make_notebook: MakeNb) -> None:
    nb = make_notebook(["base = 2", "%run -i scaled.py", "print(total)"])
    (nb.parent / "scaled.py").write_text("total = base * 10\n")
    p = inspect_notebook(nb, "cells")
    assert p.step("cell-1").inputs == {"base": "cell-0"}
    assert p.step("cell-2").inputs == {"total": "cell-1"}


def test_run_of_a_script_the_analysis_cannot_read_is_refused(pipe: Pipe) -> None:
    with pytest.raises(SplitError, match=r"%run nowhere\.py: the analysis cannot see"):
        pipe("%run nowhere.py", "print(f(1))")
    with pytest.raises(SplitError, match=r"%run helpers\.py"):  # written, text unknown
        pipe("open('helpers.py', 'w').write('def f(x): return x')", "%run helpers.py")


def test_a_module_written_in_a_directory_put_on_sys_path_orders_too(pipe: Pipe) -> None:
    p = pipe(
        "import os\nos.makedirs('lib', exist_ok=True)\n"
        "open('lib/shapes.py', 'w').write('SIDES = 3')",
        "import sys\nsys.path.insert(0, 'lib')\nimport shapes",
    )
    assert p.step("cell-1").file_deps == {"cell-0": {"lib", "lib/shapes.py"}}
