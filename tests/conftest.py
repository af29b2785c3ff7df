"""Shared fixtures: building small notebooks on disk for the generator tests."""

from __future__ import annotations

import sys
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import Any

import nbformat
import pytest
from nbformat import v4

sys.path.insert(0, str(Path(__file__).resolve().parent / "runtime"))
from kafka_broker import KafkaBroker  # tests/runtime/kafka_broker.py

REPO = Path(__file__).resolve().parents[1]

CellSpec = str | tuple[str, str] | tuple[str, str, Sequence[str]] | dict[str, Any]


def build_notebook(cells: Sequence[CellSpec], language: str = "python") -> nbformat.NotebookNode:
    """A notebook from short specs: "code", ("md", text), ("code", text, [tags])."""
    nb = v4.new_notebook()
    nb.metadata = {"kernelspec": {"name": "k", "display_name": "k", "language": language}}
    for i, spec in enumerate(cells):
        if isinstance(spec, str):
            kind, source, tags = "code", spec, ()
        elif isinstance(spec, dict):
            kind, source, tags = spec.get("kind", "code"), spec["source"], spec.get("tags", ())
        else:
            kind, source = spec[0], spec[1]
            tags = spec[2] if len(spec) > 2 else ()  # type: ignore[misc]
        cell = v4.new_markdown_cell(source) if kind == "md" else v4.new_code_cell(source)
        cell["id"] = f"c{i}"
        if tags:
            cell.metadata["tags"] = list(tags)
        nb.cells.append(cell)
    return nb


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
