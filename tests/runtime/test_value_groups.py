"""Outputs that may be one object (the step's ``groups``) are stored together, so that a later
step loading several of them gets one object again, as in the notebook (issue 13)."""

from __future__ import annotations

import json
import threading
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from jup2kub_runtime.contract.errors import OutputError, StateError
from jup2kub_runtime.contract.spec import Cell, StepSpec
from jup2kub_runtime.execution.step_run import run_step
from jup2kub_runtime.storage.state_store import MARKER, StateStore, value_units
from jup2kub_runtime.storage.valuefile import GROUP_FORMAT, VALUE_FORMAT

MAKE = """\
a = [1]
b = a
x = {"k": 1}
y = [2]
lst = [x, y]
arr = np.arange(6)
view = arr[2:]
solo = [0]
"""
USE = """\
same = (b is a, lst[0] is x, np.shares_memory(arr, view))
b.append(2)
x["k"] = 99
arr[3] = -1
seen = (list(a), lst[0]["k"], int(view[1]), list(solo))
"""
GROUPS = [["a", "b"], ["lst", "x"], ["arr", "view"]]


def pipeline(groups: list[list[str]]) -> tuple[StepSpec, StepSpec]:
    """A step making aliased values, and one that checks and mutates them."""
    make = StepSpec(
        pipeline="p",
        step="make",
        cells=[Cell(0, "import numpy as np"), Cell(1, MAKE)],
        outputs=["a", "b", "lst", "x", "arr", "view", "solo"],
        downstream=["use"],
        groups=groups,
    )
    names = ["a", "b", "lst", "x", "arr", "view", "solo"]
    use = StepSpec(
        pipeline="p",
        step="use",
        cells=[Cell(0, "import numpy as np"), Cell(2, USE)],
        inputs=dict.fromkeys(names, "make"),
        outputs=["same", "seen"],
        upstream=["make"],
    )
    return make, use


def test_grouped_outputs_are_one_object_again_downstream(tmp_path: Path) -> None:
    store = StateStore(tmp_path)
    make, use = pipeline(GROUPS)
    assert run_step(make, store, "r1").status == "succeeded"
    assert run_step(use, store, "r1").status == "succeeded"
    assert store.load_value("r1", "use", "same") == (True, True, True)
    # a mutation through one name shows through the other, as in the notebook
    assert store.load_value("r1", "use", "seen") == ([1, 2], 99, -1, [0])


def test_without_groups_the_aliases_come_apart(tmp_path: Path) -> None:
    """The difference the groups remove (and what the test above would see without them)."""
    store = StateStore(tmp_path)
    make, use = pipeline([])
    run_step(make, store, "r1")
    run_step(use, store, "r1")
    assert store.load_value("r1", "use", "same") == (False, False, False)
    assert store.load_value("r1", "use", "seen") == ([1], 1, 3, [0])


def test_manifest_names_one_file_per_group_and_sizes(tmp_path: Path) -> None:
    store = StateStore(tmp_path)
    make, _ = pipeline(GROUPS)
    run_step(make, store, "r1")
    d = store.result_dir("r1", "make")
    manifest = json.loads((d / "values.json").read_text())
    assert manifest["a"]["file"] == manifest["b"]["file"] == "values/group-a.pkl"
    assert manifest["x"]["file"] == manifest["lst"]["file"] == "values/group-lst.pkl"
    assert manifest["a"]["format"] == GROUP_FORMAT != VALUE_FORMAT
    assert manifest["lst"]["group"] == ["lst", "x"]
    assert manifest["arr"]["buffers"] == manifest["view"]["buffers"] >= 1
    assert manifest["solo"] == {
        "file": "values/solo.pkl",
        "format": VALUE_FORMAT,
        "type": "builtins.list",
        "bytes": (d / "values" / "solo.pkl").stat().st_size,
        "buffers": 0,
    }
    assert sorted(p.name for p in (d / "values").iterdir()) == [
        "group-a.pkl",
        "group-arr.pkl",
        "group-lst.pkl",
        "solo.pkl",
    ]
    sizes = store.stored_sizes("r1", "make")
    assert sizes["a"] == sizes["b"] == (d / "values" / "group-a.pkl").stat().st_size
    assert sizes["solo"] == manifest["solo"]["bytes"]
    assert set(sizes) == set(manifest)
    # one member alone (results, comparison with the notebook)
    assert store.load_value("r1", "make", "b") == [1]
    assert store.load_value("r1", "make", "lst") == [{"k": 1}, [2]]
    # a subset of a group, and members of the same group from two load_inputs calls
    got = store.load_inputs("r1", {"x": "make", "solo": "make"})
    assert got == {"x": {"k": 1}, "solo": [0]}
    again = store.load_inputs("r1", {"lst": "make"})
    assert again["lst"][0] is not got["x"]  # each call loads its own objects


def test_value_units_merge_overlapping_groups_and_skip_missing_names() -> None:
    values = dict.fromkeys(["a", "b", "c", "d", "e"], 0)
    assert value_units(values, []) == [["a"], ["b"], ["c"], ["d"], ["e"]]
    assert value_units(values, [["c", "a"], ["d", "c"], ["e", "zz"], ["zz", "b"]]) == [
        ["a", "c", "d"],
        ["b"],
        ["e"],
    ]


def test_an_unpicklable_member_is_named(tmp_path: Path) -> None:
    store = StateStore(tmp_path)
    values: dict[str, Any] = {"ok": [1], "lock": threading.Lock()}
    with pytest.raises(OutputError, match=r"variable 'lock' of step 's' \(lock\)") as info:
        store.save_step("r1", "s", values, outputs={}, timing={}, groups=[["ok", "lock"]])
    assert info.value.variable == "lock"
    assert not store.is_complete("r1", "s")
    assert not list(tmp_path.rglob(".*.tmp-*"))


def test_damaged_group_entries_are_state_errors(tmp_path: Path) -> None:
    store = StateStore(tmp_path)
    values = {"a": np.arange(4), "b": 2}
    store.save_step("r1", "s", values, outputs={}, timing={}, groups=[["a", "b"]])
    d = store.result_dir("r1", "s")
    manifest = json.loads((d / "values.json").read_text())
    manifest["c"] = dict(manifest["b"])  # names a member the file does not hold
    (d / "values.json").write_text(json.dumps(manifest))
    with pytest.raises(StateError, match="does not hold 'c'"):
        store.load_inputs("r1", {"a": "s", "c": "s"})
    manifest["a"]["file"] = "values/x.pkl"  # a single value's file, read as a group
    store.save_step("r1", "x", {"x": [1]}, outputs={}, timing={})
    (d / "values" / "x.pkl").write_bytes(
        (store.result_dir("r1", "x") / "values/x.pkl").read_bytes()
    )
    (d / "values.json").write_text(json.dumps(manifest))
    with pytest.raises(StateError, match="a value group holds a list"):
        store.load_value("r1", "s", "a")


def test_old_manifests_sizes_and_inputs(tmp_path: Path) -> None:
    """A manifest from before groups (and before sizes): one file per value, still read."""
    store = StateStore(tmp_path)
    store.save_step("old", "s", {"a": [1], "b": "x"}, outputs={}, timing={})
    d = store.result_dir("old", "s")
    manifest = json.loads((d / "values.json").read_text())
    for entry in manifest.values():
        del entry["bytes"], entry["buffers"]
    (d / "values.json").write_text(json.dumps(manifest))
    assert store.load_inputs("old", {"a": "s", "b": "s"}) == {"a": [1], "b": "x"}
    assert store.stored_sizes("old", "s") == {
        "a": (d / "values" / "a.pkl").stat().st_size,
        "b": (d / "values" / "b.pkl").stat().st_size,
    }
    (store.step_dir("old", "s") / MARKER).unlink()
    with pytest.raises(Exception, match="has not completed"):
        store.stored_sizes("old", "s")


def test_views_of_one_array_share_memory_again_partial_overlap_too(tmp_path: Path) -> None:
    store = StateStore(tmp_path)
    base = np.arange(10.0)
    values = {"head": base[:6], "tail": base[4:], "other": np.ones(3), "empty": base[:0]}
    store.save_step("r1", "s", values, outputs={}, timing={}, groups=[list(values)])
    got = store.load_inputs("r1", dict.fromkeys(values, "s"))
    for name, value in values.items():
        np.testing.assert_array_equal(got[name], value)
        assert got[name].flags.writeable, name
    got["head"][5] = -1.0  # base[5], seen through tail[1] in the notebook
    assert got["tail"][1] == -1.0
    assert not np.shares_memory(got["other"], got["head"])
    manifest = json.loads((store.result_dir("r1", "s") / "values.json").read_text())
    assert manifest["head"]["bytes"] < 10 * 8 + 3 * 8 + 2048  # the overlap is stored once


def test_pandas_objects_sharing_a_block_stay_apart_as_under_copy_on_write(
    tmp_path: Path,
) -> None:
    """pandas tracks which of its objects share memory (copy-on-write), pickle does not: a
    DataFrame and its column are loaded as copies, so that changing one in place leaves the
    other alone, as in the notebook."""
    import pandas as pd

    store = StateStore(tmp_path)
    df = pd.DataFrame({"x": np.arange(4.0), "y": np.arange(4.0)})
    col = df["x"]
    store.save_step(
        "r1", "s", {"df": df, "col": col}, outputs={}, timing={}, groups=[["df", "col"]]
    )
    got = store.load_inputs("r1", {"df": "s", "col": "s"})
    df.loc[0, "x"] = 100.0
    got["df"].loc[0, "x"] = 100.0
    assert got["col"][0] == col[0] == 0.0
    pd.testing.assert_frame_equal(got["df"], df)
