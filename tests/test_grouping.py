"""Automatic step grouping (``auto`` on a notebook without explicit steps): fewer steps, the
same parallelism, the same results."""

from __future__ import annotations

import json
import random
from collections.abc import Callable
from pathlib import Path

import pytest

from jup2kub.api import inspect_notebook
from jup2kub.model.pipeline import Pipeline
from tests.support.cli_runner import jup2kub
from tests.test_fidelity_run import run_and_compare

MakeNb = Callable[..., Path]


def _reachable(p: Pipeline) -> dict[str, set[str]]:
    """Step -> every step it waits for, directly or not."""
    seen: dict[str, set[str]] = {}
    for name in p.topological_order():
        ups = set(p.step(name).after)
        for up in list(ups):
            ups |= seen[up]
        seen[name] = ups
    return seen


def _cell_order(p: Pipeline) -> dict[int, set[int]]:
    """Cell -> every cell it waits for, in a one-step-per-cell pipeline."""
    reach = _reachable(p)
    return {p.step(n).cells[0]: {p.step(u).cells[0] for u in ups} for n, ups in reach.items()}


def _assert_keeps_parallelism(per_cell: Pipeline, grouped: Pipeline) -> None:
    """Two cells that could run in parallel are in different steps with no path between them;
    a cell that waited for another still does; and every code cell is in exactly one step."""
    order = _cell_order(per_cell)
    step_of = {c: s.name for s in grouped.steps for c in s.cells}
    assert sorted(step_of) == sorted(order)
    assert sum(len(s.cells) for s in grouped.steps) == len(order)
    reach = _reachable(grouped)
    for a in order:
        for b in order:
            if a >= b:
                continue
            sa, sb = step_of[a], step_of[b]
            if a in order[b]:
                assert sa == sb or sa in reach[sb], (a, b)
            elif not _definitions_only(per_cell, a) and not _definitions_only(per_cell, b):
                assert sa != sb, f"cells {a} and {b} could run in parallel but share {sa}"
                assert sa not in reach[sb] and sb not in reach[sa], (a, b, sa, sb)


def _definitions_only(p: Pipeline, cell: int) -> bool:
    return p.python[cell].startswith(("import ", "def "))


def _random_cells(rng: random.Random, n: int) -> list[str]:
    """A notebook of ``n`` cells, each defining v<i> from a random few earlier values, or only
    showing some, or only importing/defining a function."""
    cells: list[str] = []
    defined: list[str] = []
    for i in range(n):
        kind = rng.random()
        reads = rng.sample(defined, k=min(len(defined), rng.choice([0, 1, 1, 2, 3])))
        expr = " + ".join(reads) or str(i)
        if kind < 0.12:
            cells.append(f"import math as m{i}" if i % 2 else f"def f{i}(x):\n    return x + {i}")
        elif kind < 0.3 and reads:
            cells.append(f"print({expr})")
        elif kind < 0.38 and defined:
            target = rng.choice(defined)
            cells.append(f"{target} = {target} * 2")
        else:
            cells.append(f"v{i} = {expr}")
            defined.append(f"v{i}")
    return cells


@pytest.mark.parametrize("seed", range(40))
def test_grouping_never_merges_cells_that_could_run_in_parallel(
    seed: int, make_notebook: MakeNb
) -> None:
    rng = random.Random(seed)
    path = make_notebook(_random_cells(rng, rng.randint(4, 18)))
    per_cell = inspect_notebook(path, split="cells")
    grouped = inspect_notebook(path)
    assert grouped.split == "grouped"
    assert len(grouped.steps) <= len(per_cell.steps)
    _assert_keeps_parallelism(per_cell, grouped)
    for s in grouped.steps:  # a step is one stretch of the notebook
        assert s.cells == sorted(s.cells)


def test_a_linear_notebook_becomes_one_step(make_notebook: MakeNb) -> None:
    cells = ["import math\nx0 = 1"] + [f"x{i} = x{i - 1} + math.sqrt({i})" for i in range(1, 150)]
    p = inspect_notebook(make_notebook(cells))
    assert [(s.name, len(s.cells)) for s in p.steps] == [("cells-0-149", 150)]
    assert "cells 0, 1, 2" in p.steps[0].grouping[-1]


def test_definitions_join_the_cell_after_them(make_notebook: MakeNb) -> None:
    p = inspect_notebook(
        make_notebook(
            [
                "import json\n%matplotlib inline",
                "raw = [1, 2, 3]",
                "def double(v):\n    return [2 * x for x in v]",
                "print(double(raw))",
                "print(json.dumps(raw))",
            ]
        )
    )
    assert [s.cells for s in p.steps] == [[0, 1], [2, 3], [4]]
    assert p.steps[1].grouping == [
        "new step: cell 4 needs cell 1 but not this one, and need not wait for it",
        "cell 2 only imports or defines: joined to its neighbour",
    ]
    assert p.steps[2].after == [p.steps[0].name]


def test_no_step_spans_a_parameters_cell(make_notebook: MakeNb) -> None:
    p = inspect_notebook(make_notebook(["a = 1", ("code", "n = 2", ["parameters"]), "b = a * n"]))
    assert [s.cells for s in p.steps] == [[0], [2]]
    assert p.steps[1].grouping == ["new step: the parameters cell 1 comes before it"]


def test_explicit_splits_are_kept_as_written(make_notebook: MakeNb) -> None:
    chain = ["a = 1", "b = a + 1", "c = b + 1"]
    assert len(inspect_notebook(make_notebook(chain), split="cells").steps) == 3
    marked = inspect_notebook(make_notebook(["#| step: one\na = 1", "#| step: two\nb = a + 1"]))
    assert (marked.split, [s.name for s in marked.steps]) == ("markers", ["one", "two"])
    assert all(not s.grouping for s in marked.steps)


def test_inspect_shows_the_grouping(make_notebook: MakeNb) -> None:
    nb = make_notebook(["import os", "a = 1", "b = a + 1", "print(os.sep)"])
    text = jup2kub("inspect", nb)
    assert text.returncode == 0, text.stderr
    assert "split:      grouped (2 steps)" in text.stdout
    assert "grouped:    cell 0 only imports or defines: joined to its neighbour" in text.stdout
    assert "grouped:    cells 1, 2 form a chain" in text.stdout
    doc = json.loads(jup2kub("inspect", nb, "--json").stdout)
    assert [s["cells"] for s in doc["steps"]] == [[0, 1, 2], [3]]
    assert doc["steps"][1]["grouping"] == [
        "new step: it does not depend on cell 2, so they can run in parallel"
    ]


def test_grouped_run_equals_the_notebook(tmp_path: Path, make_notebook: MakeNb) -> None:
    """A value that cannot cross a step boundary (a generator) stays inside the step grouping
    made, and the results are the notebook's."""
    nb = make_notebook(
        [
            "import itertools\nnumbers = itertools.count(1)",
            "first = [next(numbers) for _ in range(3)]",
            "rest = (x * 2 for x in first)",
            "print(first, list(rest), next(numbers))",
        ]
    )
    assert len(inspect_notebook(nb, split="cells").unshippable) > 0
    assert inspect_notebook(nb).unshippable == []
    run_and_compare(nb, tmp_path)


def test_the_parallelism_check_catches_a_merge_of_parallel_cells(make_notebook: MakeNb) -> None:
    """The property the random notebooks are checked with fails on a split that merges two
    independent cells (markers put both in one step)."""
    path = make_notebook(["#| step: both\na = 1", "b = 2", "#| step: last\nc = a + b"])
    with pytest.raises(AssertionError, match="could run in parallel"):
        _assert_keeps_parallelism(inspect_notebook(path, split="cells"), inspect_notebook(path))


def test_steps_know_whether_the_notebook_seeds_before_or_in_them(make_notebook: MakeNb) -> None:
    """A step of a seeded notebook imports a module that draws at import where the notebook
    does (``StepSpec.random_seeded``); an unseeded notebook's steps may import it ahead."""
    from jup2kub.plan import plan_pipeline

    seeded = make_notebook(["#| step: a\nx = 1", "#| step: b\nimport random\nrandom.seed(1)"])
    plain = make_notebook(["#| step: a\nx = 1", "#| step: b\nimport math\ny = math.pi + x"])
    assert [s.spec.random_seeded for s in plan_pipeline(inspect_notebook(seeded)).steps] == [
        False,
        True,
    ]
    assert [s.spec.random_seeded for s in plan_pipeline(inspect_notebook(plain)).steps] == [
        False,
        False,
    ]
