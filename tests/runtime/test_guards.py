"""The runtime's check that a step leaves its read-only inputs unchanged (``readonly_inputs``):
no false alarm after reading values of the common data-science types, a permanent failure
naming step, cell and variable after a real in-place change, and the J2K_GUARD_* settings.
Steps run with the real runtime over a real state store, from hand-written step specs."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from jup2kub_runtime.contract.config import (
    DEFAULT_GUARD_MAX_BYTES,
    DEFAULT_GUARD_MODE,
    Config,
    GuardSettings,
)
from jup2kub_runtime.contract.errors import GUARD_PHASE as PHASE
from jup2kub_runtime.contract.errors import INPUT_CHANGED, RANDOM_DRAWN, CellError, ConfigError
from jup2kub_runtime.contract.spec import Cell, ReplayCell, StepSpec
from jup2kub_runtime.contract.states import StepState
from jup2kub_runtime.execution.guards import fingerprint
from jup2kub_runtime.execution.step_run import run_step
from jup2kub_runtime.storage.state_store import StateStore

RUN = "r1"
IMPORTS = (
    "import io\nimport numpy as np\nimport pandas as pd\nimport matplotlib.pyplot as plt\n"
    "from sklearn.linear_model import LogisticRegression\n"
)


def two_steps(
    make: str, reads: list[str], name: str = "v", replay: str = IMPORTS
) -> tuple[StepSpec, StepSpec]:
    """A step making ``name`` and a step reading it in ``reads`` (cells 10, 11, ...)."""
    first = StepSpec(
        pipeline="p",
        step="make",
        cells=[Cell(0, replay + make)],
        outputs=[name],
        downstream=["use"],
    )
    second = StepSpec(
        pipeline="p",
        step="use",
        cells=[Cell(10 + i, src) for i, src in enumerate(reads)],
        replay=[ReplayCell(0, replay)],
        inputs={name: "make"},
        upstream=["make"],
        readonly_inputs=[name],
    )
    return first, second


def run_both(
    tmp_path: Path, specs: tuple[StepSpec, StepSpec], settings: GuardSettings | None = None
) -> StateStore:
    store = StateStore(tmp_path / "state", fsync=False)
    run_step(specs[0], store, RUN, guards=settings or GuardSettings())
    for name in specs[1].readonly_inputs:  # the check is real: the value has a fingerprint
        assert fingerprint(store.load_value(RUN, "make", name)) is not None
    outcome = run_step(specs[1], store, RUN, guards=settings or GuardSettings())
    assert outcome.status is StepState.SUCCEEDED
    return store


DF = "v = pd.DataFrame({'a': np.arange(20.0), 'b': list('xy' * 10), 'c': np.arange(20)})\n"

READS = {
    "dataframe": (
        DF + "v['d'] = v['a'] * 2\n"  # a second block of floats, as notebooks build them
        "v['t'] = pd.date_range('2020', periods=20)\n",
        [
            "v.describe()",
            "v.groupby('b').mean(numeric_only=True)\nv.groupby('b')['a'].agg(['mean', 'sum'])",
            "v['a'].sum(), v.a.max(), v[['a', 'c']], v.loc[3], v.iloc[2:5], v.values",
            "v.set_index('t').loc['2020-01-05':]\nv['t'].dt.year\nv.head()",
            "v.plot()\nv['a'].plot.hist()\nv.plot.scatter('a', 'c')\nplt.show()",
            "display(v)\nv.info(buf=io.StringIO())\nv.corr(numeric_only=True)\nv.T",
        ],
    ),
    "datetime index": (
        "v = pd.DataFrame({'y': range(30)}, index=pd.date_range('2020', periods=30))\n",
        ["v.loc['2020-01-05':]", "v.resample('W').sum()", "v.index.inferred_freq, v.index.freq"],
    ),
    "numpy array": (
        "v = np.random.default_rng(0).random((50, 4))\n",
        ["v.sum(), v.T, v[:, 1].mean(), np.sort(v), v.tolist()[:1]", "plt.plot(v[:, 0])"],
    ),
    "containers of strings": (
        "v = {'names': ['x', 'y'], 'tags': {'p', 'q', 'r', 'ab'}, 'm': {'k': 'v'}}\n",
        ["sorted(v['tags']), 'p' in v['tags'], v['tags'] | {'z'}", "list(v), v['m'].get('k')"],
    ),
    "fitted model": (
        "X = np.random.default_rng(1).random((60, 3))\ny = (X[:, 0] > 0.5).astype(int)\n"
        "v = LogisticRegression().fit(pd.DataFrame(X, columns=list('abc')), y)\n",
        [
            "X = pd.DataFrame(np.random.default_rng(2).random((20, 3)), columns=list('abc'))\n"
            "v.predict(X), v.predict_proba(X)",
            "v.score(X, (X['a'] > 0.5).astype(int)), v.get_params()",
            "v",  # the HTML repr
        ],
    ),
    "matplotlib figure": (
        "v, ax = plt.subplots()\nax.plot([1, 2, 3])\nax.set_title('t')\n",
        ["v.savefig(io.BytesIO(), format='png')", "display(v)", "v"],
    ),
}


@pytest.mark.parametrize("kind", list(READS))
def test_reading_an_input_does_not_trigger_the_guard(kind: str, tmp_path: Path) -> None:
    make, reads = READS[kind]
    store = run_both(tmp_path, two_steps(make, reads))
    assert store.error(RUN, "use") is None


def test_a_seaborn_plot_does_not_trigger_the_guard(tmp_path: Path) -> None:
    pytest.importorskip("seaborn")
    replay = IMPORTS + "import seaborn as sns\n"
    reads = [
        "sns.histplot(data=v, x='a')",
        "sns.scatterplot(data=v, x='a', y='c', hue='b')",
        "g = sns.pairplot(v)\ng.savefig(io.BytesIO(), format='png')",
        "sns.boxplot(data=v, x='b', y='a')",
    ]
    run_both(tmp_path, two_steps(DF, reads, replay=replay))
    # a seaborn grid as the value itself: its figure counts by identity
    grid = "v = sns.FacetGrid(" + DF[4:-1] + ", col='b')\nv.map(plt.hist, 'a')\n"
    reads = ["v.savefig(io.BytesIO())", "display(v.figure)"]
    run_both(tmp_path / "grid", two_steps(grid, reads, replay=replay))


CHANGES = {
    "setitem": (DF, "v['x'] = 1"),
    "append in a function": ("v = ['a', 'b']\n", "def add(items):\n    items.append('c')\nadd(v)"),
    "array element": ("v = np.zeros(5)\n", "w = v\nw[0] = 7"),
    "fit in a helper": (
        "X = np.arange(20.0).reshape(10, 2)\nv = LogisticRegression().fit(X, [0, 1] * 5)\n",
        "def refit(m):\n    m.fit(np.ones((10, 2)), [0] * 5 + [1] * 5)\nrefit(v)",
    ),
}


@pytest.mark.parametrize("kind", list(CHANGES))
def test_an_unseen_in_place_change_fails_the_step(kind: str, tmp_path: Path) -> None:
    make, change = CHANGES[kind]
    first, second = two_steps(make, ["print('reads')", change, "print('after')"])
    store = StateStore(tmp_path, fsync=False)
    run_step(first, store, RUN, guards=GuardSettings())
    with pytest.raises(CellError) as info:
        run_step(second, store, RUN, guards=GuardSettings())
    assert info.value.permanent
    record = info.value.record
    assert (record.ename, record.phase, record.variable, record.cell) == (
        INPUT_CHANGED,
        PHASE,
        "v",
        11,
    )
    assert record.evalue.startswith("step 'use' changed 'v' in place (cell 11), but the analysis")
    assert "Assign the result instead (v = f(v))" in record.evalue
    assert json.loads((store.step_dir(RUN, "use") / "error.json").read_text())["variable"] == "v"
    cells = store.outputs(RUN, "use")["cells"]
    assert [c["index"] for c in cells] == [10, 11]  # the step stopped at the changing cell
    assert cells[1]["outputs"][-1]["ename"] == INPUT_CHANGED
    assert not store.is_complete(RUN, "use")


def test_large_inputs_are_checked_at_the_end_or_not_at_all(tmp_path: Path) -> None:
    make = "v = np.zeros(300_000)\n"  # 2.4 MB stored: above the per-cell limit
    specs = two_steps(make, ["v[0] = 1", "print('later')"])
    store = StateStore(tmp_path / "a", fsync=False)
    run_step(specs[0], store, RUN, guards=GuardSettings())
    with pytest.raises(CellError) as info:
        run_step(specs[1], store, RUN, guards=GuardSettings())
    assert info.value.record.cell is None  # found after the cells, not tied to one
    assert "changed 'v' in place, but" in info.value.record.evalue
    # above J2K_GUARD_MAX_BYTES the value is not fingerprinted: the change goes unchecked
    run_both(tmp_path / "b", specs, GuardSettings(max_bytes=1 << 20))


def test_warn_mode_reports_on_stderr_and_goes_on(tmp_path: Path) -> None:
    make, change = CHANGES["setitem"]
    store = run_both(tmp_path, two_steps(make, [change, "print('after')"]), GuardSettings("warn"))
    cells = store.outputs(RUN, "use")["cells"]
    warning = cells[0]["outputs"][0]
    assert warning["name"] == "stderr"
    assert warning["text"].startswith(
        "[jup2kub] warning: step 'use' changed 'v' in place (cell 10)"
    )
    assert cells[1]["outputs"][0]["text"] == "after\n"  # once, not after every later cell
    run_both(tmp_path / "off", two_steps(make, [change]), GuardSettings("off"))


def test_guard_settings_from_the_environment_contract() -> None:
    assert GuardSettings.from_env({}) == GuardSettings(DEFAULT_GUARD_MODE, DEFAULT_GUARD_MAX_BYTES)
    got = GuardSettings.from_env({"J2K_GUARD_MODE": "Warn", "J2K_GUARD_MAX_BYTES": "1024"})
    assert got == GuardSettings("warn", 1024)
    for var, value in (("J2K_GUARD_MODE", "loud"), ("J2K_GUARD_MAX_BYTES", "-1")):
        with pytest.raises(ConfigError) as info:
            GuardSettings.from_env({var: value})
        assert info.value.variable == var
    cfg = Config.for_step("p", "s", [], [], "k:9092", guard_mode="off", guard_max_bytes=5)
    assert cfg.to_env()["J2K_GUARD_MODE"] == "off"
    assert Config.from_env(cfg.to_env()).guards == GuardSettings("off", 5)


def test_fingerprints_leave_out_caches_but_see_content() -> None:
    pd = pytest.importorskip("pandas")
    idx = pd.date_range("2020", periods=10)
    before = fingerprint(idx)
    assert idx.freq is not None and idx.is_monotonic_increasing  # fill pandas' caches
    assert fingerprint(idx) == before
    assert fingerprint(pd.date_range("2020", periods=11)) != before
    assert fingerprint(object.__new__(type("Local", (), {"__reduce__": _raise}))) is None


def _raise(self: object) -> object:
    raise TypeError("cannot pickle")


@pytest.mark.parametrize("draw", ["np.random.rand", "np.random.default_rng(0)", "random.random"])
def test_a_stored_generator_that_draws_is_named_as_a_draw(draw: str, tmp_path: Path) -> None:
    make = f"import random\nv = {draw}\n"
    call = "v.random()" if "default_rng" in draw else "v()"
    first, second = two_steps(make, ["print('on')", call])
    store = StateStore(tmp_path, fsync=False)
    run_step(first, store, RUN, guards=GuardSettings())
    with pytest.raises(CellError) as info:
        run_step(second, store, RUN, guards=GuardSettings())
    record = info.value.record
    assert (record.ename, record.variable, record.cell) == (RANDOM_DRAWN, "v", 11)
    assert record.evalue.startswith("step 'use' drew from the random generator 'v' holds (cell 11)")
