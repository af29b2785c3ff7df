"""A tiny run of each benchmark harness, so the benchmarks cannot rot (no timing asserted)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


def test_generation_benchmark_smoke(tmp_path: Path) -> None:
    out = tmp_path / "gen.json"
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "bench.generation",
            "--repeat",
            "1",
            "--sizes",
            "5",
            "12",
            "--json",
            str(out),
        ],
        cwd=REPO,
        capture_output=True,
        text=True,
        check=False,
        timeout=300,
    )
    assert proc.returncode == 0, proc.stderr
    rows = json.loads(out.read_text())["generation_scaling"]
    assert [r["cells"] for r in rows] == [5, 12]
    assert all(r["median_s"] > 0 and r["peak_mib"] > 0 for r in rows)


def test_bench_driver_quick_one_row(tmp_path: Path) -> None:
    """``python -m bench --quick`` on its cheapest row writes results.json, results.md and a
    plot; targets are reported, never asserted."""
    proc = subprocess.run(
        [sys.executable, "-m", "bench", "--only", "scaling", "--quick", "--out", str(tmp_path)],
        cwd=REPO,
        capture_output=True,
        text=True,
        check=False,
        timeout=300,
    )
    assert proc.returncode == 0, proc.stderr
    doc = json.loads((tmp_path / "results.json").read_text())
    assert doc["order"] == ["scaling"] and doc["quick"] is True
    row = doc["rows"]["scaling"]
    assert row["error"] is None
    assert [r["cells"] for r in row["details"]["sizes"]] == [50, 200, 1000]
    assert all(line["met"] in (True, False) for line in row["lines"])
    table = (tmp_path / "results.md").read_text()
    assert "| figure | measured | target | met |" in table and "1000 code cells" in table
    assert (tmp_path / "plots" / "scaling.png").stat().st_size > 1000


# ------------------------------------------------------------- issue 14's rows: pure parts

SMAPS_ROLLUP = """\
55d0c1a2b000-7ffd3c9f1000 ---p 00000000 00:00 0                          [rollup]
Rss:               14732 kB
Pss:               10644 kB
Pss_Dirty:          8024 kB
Pss_Anon:           8024 kB
SwapPss:               0 kB
"""


def test_pss_is_read_from_smaps_rollup_not_its_pss_breakdown() -> None:
    from bench.vs_notebook import parse_pss

    assert parse_pss(SMAPS_ROLLUP) == 10644
    assert parse_pss("Rss: 5 kB\nPss_Anon: 3 kB\n") is None


def test_stat_fields_follow_the_last_parenthesis_of_the_command_name() -> None:
    from bench.vs_notebook import parse_stat

    assert parse_stat("4242 (python) S 4200 4242 4242 0 -1 4194560 ...") == (4200, 4242)
    assert parse_stat("77 (a) b (c)) R 1 70 69 0 -1") == (1, 69)


def test_zombies_are_recognised_by_their_state() -> None:
    from bench.vs_notebook import zombie

    assert zombie("4243 (python (x)) Z 4242 4242 4242 0 -1")
    assert not zombie("4243 (Z) S 4242 4242 4242 0 -1")


def test_processes_that_outlive_their_command_are_found() -> None:
    """A command that leaves a process running in its session (a real one: ``sleep &``) is
    caught; a command that ends with all its processes is clean."""
    import os
    import signal

    from bench.vs_notebook import leftovers

    clean = subprocess.Popen(["sh", "-c", "sleep 0.1"], start_new_session=True)
    clean.wait()
    assert leftovers(clean.pid, grace=0.5) == []
    leaky = subprocess.Popen(
        ["sh", "-c", "sleep 60 >/dev/null 2>&1 & echo $!"],
        start_new_session=True,
        stdout=subprocess.PIPE,
    )
    out, _ = leaky.communicate()
    left_behind = int(out)
    try:
        assert leftovers(leaky.pid, grace=0.1) == [left_behind]
    finally:
        os.kill(left_behind, signal.SIGKILL)


def test_process_tree_has_descendants_and_the_session_but_not_strangers() -> None:
    from bench.vs_notebook import tree

    procs = {
        100: (1, 100),  # the command, leading its session
        101: (100, 100),  # a step process
        102: (101, 100),  # its child
        103: (1, 100),  # re-parented after its parent ended, still in the session
        104: (100, 104),  # a kernel in a session of its own
        105: (104, 104),  # the kernel's child
        200: (1, 200),  # another command
        201: (200, 200),
    }
    assert tree(100, procs) == {100, 101, 102, 103, 104, 105}
    assert tree(200, procs) == {200, 201}
    assert tree(300, procs) == {300}


def test_a_live_process_tree_has_a_pss() -> None:
    """This test process's own tree: a PSS above zero and no larger than its summed RSS."""
    import os

    from bench.vs_notebook import tree_pss_kib

    with open(f"/proc/{os.getpid()}/status") as f:
        rss = next(int(ln.split()[1]) for ln in f if ln.startswith("VmRSS:"))
    assert 0 < tree_pss_kib(os.getpid()) <= rss * 4


def test_ratio_rows_and_their_summary() -> None:
    from bench.vs_notebook import ratio_row, ratio_summary

    a = ratio_row("a.ipynb", [2.0, 4.0, 3.0], [1.5, 3.0, 2.4])
    assert a["ratio"] == 0.8 and a["ratio_range"] == [0.375, 1.5]
    assert a["nbclient"]["median"] == 3.0 and a["jup2kub"]["n"] == 3
    b = ratio_row("b.ipynb", [1.0], [1.4])
    c = ratio_row("c.ipynb", [1.0], [0.5])
    s = ratio_summary([a, b, c])
    assert (s["n"], s["median"], s["max"], s["max_notebook"]) == (3, 0.8, 1.4, "b.ipynb")
    assert s["p25"] == 0.5 and s["p75"] == 1.4


def test_ratio_table_leaves_out_notebooks_with_a_failed_run() -> None:
    from bench.vs_notebook import Sample, table

    ok, bad = Sample(2.0, 0, peak_kib=100), Sample(1.0, 1, stderr="Traceback\nValueError: x\n")
    res = {
        "good.ipynb": {"nbclient": [ok, ok], "jup2kub": [Sample(1.0, 0, peak_kib=150)] * 2},
        "broken.ipynb": {"nbclient": [ok], "jup2kub": [bad]},
    }
    rows, failed = table(res, lambda s: s.seconds)
    assert [r["notebook"] for r in rows] == ["good.ipynb"] and rows[0]["ratio"] == 0.5
    assert failed == {"broken.ipynb": "exit code 1: ValueError: x"}
    rows, _ = table(res, lambda s: s.peak_kib)
    assert rows[0]["ratio"] == 1.5
    leaky = {"leaky.ipynb": {"nbclient": [ok], "jup2kub": [Sample(1.0, 0, leftover=2)]}}
    assert table(leaky, lambda s: s.seconds) == (
        [],
        {"leaky.ipynb": "2 process(es) outlived the command"},
    )


def test_marginal_step_cost_is_the_median_difference_per_added_step() -> None:
    from bench.vs_notebook import marginal

    assert marginal([4.0, 3.0, 5.0], [1.0, 2.0, 1.0], 18) == 3.0 / 18


def test_step_seconds_from_a_summary() -> None:
    from bench.vs_notebook import step_seconds

    doc = {
        "steps": {
            "s0": {"status": "succeeded", "seconds": 0.5, "reused": False},
            "s1": {"status": "succeeded", "seconds": 0.012, "reused": False},
            "s2": {"status": "succeeded", "seconds": 0.02, "reused": True},
            "s3": {"status": "blocked", "seconds": None, "reused": False},
        }
    }
    assert step_seconds(doc, skip=["s0"]) == [0.012]


def test_corpus_selection_skips_refused_notebooks() -> None:
    import yaml

    from bench.vs_notebook import CORPUS, QUICK, corpus_notebooks, failing_notebooks

    expected = yaml.safe_load((CORPUS / "expectations.yaml").read_text())
    chosen = corpus_notebooks()
    assert set(chosen) == {n for n, e in expected.items() if e == "equal" or "fails" in e}
    assert failing_notebooks() == {n for n, e in expected.items() if "fails" in e} != set()
    assert all(p.is_file() for p in chosen.values())
    assert list(corpus_notebooks(quick=True)) == sorted(QUICK)


def test_generated_notebooks_have_no_explicit_steps_or_one_per_cell() -> None:
    import tempfile

    from bench.vs_notebook import chain_notebook, linear_notebook, write
    from jup2kub.api import inspect_notebook

    with tempfile.TemporaryDirectory() as tmp:
        linear = linear_notebook(150)
        assert len(linear.cells) == 150 and all(c.cell_type == "code" for c in linear.cells)
        assert not any("#|" in c.source or c.metadata.get("tags") for c in linear.cells)
        chain = inspect_notebook(write(chain_notebook(6), Path(tmp) / "chain.ipynb"))
        assert [s.name for s in chain.steps] == [f"s{i}" for i in range(6)]
        assert [sorted(s.inputs) for s in chain.steps[1:]] == [[f"v{i}"] for i in range(5)]


def test_pipeline_rows_have_issue_14_targets() -> None:
    from bench.__main__ import PIPELINE_TARGETS, ROWS

    assert PIPELINE_TARGETS == {
        ("sequential", "embedded"): 1.02,
        ("sequential", "kafka"): 1.10,
        ("branches", "embedded"): 0.60,
        ("branches", "kafka"): 0.65,
    }
    assert {"corpus", "linear150", "overhead", "memory"} <= set(ROWS)


def test_ratio_lines_report_median_and_largest_against_targets() -> None:
    from bench.__main__ import ratio_lines
    from bench.vs_notebook import ratio_row

    rows = [ratio_row("a.ipynb", [1.0], [0.8]), ratio_row("b.ipynb", [1.0], [1.4])]
    median, largest = ratio_lines("corpus", rows, 3, 0.9, 1.3)
    assert (
        median.met is False and "1.10" in median.measured and "n=2 notebooks x 3" in median.measured
    )
    assert largest.met is False and "b.ipynb" in largest.measured
    median, largest = ratio_lines("memory", rows, 1, 1.5, 1.5)
    assert median.met is True and largest.met is True


def test_bench_driver_quick_issue_14_rows(tmp_path: Path) -> None:
    """The cheapest of issue 14's rows through the driver: a figure with a target and a plot
    each (what they measure is reported, never asserted)."""
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "bench",
            "--only",
            "linear150",
            "overhead",
            "--quick",
            "--out",
            str(tmp_path),
        ],
        cwd=REPO,
        capture_output=True,
        text=True,
        check=False,
        timeout=600,
    )
    assert proc.returncode == 0, proc.stderr
    doc = json.loads((tmp_path / "results.json").read_text())
    assert doc["order"] == ["linear150", "overhead"]
    linear, overhead = doc["rows"]["linear150"], doc["rows"]["overhead"]
    assert linear["error"] is None and overhead["error"] is None
    assert linear["details"]["failed"] == {} and linear["details"]["steps"] >= 1
    assert [ln["target"] for ln in linear["lines"]] == ["<= 1.20"]
    assert overhead["details"]["step_s"]["n"] == 19 and overhead["lines"][0]["met"] in (True, False)
    assert overhead["details"]["run_wall_2_steps_s"]["n"] == 1
    for png in ("linear150.png", "overhead.png"):
        assert (tmp_path / "plots" / png).stat().st_size > 1000


def test_catalog_benchmark_smoke(tmp_path: Path) -> None:
    from bench import catalog

    res = catalog.run(60, 8, tmp_path)
    assert res["steps"] == 60 and res["queries"] == 8
    assert res["by_kind"]["markdown"]["mean_hits"] >= 1  # each unique word finds its step


def test_step_cache_benchmark_smoke(tmp_path: Path) -> None:
    """Issue 17's benchmark harness: an edit of the last step re-executes only it, a new
    value of the parameter one branch reads only that branch and its downstream."""
    out = tmp_path / "cache.json"
    args = ["--repeat", "1", "--work", "0.01", "--json", str(out)]
    proc = subprocess.run(
        [sys.executable, "-m", "bench.step_cache", *args],
        cwd=REPO,
        capture_output=True,
        text=True,
        check=False,
        timeout=600,
    )
    assert proc.returncode == 0, proc.stderr
    res = json.loads(out.read_text())
    assert res["edit"]["executed"] == [["final"]]
    assert res["parameter"]["executed"] == [["final", "join", "left", "summary"]]
    assert res["parameter"]["met"] is True and res["edit"]["rerun_s"]["n"] == 1


def test_tracing_benchmark_smoke(tmp_path: Path) -> None:
    """Issue 30's row: one round of traced and untraced runs; every traced step's span reached
    the receiver (so the "on" figures are of traced runs), and the in-process span cost."""
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "bench.tracing_overhead",
            "--repeat",
            "1",
            "--steps",
            "3",
            "--out",
            str(tmp_path),
        ],
        cwd=REPO,
        capture_output=True,
        text=True,
        check=False,
        timeout=300,
    )
    assert proc.returncode == 0, proc.stderr
    res = json.loads((tmp_path / "results.json").read_text())
    assert res["step_spans_received"] == res["step_spans_expected"] == 5
    assert set(res["per_step_s"]) == {"off", "on"}
    assert res["span_cost_per_step_us"]["on_us"] > res["span_cost_per_step_us"]["off_us"] > 0


def test_crate_write_benchmark_smoke() -> None:
    """Issue 31's number: what writing a run's RO-Crate, and importing ro-crate-py, cost."""
    proc = subprocess.run(
        [sys.executable, "-m", "bench.crate_write", "--repeat", "1"],
        cwd=REPO,
        capture_output=True,
        text=True,
        check=False,
        timeout=600,
    )
    assert proc.returncode == 0, proc.stderr
    res = json.loads(proc.stdout)
    assert res["write_crate_s"]["n"] == 1 and 0 < res["write_crate_s"]["median"] < 30
    assert res["import_rocrate_s"]["n"] == 3
