"""Splitting: each mode, auto detection, names, parameters, and bad splits."""

from __future__ import annotations

import re
from collections.abc import Callable
from pathlib import Path

import pytest
import yaml

from jup2kub.api import build, inspect_notebook
from jup2kub.errors import CycleError, DuplicateStepError, SplitError, UnknownStepError
from jup2kub.model.names import dns_label

MakeNb = Callable[..., Path]


def steps(path: Path, split: str = "auto") -> list[tuple[str, list[int]]]:
    p = inspect_notebook(path, split)
    return [(s.name, s.cells) for s in p.steps]


def test_tags_mode_follows_kale(make_notebook: MakeNb) -> None:
    path = make_notebook(
        [
            ("code", "import os", ["imports"]),
            ("code", "def f(x):\n    return x + 1", ["functions"]),
            ("code", "a = 1", ["pipeline-parameters"]),
            ("code", "x = f(a)", ["step:Load Data"]),
            ("code", "x += 1"),  # untagged: joins load-data
            ("code", "y = x * 2", ["block:double"]),  # legacy block: tag
            ("code", "print('debug', y)", ["skip"]),
            ("code", "print('not skipped')"),  # Kale: skip is transparent, joins double
            ("code", "z = y", ["step:copy", "prev:load-data"]),
            ("code", "print(z)", ["pipeline-metrics"]),
        ]
    )
    p = inspect_notebook(path)
    assert p.split == "tags"
    assert [(s.name, s.cells) for s in p.steps] == [
        ("load-data", [3, 4]),
        ("double", [5, 7]),
        ("copy", [8]),
        ("pipeline-metrics", [9]),
    ]
    assert p.prelude == [0, 1]
    assert p.parameter_cells == [2]
    assert p.skipped == [6]
    assert p.step("copy").after == ["load-data", "double"]
    assert p.step("load-data").parameters == {"a"}


def test_tags_untagged_cells_after_imports_join_the_prelude(make_notebook: MakeNb) -> None:
    path = make_notebook(
        [
            ("code", "import math", ["imports"]),
            ("code", "import json"),
            ("code", "v = math.pi", ["step:a"]),
        ]
    )
    p = inspect_notebook(path)
    assert p.prelude == [0, 1]
    assert [s.cells for s in p.steps] == [[2]]


def test_markers_mode(make_notebook: MakeNb) -> None:
    path = make_notebook(
        [
            "#| tags: [parameters]\nn = 3",
            "#| echo: false\n#| step: load\ndata = list(range(n))",
            "total = sum(data)",
            "#| step: report\nprint(total)",
            "#| step: other\n#| prev: load\nprint('x')",
        ]
    )
    p = inspect_notebook(path)
    assert p.split == "markers"
    assert [(s.name, s.cells) for s in p.steps] == [
        ("load", [1, 2]),
        ("report", [3]),
        ("other", [4]),
    ]
    assert p.parameters == {"n": 3}
    assert p.step("other").after == ["load"]


def test_markers_code_before_first_marker_forms_a_setup_step(make_notebook: MakeNb) -> None:
    path = make_notebook(["import math", "#| step: a\nx = math.e"])
    assert steps(path) == [("setup", [0]), ("a", [1])]


def test_headings_mode_uses_shallowest_repeated_level(make_notebook: MakeNb) -> None:
    path = make_notebook(
        [
            ("md", "# Study\nintro"),
            "import math",
            ("md", "## Load the data!\n### detail"),
            "x = 1",
            ("md", "### only once at this level? no, twice"),
            "y = x",
            ("md", "## Analyse `x`"),
            "z = y + x",
            ("md", "## Empty section"),
            ("md", "```\n## not a heading inside a fence\n```"),
        ]
    )
    p = inspect_notebook(path)
    assert p.split == "headings"
    assert [(s.name, s.cells) for s in p.steps] == [
        ("setup", [1]),
        ("load-the-data", [3, 5]),
        ("analyse-x", [7]),
    ]


def test_headings_mode_without_repeated_level_is_an_error(make_notebook: MakeNb) -> None:
    path = make_notebook([("md", "# Title"), "x = 1"])
    with pytest.raises(SplitError, match="heading"):
        inspect_notebook(path, "headings")


def test_cells_mode_and_parameters(make_notebook: MakeNb) -> None:
    path = make_notebook(
        [("code", "alpha = 0.1\nname = 'x'\nk = 2 ** 3", ["parameters"]), "a = alpha", "", "b = a"]
    )
    p = inspect_notebook(path, split="cells")
    assert p.split == "cells"
    assert [(s.name, s.cells) for s in p.steps] == [("cell-1", [1]), ("cell-3", [3])]
    assert p.parameters == {"alpha": 0.1, "name": "x", "k": None}
    grouped = inspect_notebook(path)  # auto: no explicit steps, so the chain is grouped
    assert grouped.split == "grouped"
    assert [(s.name, s.cells) for s in grouped.steps] == [("cells-1-3", [1, 3])]


@pytest.mark.parametrize(
    ("cells", "mode"),
    [
        ([("code", "x = 1", ["step:a"]), "#| step: b\ny = 2"], "tags"),
        (["#| step: b\ny = 2", ("md", "## A"), ("md", "## B")], "markers"),
        ([("md", "## A"), "x = 1", ("md", "## B"), "y = 2"], "headings"),
        ([("md", "# Only one"), "x = 1", "y = 2"], "grouped"),
    ],
)
def test_auto_picks_the_first_mode_the_notebook_uses(
    make_notebook: MakeNb, cells: list, mode: str
) -> None:
    assert inspect_notebook(make_notebook(cells)).split == mode


def test_explicit_mode_overrides_auto(make_notebook: MakeNb) -> None:
    path = make_notebook(["#| step: a\nx = 1", "y = x"])
    assert steps(path, "cells") == [("cell-0", [0]), ("cell-1", [1])]


@pytest.mark.parametrize(
    ("raw", "label"),
    [
        ("Load Data", "load-data"),
        ("load_data", "load-data"),
        ("  --Étape 2: Modèle--  ", "etape-2-modele"),
        ("UPPER", "upper"),
        ("!!!", "step"),
        ("x" * 60, "x" * 40),
        ("a" * 39 + "-b", "a" * 39),
    ],
)
def test_dns_labels(raw: str, label: str) -> None:
    assert dns_label(raw) == label


def test_derived_names_are_made_unique(make_notebook: MakeNb) -> None:
    path = make_notebook(
        [
            ("md", "## Results"),
            "x = 1",
            ("md", "## Results"),
            "y = x",
            ("md", "## " + "r" * 50),
            "z = 1",
            ("md", "## " + "r" * 45),
            "w = 2",
        ]
    )
    names = [s.name for s in inspect_notebook(path).steps]
    assert names == ["results", "results-2", "r" * 40, "r" * 38 + "-2"]
    assert all(len(n) <= 40 for n in names)


def test_duplicate_step_names_are_rejected(make_notebook: MakeNb) -> None:
    path = make_notebook(["#| step: a\nx = 1", "#| step: b\ny = 1", "#| step: a\nz = 1"])
    with pytest.raises(DuplicateStepError) as info:
        inspect_notebook(path)
    assert info.value.name == "a"
    assert info.value.cells == [0, 2]


def test_names_equal_after_sanitising_are_duplicates(make_notebook: MakeNb) -> None:
    path = make_notebook(
        ["#| step: load_data\nx = 1", "#| step: other\ny = 1", "#| step: Load Data\nz = 1"]
    )
    with pytest.raises(DuplicateStepError, match="load-data"):
        inspect_notebook(path)


def test_unknown_prev_target(make_notebook: MakeNb) -> None:
    path = make_notebook(
        [("code", "x = 1", ["step:a"]), ("code", "y = 1", ["step:b", "prev:nope"])]
    )
    with pytest.raises(UnknownStepError) as info:
        inspect_notebook(path)
    assert (info.value.cell_index, info.value.target, info.value.step) == (1, "nope", "b")


def test_prev_cycle(make_notebook: MakeNb) -> None:
    path = make_notebook(
        [
            ("code", "x = 1", ["step:a", "prev:c"]),
            ("code", "y = x", ["step:b"]),
            ("code", "z = y", ["step:c"]),
        ]
    )
    with pytest.raises(CycleError) as info:
        inspect_notebook(path)
    assert set(info.value.cycle) == {"a", "b", "c"}


def test_self_prev_is_a_cycle(make_notebook: MakeNb) -> None:
    path = make_notebook([("code", "x = 1", ["step:a", "prev:a"])])
    with pytest.raises(CycleError):
        inspect_notebook(path)


def test_forward_prev_without_cycle_orders_steps(make_notebook: MakeNb) -> None:
    path = make_notebook(
        [
            ("code", "x = 1", ["step:a", "prev:b"]),
            ("code", "print('independent')", ["step:b"]),
        ]
    )
    p = inspect_notebook(path)
    assert p.step("a").after == ["b"]
    assert p.topological_order() == ["b", "a"]


def test_several_step_tags_on_one_cell(make_notebook: MakeNb) -> None:
    path = make_notebook([("code", "x = 1", ["step:a", "block:b"])])
    with pytest.raises(SplitError, match="several step tags"):
        inspect_notebook(path)


def test_one_validation_of_step_names_for_every_command(
    make_notebook: MakeNb, tmp_path: Path
) -> None:
    """What ``inspect`` accepts, ``build`` builds; what a chart cannot use is refused by
    ``inspect`` already, naming the cell; a name that is cut says so."""
    with pytest.raises(
        SplitError, match=re.escape("cell 1: the cell's '#|' options are not valid YAML")
    ):
        inspect_notebook(make_notebook(["#| step: a\nx = 1", "#| step: -\ny = x"]))
    with pytest.raises(SplitError, match="cell 0: step name 'Kafka' is taken"):
        inspect_notebook(make_notebook(["#| step: Kafka\nx = 1"]))
    with pytest.raises(SplitError, match="has no letter or digit"):
        inspect_notebook(make_notebook([("code", "x = 1", ["step:---"])]))
    headed = inspect_notebook(
        make_notebook([("md", "## Kafka"), "x = 1", ("md", "## State"), "y = x"])
    )
    assert [s.name for s in headed.steps] == ["kafka-2", "state-2"]  # derived names step aside
    long = inspect_notebook(make_notebook(["#| step: " + "a" * 50 + "\nx = 1"]))
    assert [str(w) for w in long.split_warnings] == [
        f"cell 0: step name {'a' * 50!r} is cut to 40 characters: {'a' * 40!r}"
    ]
    numeric = make_notebook(["#| step: 123\nx = 1", "#| step: b\ny = x"])
    assert [s.name for s in inspect_notebook(numeric).steps] == ["123", "b"]
    _, out = build(numeric, tmp_path / "chart")
    assert list(yaml.safe_load((out / "values.yaml").read_text())["steps"]) == ["123", "b"]
