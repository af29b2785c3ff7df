"""Shared fixtures: building small notebooks on disk for the generator tests."""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from pathlib import Path

import nbformat
import pytest

from tests.support.kafka_broker import KafkaBroker
from tests.support.notebooks import CellSpec, build_notebook


@pytest.fixture
def make_notebook(tmp_path: Path) -> Callable[..., Path]:
    counter = iter(range(10_000))

    def make(cells: Sequence[CellSpec], name: str | None = None, language: str = "python") -> Path:
        path = tmp_path / (name or f"nb{next(counter)}.ipynb")
        path.write_text(nbformat.writes(build_notebook(cells, language)), encoding="utf-8")
        return path

    return make


@pytest.fixture(scope="module")
def kafka(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """A real single-node KRaft broker on loopback, per test module; yields its bootstrap."""
    broker = KafkaBroker(tmp_path_factory.mktemp("kafka"))
    broker.start()
    try:
        yield broker.bootstrap
    finally:
        broker.stop()


@pytest.fixture(autouse=True)
def _kernel_backend(monkeypatch: pytest.MonkeyPatch) -> None:
    """Kernels started by a test (nbclient's reference runs) use the inline backend, as in
    Jupyter: importing ``jup2kub_runtime.cells`` sets MPLBACKEND=Agg in this process for step
    execution, and a kernel would inherit it. Step processes set it themselves."""
    monkeypatch.delenv("MPLBACKEND", raising=False)
