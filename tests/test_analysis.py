"""Data-flow analysis: which values cross which step boundary.

Each test builds a notebook with one step per code cell (``--split cells``), so step ``cell-i``
is code cell i, and checks inputs/outputs/after as ``inspect --json`` reports them.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from jup2kub.api import inspect_notebook
from jup2kub.errors import CellSyntaxError
from jup2kub_runtime.execution.randomness import RANDOM_STATE

MakeNb = Callable[..., Path]


@pytest.fixture
def flow(make_notebook: MakeNb) -> Callable[..., dict[str, dict[str, Any]]]:
    def run(*cells: Any, split: str = "cells") -> dict[str, dict[str, Any]]:
        doc = inspect_notebook(make_notebook(list(cells)), split).to_json()
        return {s["name"]: s for s in doc["steps"]}

    return run


Flow = Callable[..., dict[str, dict[str, Any]]]


def test_simple_chain(flow: Flow) -> None:
    g = flow("a = 1", "b = a + 1", "print(a, b)")
    assert g["cell-0"]["outputs"] == ["a"]
    assert g["cell-1"] == {
        "name": "cell-1",
        "cells": [1],
        "inputs": ["a"],
        "parameters": [],
        "outputs": ["b"],
        "after": ["cell-0"],
        "cache": {"cacheable": True, "reasons": []},
    }
    assert g["cell-2"]["inputs"] == ["a", "b"]
    assert g["cell-2"]["after"] == ["cell-0", "cell-1"]


def test_augmented_assignment_reads_and_redefines(flow: Flow) -> None:
    g = flow("x = 1", "x += 1", "print(x)")
    assert g["cell-1"]["inputs"] == ["x"]
    assert g["cell-1"]["outputs"] == ["x"]
    assert g["cell-2"]["after"] == ["cell-1"]
    assert g["cell-0"]["outputs"] == ["x"]


def test_reader_depends_on_latest_definer(flow: Flow) -> None:
    g = flow("x = 1", "x = 2", "y = x")
    assert g["cell-2"]["after"] == ["cell-1"]
    assert g["cell-0"]["outputs"] == []  # overwritten before anyone read it
    assert g["cell-1"]["inputs"] == []


def test_read_before_local_redefinition_is_an_input(flow: Flow) -> None:
    g = flow("x = 1", "print(x)\nx = 5\nprint(x)", "z = x")
    assert g["cell-1"]["inputs"] == ["x"]
    assert g["cell-2"]["after"] == ["cell-1"]


def test_del_removes_a_value(flow: Flow, make_notebook: MakeNb) -> None:
    g = flow("x = 1\ny = 2", "print(x)\ndel x", "y2 = y")
    assert g["cell-1"]["inputs"] == ["x"]
    assert g["cell-1"]["outputs"] == []
    assert g["cell-2"]["after"] == ["cell-0"]
    p = inspect_notebook(make_notebook(["x = 1", "del x", "print(x)"]), "cells")
    assert p.step("cell-2").inputs == {}
    assert any("deleted" in w.message for w in p.warnings)


def test_comprehension_scope(flow: Flow) -> None:
    g = flow("i = 10\nitems = [1, 2]\nk = 3", "sq = [i * k for i in items if i > 0]", "print(i)")
    assert g["cell-1"]["inputs"] == ["items", "k"]  # the loop variable i is local
    assert g["cell-2"]["after"] == ["cell-0"]  # comprehension did not rebind i
    g = flow("rows = [[1]]", "flat = {v: w for row in rows for v in row for w in [v]}")
    assert g["cell-1"]["inputs"] == ["rows"]


def test_lambda_scope(flow: Flow) -> None:
    g = flow("x = 1\nscale = 2", "f = lambda x, y=scale: x * y", "print(f(3))")
    assert g["cell-1"]["inputs"] == ["scale"]
    assert g["cell-2"]["inputs"] == ["f"]  # a lambda is a value: it is shipped


def test_function_free_names_are_read_where_it_is_called(flow: Flow) -> None:
    g = flow(
        "rate = 0.5",
        "def apply(v):\n    return v * rate\n",
        "out = apply(10)",
    )
    assert g["cell-1"]["inputs"] == []  # defining does not read rate
    assert g["cell-1"]["outputs"] == []  # a def is re-run, not shipped
    assert g["cell-2"]["inputs"] == ["rate"]
    assert g["cell-2"]["after"] == ["cell-0"]
    assert g["cell-0"]["outputs"] == ["rate"]


def test_transitive_function_reads(flow: Flow) -> None:
    g = flow(
        "base = 3",
        "def inner():\n    return base\n\ndef outer():\n    return inner() + 1\n",
        "print(outer())",
    )
    assert g["cell-2"]["inputs"] == ["base"]


def test_recursive_function_terminates(flow: Flow) -> None:
    g = flow(
        "limit = 5",
        "def fact(n):\n    return 1 if n <= 1 else n * fact(n - 1)\n",
        "print(fact(limit))",
    )
    assert g["cell-2"]["inputs"] == ["limit"]


def test_def_time_reads_defaults_and_decorators(flow: Flow) -> None:
    g = flow(
        "default = 4\nregistry = []",
        "def reg(f):\n    registry.append(f)\n    return f\n",
        "@reg\ndef g(x=default):\n    return x\n",
        "print(g())",
    )
    assert g["cell-2"]["inputs"] == ["default", "registry"]
    # re-running the decorated def in cell-3 needs what the def itself reads
    assert g["cell-3"]["inputs"] == ["default", "registry"]


def test_global_in_function_writes_the_global(flow: Flow) -> None:
    g = flow(
        "counter = 0",
        "def bump():\n    global counter\n    counter += 1\n",
        "bump()",
        "print(counter)",
    )
    assert g["cell-2"]["inputs"] == ["counter"]
    assert g["cell-2"]["outputs"] == ["counter"]
    assert g["cell-3"]["after"] == ["cell-2"]


def test_walrus_defines_at_module_level(flow: Flow) -> None:
    g = flow("data = [1, 5]", "if (n := len(data)) > 1:\n    pass", "print(n)")
    assert g["cell-1"]["outputs"] == ["n"]
    assert g["cell-2"]["after"] == ["cell-1"]
    g = flow("data = [1, 5]", "big = [y for x in data if (y := x * 2) > 3]", "print(y)")
    assert g["cell-1"]["outputs"] == ["y"]


def test_for_with_except_targets(flow: Flow) -> None:
    g = flow(
        "for i in range(3):\n    pass",
        "with open('f.txt', 'w') as fh:\n    fh.write('x')",
        "try:\n    1 / 0\nexcept ZeroDivisionError as err:\n    msg = str(err)",
        "print(i, fh.closed, msg)",
    )
    assert g["cell-3"]["inputs"] == ["fh", "i", "msg"]
    assert g["cell-3"]["after"] == ["cell-0", "cell-1", "cell-2"]
    # the except name is unbound after the handler: it never flows on
    g = flow("try:\n    1 / 0\nexcept Exception as e:\n    pass", "print(e)")
    assert g["cell-1"]["inputs"] == []


def test_conditional_redefinition_passes_the_older_value_on(flow: Flow) -> None:
    g = flow("x = 1\nflag = True", "if flag:\n    x = 2", "print(x)")
    assert g["cell-2"]["after"] == ["cell-1"]
    # cell-1 may leave x untouched, so it must read the old x to hand it on
    assert g["cell-1"]["inputs"] == ["flag", "x"]
    assert g["cell-1"]["outputs"] == ["x"]


def test_if_else_both_defining_is_certain(flow: Flow) -> None:
    g = flow("x = 1\nflag = True", "if flag:\n    x = 2\nelse:\n    x = 3", "print(x)")
    assert g["cell-1"]["inputs"] == ["flag"]


def test_loop_body_definition_is_conditional(flow: Flow) -> None:
    g = flow("best = None\nitems = []", "for v in items:\n    best = v", "print(best)")
    assert g["cell-1"]["inputs"] == ["best", "items"]


def test_star_import_is_conservative(flow: Flow, make_notebook: MakeNb) -> None:
    path = make_notebook(["from math import *", "r = sqrt(2) + pi"], "star.ipynb")
    p = inspect_notebook(path, "cells")
    step = p.step("cell-1")
    assert step.inputs == {}
    assert [d.kind for d in step.replay] == ["star"]
    assert not p.warnings
    g = flow("from math import *\nv = 2", "print(sqrt(v))")
    assert g["cell-1"]["inputs"] == ["v"]


def test_class_body_and_methods(flow: Flow, make_notebook: MakeNb) -> None:
    cells = [
        "unit = 'kg'\nfactor = 2.0",
        "class Mass:\n    label = unit\n    def __init__(self, v):\n        self.v = v * factor\n",
        "m = Mass(3)",
        "print(m.v, Mass.label)",
    ]
    g = flow(*cells)
    assert g["cell-1"]["inputs"] == ["unit"]  # class body runs at definition
    assert g["cell-2"]["inputs"] == ["factor", "unit"]  # re-running the class, calling __init__
    assert g["cell-3"]["inputs"] == ["factor", "m", "unit"]
    assert g["cell-1"]["outputs"] == []  # the class itself is not a value
    p = inspect_notebook(make_notebook(cells), "cells")
    assert [d.names for d in p.step("cell-3").replay] == [("Mass",)]


def test_builtins_are_never_inputs(flow: Flow) -> None:
    g = flow("data = [3, 1]", "print(len(data), sorted(data), range(2), Exception, __name__)")
    assert g["cell-1"]["inputs"] == ["data"]


def test_shadowed_builtin_is_a_value(flow: Flow) -> None:
    g = flow("input = [1, 2]", "print(sum(input))")
    assert g["cell-1"]["inputs"] == ["input"]


def test_imports_defs_classes_are_rerun_not_shipped(make_notebook: MakeNb) -> None:
    p = inspect_notebook(
        make_notebook(
            [
                "import numpy as np\nfrom collections import OrderedDict as OD\n"
                "def f():\n    return np.ones(2)\n",
                "y = f()\nz = OD()",
            ]
        ),
        "cells",
    )
    s = p.step("cell-1")
    assert s.inputs == {}
    assert s.after == []
    assert sorted(n for d in s.replay for n in d.names) == ["OD", "f", "np"]
    sources = "\n".join(d.source for d in s.replay)
    assert "import numpy as np" in sources and "def f():" in sources
    assert "y = f()" not in sources


def test_conditional_import_block_is_rerun(make_notebook: MakeNb) -> None:
    p = inspect_notebook(
        make_notebook(
            [
                "try:\n    import ujson as json\nexcept ImportError:\n    import json",
                "print(json.dumps({}))",
            ]
        ),
        "cells",
    )
    s = p.step("cell-1")
    assert s.inputs == {}
    assert [d.names for d in s.replay] == [("json",)]


def test_mutation_is_redefinition(flow: Flow) -> None:
    g = flow(
        "import pandas as pd\ndf = pd.DataFrame({'a': [1]})\nitems = []\nmodel = object()",
        "df['b'] = df['a'] * 2",
        "items.append(1)",
        "model.fit(df)",
        "print(df, items, model)",
    )
    assert g["cell-1"]["inputs"] == ["df"] and g["cell-1"]["outputs"] == ["df"]
    assert g["cell-2"]["outputs"] == ["items"]
    assert g["cell-3"]["outputs"] == ["model"]
    assert g["cell-4"]["after"] == ["cell-1", "cell-2", "cell-3"]


def test_pure_queries_keep_branches_parallel(flow: Flow) -> None:
    g = flow(
        "import pandas as pd\ndf = pd.DataFrame({'a': [1, 2]})",
        "print(df.describe())\ndf.head()",
        "total = df['a'].sum()",
        "df.plot()\nprint(df.groupby('a').mean())",
    )
    assert [g[f"cell-{i}"]["after"] for i in (1, 2, 3)] == [["cell-0"]] * 3
    assert g["cell-0"]["outputs"] == ["df"]
    assert all(g[f"cell-{i}"]["outputs"] == [] for i in (1, 3))


def test_unknown_method_on_a_value_is_a_mutation(flow: Flow) -> None:
    g = flow(
        "import numpy as np\nrng = np.random.default_rng(0)", "a = rng.normal()", "b = rng.normal()"
    )
    assert g["cell-1"]["outputs"] == ["rng"]
    assert g["cell-2"]["after"] == ["cell-1"]


def test_module_calls_are_not_mutations_of_values(flow: Flow) -> None:
    g = flow("import numpy as np\nx = np.arange(3)", "print(np.sum(x))", "print(np.mean(x))")
    assert g["cell-1"]["after"] == g["cell-2"]["after"] == ["cell-0"]


def test_setup_calls_are_rerun_in_later_steps(make_notebook: MakeNb) -> None:
    p = inspect_notebook(
        make_notebook(
            [
                "%matplotlib inline\nimport numpy as np\nSEED = 3\nnp.random.seed(SEED)\n"
                "import os\nos.chdir('data')",
                "x = np.random.rand()",
            ]
        ),
        "cells",
    )
    s = p.step("cell-1")
    kinds = [(d.kind, d.source) for d in s.replay]
    assert ("setup", "get_ipython().run_line_magic('matplotlib', 'inline')") in kinds
    assert ("setup", "os.chdir('data')") in kinds  # the working directory carries over
    # seeding is not replayed (later draws would start the stream again): the state travels
    assert ("setup", "np.random.seed(SEED)") not in kinds
    assert s.inputs == {RANDOM_STATE: "cell-0"}


def test_ipython_magics_and_shell(flow: Flow, make_notebook: MakeNb) -> None:
    g = flow(
        "folder = '/tmp'\nn = 3\ndef f(v):\n    return v",
        "listing = !ls {folder}\n!echo $n",
        "%time result = f(n)",
        "%%time\ntotal = f(n) + 1\n",
        "%%capture captured\nprint(listing)",
        "print(result, total, captured)",
    )
    assert g["cell-1"]["inputs"] == ["folder", "n"]
    assert g["cell-2"]["inputs"] == ["n"] and g["cell-2"]["outputs"] == ["result"]
    assert g["cell-3"]["outputs"] == ["total"]
    assert g["cell-4"]["inputs"] == ["listing"] and g["cell-4"]["outputs"] == ["captured"]
    # ``!ls`` and ``!echo`` only read: they follow earlier file writers, they are no barrier
    assert g["cell-5"]["after"] == ["cell-2", "cell-3", "cell-4"]
    p = inspect_notebook(make_notebook(["x = 1", "%%bash\necho $x\n"]), "cells")
    assert p.step("cell-1").inputs == {}  # a bash body is not Python
    assert "run_cell_magic" in p.python[1]


def test_files_order_steps(flow: Flow) -> None:
    g = flow(
        "import pandas as pd\ndf = pd.DataFrame({'a': [1]})",
        "df.to_csv('out/data.csv')",
        "other = 1",
        "back = pd.read_csv('out/data.csv')",
        "!wc -l out/data.csv",
    )
    assert g["cell-3"]["after"] == ["cell-1"]
    assert g["cell-4"]["after"] == ["cell-1"]
    assert g["cell-2"]["after"] == []


def test_parameters(flow: Flow, make_notebook: MakeNb) -> None:
    path = make_notebook(
        [
            (
                "code",
                "alpha = 0.5\nlabels = ['a', 'b']\nlimit = 2 ** 10\nimport os",
                ["parameters"],
            ),
            "scaled = alpha * 2",
            "alpha = alpha + 1",
            "print(alpha, labels, scaled)",
        ]
    )
    doc = inspect_notebook(path, "cells").to_json()
    assert doc["parameters"] == {"alpha": 0.5, "labels": ["a", "b"], "limit": None}
    g = {s["name"]: s for s in doc["steps"]}
    assert g["cell-1"]["parameters"] == ["alpha"] and g["cell-1"]["inputs"] == []
    assert g["cell-2"]["parameters"] == ["alpha"] and g["cell-2"]["outputs"] == ["alpha"]
    assert g["cell-3"]["inputs"] == ["alpha", "scaled"]
    assert g["cell-3"]["parameters"] == ["labels"]


def test_independent_steps_form_parallel_waves(make_notebook: MakeNb) -> None:
    p = inspect_notebook(
        make_notebook(
            [
                "base = 1",
                "left = base + 1",
                "right = base * 2",
                "both = left + right",
            ]
        ),
        "cells",
    )
    assert p.levels() == [["cell-0"], ["cell-1", "cell-2"], ["cell-3"]]


def test_explicit_prev_adds_to_analysis(make_notebook: MakeNb) -> None:
    p = inspect_notebook(
        make_notebook(
            [
                ("code", "x = 1", ["step:a"]),
                ("code", "y = 2", ["step:b"]),
                ("code", "z = x", ["step:c", "prev:b"]),
            ]
        )
    )
    assert p.step("c").after == ["a", "b"]


def test_unresolved_names_are_warnings_not_errors(make_notebook: MakeNb) -> None:
    p = inspect_notebook(make_notebook(["y = undefined_thing + 1"]), "cells")
    assert [(w.step, w.cell, w.line) for w in p.warnings] == [("cell-0", 0, 1)]
    assert "undefined_thing" in p.warnings[0].message


def test_syntax_error_names_cell_and_line(make_notebook: MakeNb) -> None:
    path = make_notebook([("md", "# t"), "x = 1", "y = 2\nz = (3 +\n"])
    with pytest.raises(CellSyntaxError) as info:
        inspect_notebook(path)
    assert info.value.cell_index == 2
    assert info.value.line == 2


def test_syntax_error_inside_python_cell_magic(make_notebook: MakeNb) -> None:
    path = make_notebook(["x = 1", "%%time\ny = 2\nz = = 3\n"])
    with pytest.raises(CellSyntaxError) as info:
        inspect_notebook(path)
    assert (info.value.cell_index, info.value.line) == (1, 3)


@pytest.mark.parametrize("name", ["sales_markers", "digits_kale", "growth_headings", "plain_cells"])
def test_corpus_graphs(name: str) -> None:
    corpus = Path(__file__).resolve().parent / "corpus"

    doc = inspect_notebook(corpus / f"{name}.ipynb").to_json()
    expected = EXPECTED[name]
    assert doc["split"] == expected["split"]
    got = {s["name"]: (s["inputs"], s["outputs"], s["after"]) for s in doc["steps"]}
    assert got == expected["steps"]


EXPECTED: dict[str, dict[str, Any]] = {
    "sales_markers": {
        "split": "markers",
        "steps": {
            "load": ([], ["raw"], []),
            "clean": (["raw"], ["sales"], ["load"]),
            "summarize": (["sales"], ["by_region"], ["clean"]),
            "model": (["sales"], ["slope"], ["clean"]),
            "report": (["by_region", "slope"], [], ["clean", "summarize", "model"]),
        },
    },
    "digits_kale": {
        "split": "tags",
        "steps": {
            "load-data": ([], ["X", "y"], []),
            "split": (["X", "y"], ["X_test", "X_train", "y_test", "y_train"], ["load-data"]),
            "train": (["X_train", "y_train"], ["clf"], ["split"]),
            "evaluate": (["X_test", "clf", "y_test"], ["acc"], ["split", "train"]),
            "pipeline-metrics": (["acc"], [], ["evaluate"]),
        },
    },
    "growth_headings": {
        "split": "headings",
        "steps": {
            "setup": ([], [], []),
            "simulate-measurements": ([], ["observed", "t", "truth"], []),
            "fit": (["observed", "t"], ["fitted"], ["simulate-measurements"]),
            "residuals": (["fitted", "observed", "t"], [], ["simulate-measurements", "fit"]),
            "doubling-time": (["truth"], [], ["simulate-measurements"]),
        },
    },
    "plain_cells": {
        "split": "grouped",  # no chain to collapse: every cell keeps its own step
        "steps": {
            "cell-0": ([], ["values"], []),
            "cell-1": (["values"], ["count", "total"], ["cell-0"]),
            "cell-2": (["values"], ["squares"], ["cell-0"]),
            "cell-3": (["count", "total"], ["mean"], ["cell-1"]),
            "cell-4": (["mean", "squares"], [], ["cell-2", "cell-3"]),
        },
    },
}


def test_unpicklable_values_crossing_steps_are_found(make_notebook: MakeNb) -> None:
    p = inspect_notebook(
        make_notebook(
            [
                "import threading\nlog = open('log.txt', 'w')\nlock = threading.Lock()\nok = 1",
                "log.write('x')\nwith lock:\n    pass",
                "gen = (i * i for i in range(3))\n"
                "with open('data.txt', 'w') as fh:\n    fh.write('1')",
                "print(list(gen), ok)",
                "import sqlite3\ndb = sqlite3.connect(':memory:')\n"
                "rows = db.execute('select 1').fetchall()",
                "print(rows)",
            ]
        ),
        "cells",
    )
    found = {(u.name, u.what, u.source, u.reader, u.cell, u.line) for u in p.unshippable}
    assert found == {
        ("log", "an open file", "cell-0", "cell-1", 0, 2),
        ("lock", "a lock", "cell-0", "cell-1", 0, 3),
        ("gen", "a generator", "cell-2", "cell-3", 2, 1),
    }
    assert "'log' is an open file (cell 0, line 2), defined in step 'cell-0'" in str(
        next(u for u in p.unshippable if u.name == "log")
    )
