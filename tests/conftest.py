"""Shared fixtures: building small notebooks on disk for the generator tests."""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from pathlib import Path

import nbformat
import pytest

from tests.support.kafka_broker import KafkaBroker
from tests.support.notebooks import CellSpec, build_notebook
from tests.support.postgres import PostgresServer


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
    Jupyter: importing ``jup2kub_runtime.execution.cell_runner`` sets MPLBACKEND=Agg in this
    process for step execution, and a kernel would inherit it. Step processes set it themselves."""
    monkeypatch.delenv("MPLBACKEND", raising=False)


@pytest.fixture(scope="session")
def postgres() -> Iterator[PostgresServer]:
    """A real PostgreSQL server on loopback for the whole session (started on first use)."""
    server = PostgresServer()
    try:
        server.start()
        yield server
    finally:
        server.stop()


@pytest.fixture(scope="session", autouse=True)
def _no_user_catalog(tmp_path_factory: pytest.TempPathFactory) -> Iterator[None]:
    """Module-scoped fixtures build too, before the per-test catalog below is set: they record
    into this session's own catalog, never the user's."""
    import os

    before = os.environ.get("JUP2KUB_CATALOG")
    os.environ["JUP2KUB_CATALOG"] = str(tmp_path_factory.mktemp("catalog") / "catalog.db")
    yield
    if before is None:
        os.environ.pop("JUP2KUB_CATALOG", None)
    else:
        os.environ["JUP2KUB_CATALOG"] = before


@pytest.fixture(autouse=True)
def _private_catalog(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """`jup2kub build` records steps in the catalog: each test gets its own (never the user's)."""
    monkeypatch.setenv("JUP2KUB_CATALOG", str(tmp_path / "catalog.db"))
