"""Relative file paths in step code: shared by the steps of one run, never by two runs."""

from __future__ import annotations

from pathlib import Path

from jup2kub_runtime.contract.spec import Cell, StepSpec
from tests.support.kafka_broker import KafkaBroker
from tests.support.runtime_harness import Pipeline, unique


def test_concurrent_runs_keep_their_files_apart(broker: KafkaBroker, tmp_path: Path) -> None:
    name = unique("files")
    write = StepSpec(
        pipeline=name,
        step="write",
        parameters_source="label = 'none'\n",
        cells=[
            Cell(
                1,
                "import time\nopen('shared.txt', 'w').write(label)\ntime.sleep(1)\nwritten = label",
            )
        ],
        outputs=["written"],
        downstream=["read"],
    )
    read = StepSpec(
        pipeline=name,
        step="read",
        cells=[Cell(2, "seen = open('shared.txt').read()\nsame = seen == written")],
        inputs={"written": "write"},
        outputs=["seen", "same"],
        upstream=["write"],
    )
    p = Pipeline(tmp_path, broker.bootstrap, [write, read]).start(replicas={"write": 2})
    try:
        p.wait_ready()
        runs = [f"r{i}" for i in range(6)]
        for run in runs:
            p.submit(run, label=f"from-{run}")
        p.wait_complete(runs, timeout=180)
        for run in runs:
            assert p.store.load_value(run, "read", "seen") == f"from-{run}"
            assert (p.state / "runs" / run / "files" / "shared.txt").read_text() == f"from-{run}"
        assert not (p.state / "shared.txt").exists()
    finally:
        p.stop()


def test_a_module_a_run_writes_is_imported_from_that_run_s_files(
    broker: KafkaBroker, tmp_path: Path
) -> None:
    """A module the notebook writes lies in the run's own files: the importing step finds it
    there (as a kernel's ``""`` on sys.path does) and, serving the next run in the same
    process, imports that run's version, not the one it imported before (issue 28)."""
    name = unique("modules")
    write = StepSpec(
        pipeline=name,
        step="write",
        parameters_source="label = 'none'\n",
        cells=[Cell(1, "open('labelmod.py', 'w').write(f'LABEL = {label!r}\\n')")],
        downstream=["read"],
    )
    read = StepSpec(
        pipeline=name,
        step="read",
        cells=[Cell(2, "import labelmod\nseen = labelmod.LABEL")],
        outputs=["seen"],
        upstream=["write"],
    )
    p = Pipeline(tmp_path, broker.bootstrap, [write, read]).start()
    try:
        p.wait_ready()
        runs = [f"m{i}" for i in range(3)]
        for run in runs:
            p.submit(run, label=f"from-{run}")
            p.wait_complete([run], timeout=120)
        assert [p.store.load_value(run, "read", "seen") for run in runs] == [
            f"from-{run}" for run in runs
        ]
    finally:
        p.stop()
