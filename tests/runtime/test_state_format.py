"""The value format on the volume (pickle protocol 5, out-of-band buffers), old files, the
durability order of a step's result, and that no message is ever unpickled."""

from __future__ import annotations

import ast
import json
import os
import pickle
import time
from pathlib import Path
from typing import Any

import cloudpickle
import numpy as np
import pandas as pd
import pytest

from jup2kub_runtime.contract.errors import ErrorRecord, MessageError, OutputError, StateError
from jup2kub_runtime.contract.messages import parse
from jup2kub_runtime.storage import valuefile
from jup2kub_runtime.storage.state_store import MARKER, StateStore
from jup2kub_runtime.storage.valuefile import VALUE_FORMAT, dumps_value
from tests.support.runtime_harness import RUNTIME_DIR


def save(
    store: StateStore,
    values: dict[str, Any],
    run: str = "r1",
    step: str = "s",
    groups: list[list[str]] | None = None,
) -> None:
    store.save_step(
        run, step, values, outputs={"cells": []}, timing={"seconds": 0.1}, groups=groups or []
    )


def test_values_round_trip_numpy_pandas_and_plain_objects(tmp_path: Path) -> None:
    store = StateStore(tmp_path)
    values: dict[str, Any] = {
        "c": np.arange(12, dtype=np.int32).reshape(3, 4),
        "f": np.asfortranarray(np.linspace(0, 1, 20).reshape(4, 5)),
        "strided": np.arange(40)[::3],  # not contiguous: pickled in-band
        "empty": np.zeros((0, 3)),
        "records": np.array([(1, 2.5)], dtype=[("a", "i4"), ("b", "f8")]),
        "df": pd.DataFrame(
            {"x": np.arange(6), "y": np.linspace(0, 1, 6), "s": list("abcdef")}
        ).set_index("s"),
        "series": pd.Series([1.5, None, 3.0], name="v"),
        "plain": {"a": [1, 2, (3, "x")], "b": {1, 2}, "n": None},
        "fn": lambda v: v * 3,
        "big": b"\x07" * (9 << 20) + b"end",  # larger than a writeback chunk
        "ba": bytearray(b"mutable"),
    }
    save(store, values)
    manifest = json.loads((store.result_dir("r1", "s") / "values.json").read_text())
    assert {e["format"] for e in manifest.values()} == {VALUE_FORMAT}
    assert manifest["c"]["buffers"] == 1 and manifest["plain"]["buffers"] == 0
    for name, entry in manifest.items():
        path = store.result_dir("r1", "s") / entry["file"]
        assert path.stat().st_size == entry["bytes"], name
    got = {name: store.load_value("r1", "s", name) for name in values}
    for name in ("c", "f", "strided", "empty", "records"):
        np.testing.assert_array_equal(got[name], values[name])
        assert got[name].dtype == values[name].dtype and got[name].flags.writeable
    assert got["f"].flags.f_contiguous
    got["c"][0, 0] = 99  # loaded arrays are writable (and not shared with anything)
    pd.testing.assert_frame_equal(got["df"], values["df"])
    pd.testing.assert_series_equal(got["series"], values["series"])
    assert got["plain"] == values["plain"]
    assert got["fn"](2) == 6
    assert got["big"] == values["big"] and type(got["big"]) is bytes
    assert got["ba"] == values["ba"]
    assert not list(tmp_path.rglob(".*.tmp-*"))


def test_old_cloudpickle_files_still_load(tmp_path: Path) -> None:
    """Values written by earlier runtimes: format "cloudpickle", or no format at all."""
    store = StateStore(tmp_path)
    d = store.step_dir("old", "s")
    (d / "values").mkdir(parents=True)
    arr = np.arange(5.0)
    (d / "values" / "a.pkl").write_bytes(cloudpickle.dumps(arr, protocol=5))
    (d / "values" / "f.pkl").write_bytes(cloudpickle.dumps(lambda x: x + 1, protocol=5))
    (d / "values.json").write_text(
        json.dumps(
            {
                "a": {
                    "file": "values/a.pkl",
                    "format": "cloudpickle",
                    "type": "numpy.ndarray",
                    "bytes": 1,
                },
                "f": {"file": "values/f.pkl"},
            }
        )
    )
    (d / MARKER).write_text("{}")
    np.testing.assert_array_equal(store.load_value("old", "s", "a"), arr)
    assert store.load_value("old", "s", "f")(1) == 2
    both = store.load_inputs("old", {"a": "s", "f": "s"})
    np.testing.assert_array_equal(both["a"], arr)
    assert both["f"](2) == 3


def test_unknown_format_and_damaged_files_are_state_errors(tmp_path: Path) -> None:
    store = StateStore(tmp_path)
    save(store, {"a": np.arange(100), "b": 1})
    d = store.result_dir("r1", "s")
    manifest = json.loads((d / "values.json").read_text())
    data = (d / "values" / "a.pkl").read_bytes()
    (d / "values" / "a.pkl").write_bytes(data[:-5])  # footer cut
    with pytest.raises(StateError, match="truncated"):
        store.load_value("r1", "s", "a")
    (d / "values" / "a.pkl").write_bytes(b"junk" * 10)
    with pytest.raises(StateError, match="not a pickle5-oob"):
        store.load_value("r1", "s", "a")
    manifest["b"]["format"] = "arrow"
    (d / "values.json").write_text(json.dumps(manifest))
    with pytest.raises(StateError, match="unknown value format 'arrow'"):
        store.load_value("r1", "s", "b")


def test_unpicklable_value_is_an_output_error_and_leaves_no_file(tmp_path: Path) -> None:
    import threading

    store = StateStore(tmp_path)
    with pytest.raises(OutputError, match="'lock' of step 's'"):
        save(store, {"ok": 1, "lock": threading.Lock()})
    assert not store.is_complete("r1", "s")
    assert not list(tmp_path.rglob(".*.tmp-*"))
    assert not list(tmp_path.rglob("attempt-*"))  # the attempt's directory goes too
    with pytest.raises(OutputError):
        dumps_value("lock", threading.Lock(), "s")


def test_a_full_volume_is_a_state_error_not_an_output_error(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    store = StateStore(tmp_path)
    real_write = valuefile._Sink.write
    calls = {"n": 0}

    class FullDisk:
        def __init__(self, fh: Any) -> None:
            self.fh = fh

        def write(self, data: Any) -> int:
            raise OSError(28, "No space left on device")

        def __getattr__(self, name: str) -> Any:
            return getattr(self.fh, name)

    def failing_write(self: Any, data: Any) -> int:
        calls["n"] += 1
        if calls["n"] > 2 and not isinstance(self.fh, FullDisk):
            self.fh = FullDisk(self.fh)
        return real_write(self, data)

    monkeypatch.setattr(valuefile._Sink, "write", failing_write)
    with pytest.raises(StateError, match="No space left"):
        save(store, {"big": b"x" * (1 << 20)})
    assert not store.is_complete("r1", "s")
    assert not list(tmp_path.rglob(".*.tmp-*"))


@pytest.mark.parametrize("groups", [[], [["a", "b"]]])
def test_marker_only_after_everything_it_covers_is_durable(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, groups: list[list[str]]
) -> None:
    """Every file of the result is fsynced before its rename, every directory is fsynced
    after the renames, and the marker is linked last from a fsynced temporary file (then its
    directory is fsynced); the same when values are stored together (``groups``)."""
    events: list[tuple[str, str]] = []
    real_fsync, real_replace, real_link = os.fsync, os.replace, os.link

    def fsync(fd: int) -> None:
        events.append(("fsync", os.readlink(f"/proc/self/fd/{fd}")))
        real_fsync(fd)

    def replace(src: Any, dst: Any) -> None:
        events.append(("replace", str(dst)))
        real_replace(src, dst)

    def link(src: Any, dst: Any) -> None:
        events.append(("link", str(dst)))
        real_link(src, dst)

    store = StateStore(tmp_path)
    store.next_attempt("r1", "s")
    monkeypatch.setattr(os, "fsync", fsync)
    monkeypatch.setattr(os, "replace", replace)
    monkeypatch.setattr(os, "link", link)
    save(store, {"a": np.arange(3), "b": "text", "c": 1}, groups=groups)
    d = store.step_dir("r1", "s")
    a = store.result_dir("r1", "s")
    assert a.parent == d and a.name.startswith("attempt-")
    renames = [dst for kind, dst in events if kind == "replace"]
    assert len([r for r in renames if "/values/" in r]) == 3 - len(groups)
    assert all(Path(r).parent in (a, a / "values") for r in renames[:-1])
    assert Path(renames[-1]).name.startswith(f".{MARKER}.tmp-")  # the marker's content
    marker_at = events.index(("link", str(d / MARKER)))
    for dst in renames:
        i = events.index(("replace", dst))
        before = events[i - 1]
        assert before[0] == "fsync" and Path(before[1]).parent == Path(dst).parent, dst
    last_rename = max(events.index(("replace", dst)) for dst in renames[:-1])
    marker_tmp = events.index(("replace", renames[-1]))
    synced_dirs = {p for kind, p in events[last_rename:marker_tmp] if kind == "fsync"}
    assert {str(d), str(a), str(a / "values")} <= synced_dirs
    assert marker_at == marker_tmp + 1
    assert events[marker_at + 1] == ("fsync", str(d))
    assert events[marker_at + 2 :] == []


def test_receipts_and_attempts_are_kept_without_fsync(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    store = StateStore(tmp_path)
    synced: list[int] = []
    monkeypatch.setattr(os, "fsync", synced.append)
    store.record_join("r1", "s", "up")
    assert store.next_attempt("r1", "s") == 1 and store.next_attempt("r1", "s") == 2
    assert synced == []
    assert store.joined("r1", "s") == {"up"} and store.attempts("r1", "s") == 2
    store.save_failure("r1", "s", outputs={}, error=ErrorRecord(None, "E", ""), timing={})
    assert synced  # a failure makes the attempt counter durable too


class Boom:
    """Unpickling this would leave a file behind."""

    def __reduce__(self) -> tuple[Any, ...]:
        return (Path.touch, (Path(os.environ.get("J2K_BOOM", "/nonexistent")),))


def test_nothing_from_a_message_is_unpickled(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    flag = tmp_path / "boom"
    monkeypatch.setenv("J2K_BOOM", str(flag))
    payload = pickle.dumps(Boom(), protocol=5)
    with pytest.raises(MessageError, match="not UTF-8 JSON"):
        parse(payload, max_bytes=1 << 20)
    wrapped = parse(
        b'{"version": 1, "type": "run", "run_id": "r", "parameters": '
        + json.dumps({"x": payload.hex()}).encode()
        + b"}",
        max_bytes=1 << 20,
    )
    assert wrapped.parameters == {"x": payload.hex()}  # JSON values, never unpickled
    assert not flag.exists()
    # Only the value file format unpickles, and only the state store uses it: on files named
    # by a completed step's manifest.
    for module in sorted((RUNTIME_DIR / "jup2kub_runtime").rglob("*.py")):
        tree = ast.parse(module.read_text())
        names = {
            a.name.split(".")[0]
            for n in ast.walk(tree)
            if isinstance(n, (ast.Import, ast.ImportFrom))
            for a in (n.names if isinstance(n, ast.Import) else [ast.alias(n.module or "")])
        }
        relative = {
            part
            for n in ast.walk(tree)
            if isinstance(n, ast.ImportFrom) and n.level
            for a in n.names
            for part in [*(n.module or "").split("."), a.name]
        }
        if module.name != "valuefile.py":  # others may pickle (fingerprints, checks), no more
            assert not any(
                isinstance(n, ast.Attribute)
                and n.attr in {"load", "loads", "Unpickler"}
                and isinstance(n.value, ast.Name)
                and n.value.id in {"pickle", "cloudpickle"}
                for n in ast.walk(tree)
            ), module.name
            assert not names & {"dill", "marshal"}, module.name
        if module.name not in ("state_store.py", "valuefile.py"):
            assert "valuefile" not in relative, module.name


def test_sweep_removes_only_old_temp_files_of_dead_writers(tmp_path: Path) -> None:
    """A writer killed mid-write leaves ``.NAME.tmp-PID-NS``, or an attempt directory no
    marker names; a sweep removes those untouched for an hour, and leaves fresh ones (a live
    writer), values, the attempt the marker names and other files alone."""
    store = StateStore(tmp_path)
    store.save_step("r1", "a", {"x": 1}, outputs={}, timing={}, upstream_steps=[], attempt=1)
    step = store.step_dir("r1", "a")
    result = store.result_dir("r1", "a")
    dead = step / "attempt-1-0123456789ab"
    (dead / "values").mkdir(parents=True)
    (dead / "values" / "x.pkl").write_bytes(b"orphan")
    old = [
        result / ".values.json.tmp-99-1",
        result / "values" / ".x.pkl.tmp-99-2",
        store.run_dir("r1") / ".run.json.tmp-99-3",
    ]
    fresh = result / ".outputs.json.tmp-98-4"
    live = store.step_dir("r1", "b") / "attempt-1-ba9876543210"
    live.mkdir(parents=True)
    (live / ".values.json.tmp-97-5").write_bytes(b"partial")
    for path in [*old, fresh]:
        path.write_bytes(b"partial")
    an_hour_ago = time.time() - 7200
    for path in [*old, dead, result]:
        os.utime(path, (an_hour_ago, an_hour_ago))
    kept = sorted(p for p in tmp_path.rglob("*") if p.is_file() and p not in old)
    kept = [p for p in kept if dead not in p.parents]
    assert store.sweep_temporaries() == 4
    assert sorted(p for p in tmp_path.rglob("*") if p.is_file()) == kept
    assert not dead.exists() and live.exists()
    assert fresh.exists() and store.load_value("r1", "a", "x") == 1
