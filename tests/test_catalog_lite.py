"""``build``'s SQLAlchemy-free catalog path (``jup2kub.catalog.lite``): what it writes reads
back through ``store.Catalog`` exactly as ``Catalog.add`` wrote it (round trip, search,
replacement, image lookup), and anything it cannot handle falls back to ``store.Catalog``."""

from __future__ import annotations

import dataclasses
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

from jup2kub import api
from jup2kub.catalog.lite import LiteCatalog
from jup2kub.catalog.records import StepRecord, step_records
from jup2kub.catalog.store import Catalog
from jup2kub.model.notebook import load_notebook
from tests.support.cli_runner import CORPUS, jup2kub


def _records(name: str) -> list[StepRecord]:
    nb_path = CORPUS / "sales_markers.ipynb"
    pipeline = api.inspect_notebook(nb_path, name=name)
    return step_records(load_notebook(nb_path), pipeline, origin="build")


def test_lite_writes_what_the_full_catalog_reads(tmp_path: Path) -> None:
    db = str(tmp_path / "catalog.db")
    with Catalog(db) as full:  # creates the schema
        full.add(_records("by-full"))
    lite = LiteCatalog.open(db)
    assert lite is not None and lite.shown == full.shown
    sbom = {"sha256": "ab" * 32, "attached": "", "packages": [
        {"name": "pandas", "version": "2.2.3", "purl": "pkg:pypi/pandas@2.2.3"}]}  # fmt: skip
    tagged = [dataclasses.replace(r, image=f"sales-{r.step}:abc123", digest="sha256:1", sbom=sbom)
              for r in _records("by-lite")]  # fmt: skip
    with lite:
        assert lite.add(tagged) == len(tagged)
        assert lite.add(tagged[:1]) == 1  # replaces its earlier record
        assert lite.images_with_tag("abc123") == lite.full().images_with_tag("abc123")
        assert {key for _, _, key in lite.images_with_tag("abc123")} == {
            f"by-lite/{r.step}" for r in tagged
        }
        assert lite.images_with_tag("nope") == []
    with Catalog(db) as full:
        read = full.steps("by-lite")
        assert [r.to_json() for r in read] == [
            r.to_json() for r in [*tagged[1:], tagged[0]]
        ]  # the replaced record was written last
        assert read[0].sbom == sbom
        hits = [r.key for r, _ in full.search("sales")]
        assert "by-lite/clean" in hits and "by-full/clean" in hits
        full.remove("by-lite/clean")  # its search tokens go with it (foreign key cascade)
        assert "by-lite/clean" not in [r.key for r, _ in full.search("sales")]


def test_lite_declines_what_it_does_not_handle(tmp_path: Path) -> None:
    assert LiteCatalog.open(str(tmp_path / "missing.db")) is None  # created (and migrated) by
    assert LiteCatalog.open("postgresql://user@127.0.0.1:1/db") is None  # store.Catalog
    (tmp_path / "empty.db").write_bytes(b"")
    assert LiteCatalog.open(str(tmp_path / "empty.db")) is None
    opened = api.open_build_catalog(str(tmp_path / "new.db"))
    with opened:
        assert isinstance(opened, Catalog)  # a new catalog: its schema is created first
    with api.open_build_catalog(str(tmp_path / "new.db")) as again:
        assert isinstance(again, LiteCatalog)


def test_build_records_without_loading_the_database_layer(
    tmp_path: Path, make_notebook: Callable[..., Path]
) -> None:
    """``jup2kub build`` into a current SQLite catalog never imports SQLAlchemy."""
    db = tmp_path / "catalog.db"
    Catalog(str(db)).close()
    nb = make_notebook(["x = 1", "y = x + 1"], name="tiny.ipynb")
    probe = (
        "import sys, runpy\n"
        "sys.argv = ['jup2kub', 'build', sys.argv[1], '-o', sys.argv[2], '--no-images', "
        "'--catalog', sys.argv[3]]\n"
        "from jup2kub.cli import main\n"
        "try:\n    main()\nexcept SystemExit:\n    pass\n"
        "print(sorted(m for m in ('sqlalchemy', 'alembic') if m in sys.modules))\n"
    )
    proc = subprocess.run(
        [sys.executable, "-c", probe, str(nb), str(tmp_path / "out"), str(db)],
        capture_output=True,
        text=True,
        check=True,
    )
    assert proc.stdout.strip().splitlines()[-1] == "[]", proc.stdout + proc.stderr
    listed = jup2kub("catalog", "list", "--catalog", db)
    assert listed.returncode == 0 and "tiny/" in listed.stdout
