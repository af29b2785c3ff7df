"""Map cells (issue 18), the analysis: which loops run their iterations apart, what each
becomes, what is refused and how the refusal names the cell, line and variable."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest

from jup2kub.api import inspect_notebook
from jup2kub.errors import InputError, MapRefusedError
from jup2kub.model.mapping import _Context, qualify
from jup2kub.model.notebook import load_notebook
from jup2kub.model.split import split_notebook
from jup2kub.plan import plan_pipeline
from jup2kub_runtime.contract.mapspec import ACC, ITEM, MapSpec
from jup2kub_runtime.contract.spec import StepSpec
from tests.support.cli_runner import jup2kub

MakeNb = Callable[..., Path]
CTX = _Context("nb.ipynb", 4, {}, {"np": "numpy", "random": "random"})


def plan(source: str, chunk: int | None = None, ctx: _Context = CTX) -> MapSpec:
    return qualify(ctx, source, chunk)


# ---- qualifying forms --------------------------------------------------------------------------


def test_a_list_comprehension_collects_each_element_in_order() -> None:
    m = plan("#| map: true\nscores = [score(x) for x in chunks if x]\nscores[:2]")
    assert (m.form, m.iterable, m.result, m.line) == ("list", "chunks", "scores", 2)
    assert m.element.strip() == f"{ACC}.extend([score(x) for x in [{ITEM}] if x])"
    assert m.element.count("\n") == 2  # on the loop's own line
    assert m.finish.strip().splitlines() == [f"scores = {ACC}", f"del {ACC}"]
    assert m.after.strip() == "scores[:2]" and m.before.endswith(f"{ACC} = []\n")
    assert m.reads == ["score"]


def test_nested_generators_distribute_the_outer_one() -> None:
    m = plan("pairs = [(a, b) for a in xs for b in range(a)]")
    assert m.iterable == "xs"
    assert m.element.strip() == f"{ACC}.extend([(a, b) for a in [{ITEM}] for b in range(a)])"


def test_dict_and_set_comprehensions_are_rebuilt_in_order() -> None:
    d = plan("table = {k: f(v) for k, v in rows.items()}")
    assert d.form == "dict" and d.iterable == "rows.items()"
    assert d.element.strip() == f"{ACC}.extend([(k, f(v)) for k, v in [{ITEM}]])"
    assert d.finish.strip().splitlines()[0] == f"table = dict({ACC})"
    s = plan("seen = {f(x) for x in xs}")
    assert s.form == "set" and s.finish.strip().splitlines()[0] == f"seen = set({ACC})"


def test_list_of_map_with_one_or_several_collections() -> None:
    one = plan("ys = list(map(f, xs))")
    assert (one.form, one.iterable) == ("map", "xs")
    assert one.element.strip() == f"{ACC}.append(f({ITEM}))"
    two = plan("ys = list(map(lambda a, b: a + b, xs, zs))")
    assert two.iterable == "zip(xs, zs)"
    assert two.element.strip() == f"{ACC}.append((lambda a, b: a + b)(*{ITEM}))"


def test_a_for_loop_appending_per_iteration_results() -> None:
    m = plan(
        "out = []\nby_key = {}\nfor i, x in enumerate(xs):\n    y = f(x)\n    tmp = []\n"
        "    tmp.append(y)\n    out.append(y)\n    by_key[i] = tmp\nprint(len(out))"
    )
    assert (m.form, m.iterable, m.target) == ("for", "enumerate(xs)", "(i, x)")
    assert m.accumulators == ["by_key", "out"] and m.carry == ["tmp", "y"]
    lines = m.element.splitlines()
    assert lines[2] == f"for (i, x) in [{ITEM}]:" and lines[3] == "    y = f(x)"
    assert m.before == "out = []\nby_key = {}\n" and m.after.strip() == "print(len(out))"


def test_a_one_line_for_loop_and_a_set_accumulator() -> None:
    m = plan("for x in xs: seen.add(f(x))")
    assert m.accumulators == ["seen"] and m.target == "x"
    assert f"for x in [{ITEM}]:" in m.element


def test_continue_and_nested_loops_stay_inside_an_iteration() -> None:
    m = plan(
        "for x in xs:\n    if x < 0:\n        continue\n    for k in range(3):\n"
        "        if k == 1:\n            break\n        out.append((x, k))"
    )
    assert m.accumulators == ["out"] and m.carry == ["k"]


def test_functions_of_the_notebook_that_change_nothing_qualify(make_notebook: MakeNb) -> None:
    nb = make_notebook(
        [
            "import time\nimport numpy as np\ndef score(x):\n    t0 = time.time()\n"
            "    return float(np.sqrt(x)) + (time.time() - t0) * 0\nxs = list(range(8))",
            "#| map: true\n#| map-chunk: 3\nscores = [score(x) for x in xs]",
            "print(scores)",
        ]
    )
    p = inspect_notebook(nb)
    [step] = [s for s in p.steps if p.step_maps(s)]
    assert step.cells == [1] and p.maps[1].chunk == 3
    spec = plan_pipeline(p).step(step.name).spec
    assert spec.maps == [p.maps[1]]
    assert StepSpec.from_json(spec.to_json()).maps == spec.maps
    doc = p.to_json()["steps"]
    assert [s["map"] for s in doc if "map" in s] == [
        {"cell": 1, "line": 3, "form": "list", "over": "xs", "into": ["scores"], "chunk": 3}
    ]


# ---- the step of its own ---------------------------------------------------------------------


def test_a_map_cell_is_cut_out_of_its_step(make_notebook: MakeNb) -> None:
    nb = make_notebook(
        [
            "#| step: work\nxs = [1, 2, 3]",
            "#| map: true\nys = [x * 2 for x in xs]",
            "total = sum(ys)",
            "#| step: report\nprint(total)",
        ]
    )
    p = inspect_notebook(nb)
    assert [(s.name, s.cells) for s in p.steps] == [
        ("work", [0]),
        ("work-map", [1]),
        ("work-3", [2]),
        ("report", [3]),
    ]
    assert p.step("work-map").inputs == {"xs": "work"}
    assert "ys" in p.step("work-map").outputs


def test_the_kale_tag_map_marks_a_map_cell(make_notebook: MakeNb) -> None:
    nb = make_notebook(
        [
            ("code", "xs = [1, 2, 3]", ["block:load"]),
            ("code", "ys = [x + 1 for x in xs]", ["block:double", "map"]),
            ("code", "print(ys)", ["block:show"]),
        ]
    )
    p = inspect_notebook(nb)
    assert list(p.maps) == [1] and p.step("double").cells == [1]
    assert split_notebook(load_notebook(nb)).mode == "tags"


def test_inspect_shows_the_map(make_notebook: MakeNb, tmp_path: Path) -> None:
    nb = make_notebook(["xs = [1, 2]", "#| map: true\nout = {x: x for x in xs}", "print(out)"])
    proc = jup2kub("inspect", nb, cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    assert "map:        cell 1, line 2: dict over xs -> out" in proc.stdout


# ---- refusals ----------------------------------------------------------------------------------

REFUSED = [
    ("for x in xs:\n    total += x", 2, "total", "carried"),
    ("for x in xs:\n    if x:\n        last = x\n    out.append(last)", 4, "last", "carried"),
    ("for x in xs:\n    out.append(x)\n    n = len(out)", 3, "out", "collects into"),
    ("for x in xs:\n    if x > 3:\n        break\n    out.append(x)", 3, None, "break"),
    ("for x in xs:\n    x.append(1)\n    out.append(x)", 2, "x", "item of the collection"),
    ("for x in xs:\n    cache.update({x: 1})\n    out.append(x)", 2, "cache", "shares"),
    ("ys = [model.train_on(x) for x in xs]", 1, "model", "shares"),
    ("ys = [np.random.rand() * x for x in xs]", 1, "np.random.rand", "random"),
    ("for x in xs:\n    out.append(random.random())", 2, "random.random", "random"),
    ("for x in xs:\n    open('log.txt', 'a').write(x)", 2, "log.txt", "writes the file"),
    ("for x in xs:\n    os.system(f'touch {x}')", 2, None, "could not be ordered"),
    ("ys = [(n := n + x) for x in xs]", 1, "n", ":="),
    ("for x in xs:\n    out.append(x)\nelse:\n    done = True", 4, None, "else"),
    ("for x in xs:\n    def g():\n        return x\n    out.append(g())", 2, "g", "defines"),
    ("for x in xs:\n    import json\n    out.append(json.dumps(x))", 2, None, "imports"),
    ("ys = [f(x) for x in xs]\nzs = [g(x) for x in ys]", 2, None, "several loops"),
    ("ys = sorted(xs)", None, None, "no loop"),
    ("ys = list(map(make_f(), xs))", 1, None, "evaluated once"),
    ("for x in xs:\n    del x", 2, "x", "deletes"),
]


@pytest.mark.parametrize(("source", "line", "variable", "why"), REFUSED)
def test_what_cannot_run_apart_is_refused(
    source: str, line: int | None, variable: str | None, why: str
) -> None:
    with pytest.raises(MapRefusedError) as info:
        plan(source)
    err = info.value
    assert isinstance(err, InputError) and err.exit_code == 2
    assert err.cell == 4 and err.line == line
    assert why in err.what
    if variable is not None:
        assert err.variable == variable and variable in err.what


def test_notebook_functions_that_change_state_are_refused(make_notebook: MakeNb) -> None:
    cases = [
        ("seen = []\ndef f(x):\n    seen.append(x)\n    return x", "'seen'"),
        ("def f(x):\n    x.sort()\n    return x", "changes its arguments"),
        ("import numpy as np\ndef f(x):\n    return x + np.random.rand()", "draws"),
    ]
    for helper, why in cases:
        nb = make_notebook(
            [helper + "\nxs = [[2, 1], [4, 3]]", "#| map: true\nys = [f(x) for x in xs]"]
        )
        with pytest.raises(MapRefusedError) as info:
            inspect_notebook(nb)
        assert why in str(info.value) and "cell 1, line 2" in str(info.value)


def test_a_refusal_exits_2_with_cell_line_and_variable(
    make_notebook: MakeNb, tmp_path: Path
) -> None:
    nb = make_notebook(["xs = [1, 2]\ntotal = 0", "#| map: true\nfor x in xs:\n    total += x"])
    for command in ("inspect", "run"):
        proc = jup2kub(command, nb, cwd=tmp_path)
        assert proc.returncode == 2, proc.stdout + proc.stderr
        assert "cell 1, line 3" in proc.stderr and "'total'" in proc.stderr
        assert "Traceback" not in proc.stderr


@pytest.mark.parametrize("value", ["0", "-2", "many", "true"])
def test_a_bad_chunk_option_is_refused(value: str, make_notebook: MakeNb) -> None:
    nb = make_notebook(["xs = [1]", f"#| map: true\n#| map-chunk: {value}\nys = [x for x in xs]"])
    with pytest.raises(MapRefusedError, match="map-chunk"):
        inspect_notebook(nb)
