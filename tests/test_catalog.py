"""The step catalog on a real SQLite file and a real PostgreSQL server: round trips, search,
concurrent writers (real processes), the CLI's JSON and its errors."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import pytest
import yaml
from sqlalchemy import create_engine, text

from jup2kub import api
from jup2kub.catalog.database import HEAD
from jup2kub.catalog.store import Catalog
from tests.support.cli_runner import CORPUS, jup2kub
from tests.support.postgres import PostgresServer
from tests.test_images import base_image  # noqa: F401 (a fixture)

SECRET = "sk-0123456789abcdefghijklmnop"


@pytest.fixture(params=["sqlite", "postgresql"])
def catalog_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    """An empty catalog database of each kind."""
    if request.param == "sqlite":
        return str(tmp_path / "cat" / "catalog.db")
    server: PostgresServer = request.getfixturevalue("postgres")
    return server.new_database()


def _secret_notebook(make_notebook: Callable[..., Path]) -> Path:
    return make_notebook(
        [
            {"source": f'api_key = "{SECRET}"\nn = 3', "tags": ["parameters"]},
            ("md", "## Load the measurements\nReads the *raw* readings."),
            "#| step: load\nimport json\nimport numpy as np\nreadings = list(range(n))",
            "#| step: total\nfrom collections import Counter\ntotal = sum(readings)\n"
            "auth = len(api_key)",
        ],
        name="sensors.ipynb",
    )


def test_round_trip(catalog_url: str, make_notebook: Callable[..., Path]) -> None:
    nb = _secret_notebook(make_notebook)
    with Catalog(catalog_url) as catalog:
        added = api.catalog_add(catalog, nb)
        assert [r.key for r in added] == ["sensors/load", "sensors/total"]
    with Catalog(catalog_url) as catalog:  # a second open: the schema is current already
        listed = catalog.steps()
        assert [r.to_json() for r in listed] == [r.to_json() for r in added]
        load = catalog.find("load")
        assert load.outputs == {"readings": "unknown"}
        assert load.parameters == {"n": {"default": 3, "secret": False}}
        assert load.imports == ["json", "numpy"]
        assert "Load the measurements" in load.markdown
        assert load.notebook == str(nb.resolve()) and load.cells == [2]
        total = catalog.find("sensors/total")
        assert total.inputs == {"readings": {"from": "load", "type": "unknown"}}
        assert total.parameters["api_key"] == {"default": None, "secret": True}
        removed = catalog.remove("sensors/load")
        assert removed.key == "sensors/load"
        assert [r.key for r in catalog.steps()] == ["sensors/total"]


def test_no_secret_value_is_stored(catalog_url: str, make_notebook: Callable[..., Path]) -> None:
    with Catalog(catalog_url) as catalog:
        api.catalog_add(catalog, _secret_notebook(make_notebook))
    url = catalog_url if "://" in catalog_url else f"sqlite:///{catalog_url}"
    engine = create_engine(url.replace("postgresql://", "postgresql+psycopg://"))
    with engine.connect() as conn:
        rows = conn.execute(text("SELECT * FROM catalog_steps")).all()
        tokens = conn.execute(text("SELECT token FROM catalog_tokens")).scalars().all()
    engine.dispose()
    assert len(rows) == 2
    assert SECRET not in repr(rows) and SECRET.lower() not in tokens
    if "://" not in catalog_url:  # nor anywhere in the file (WAL included)
        for path in Path(catalog_url).parent.iterdir():
            assert SECRET.encode() not in path.read_bytes()


def test_search_by_written_variable_and_imported_package(catalog_url: str) -> None:
    with Catalog(catalog_url) as catalog:
        for notebook in ("digits_kale", "sales_markers", "growth_headings"):
            api.catalog_add(catalog, CORPUS / f"{notebook}.ipynb", workdir=Path("/nonexistent"))
        by_variable = catalog.search("clf")
        assert by_variable[0][0].key == "digits-kale/train"
        assert "writes:clf" in by_variable[0][1]
        assert {r.key for r, _ in by_variable} == {"digits-kale/train", "digits-kale/evaluate"}
        by_package = {r.key for r, m in catalog.search("pandas") if "package:pandas" in m}
        assert "sales-markers/load" in by_package
        assert all(k.startswith("sales-markers/") for k in by_package)
        both = catalog.search("sklearn clf")  # every word must match
        assert {r.key for r, _ in both} == {"digits-kale/train", "digits-kale/evaluate"}
        assert catalog.search("skl")[0][1][0].endswith(":sklearn")  # a word's beginning matches
        assert catalog.search("no-such-thing-anywhere") == []


def _concurrently(commands: list[list[str]], cwd: Path) -> list[subprocess.CompletedProcess[str]]:
    procs = [
        subprocess.Popen(
            [sys.executable, "-m", "jup2kub.cli", *c],
            cwd=cwd,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for c in commands
    ]
    done = []
    for p in procs:
        out, err = p.communicate(timeout=600)
        done.append(subprocess.CompletedProcess(p.args, p.returncode, out, err))
    return done


def test_concurrent_builds_and_adds_lose_nothing(catalog_url: str, tmp_path: Path) -> None:
    """Builds and adds of several pipelines at once, each its own process, one fresh catalog
    (its schema is created by whichever comes first): every step is there afterwards."""
    nb = CORPUS / "sales_markers.ipynb"
    commands = [
        ["build", str(nb), "-o", str(tmp_path / f"chart{i}"), "--no-images",
         "--name", f"sales{i}", "--catalog", catalog_url]
        for i in range(3)
    ] + [
        ["catalog", "add", str(nb), "--name", f"added{i}", "--catalog", catalog_url]
        for i in range(3)
    ]  # fmt: skip
    for proc in _concurrently(commands, tmp_path):
        assert proc.returncode == 0, proc.stderr
    with Catalog(catalog_url) as catalog:
        keys = {r.key for r in catalog.steps()}
        steps = {s.name for s in api.inspect_notebook(nb).steps}
        pipelines = {f"sales{i}" for i in range(3)} | {f"added{i}" for i in range(3)}
        assert keys == {f"{p}/{s}" for p in pipelines for s in steps}
        assert {r.origin for r in catalog.steps("sales0")} == {"build"}


def test_types_observed_by_a_run(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)  # the notebook writes a file where it runs
    workdir = tmp_path / "work"
    result = api.run(CORPUS / "sales_markers.ipynb", workdir=workdir)
    assert result.ok
    with Catalog(str(tmp_path / "c.db")) as catalog:
        api.catalog_add(catalog, CORPUS / "sales_markers.ipynb", workdir=workdir)
        assert catalog.find("clean").outputs == {"sales": "pandas.DataFrame"}
        assert catalog.find("clean").inputs["raw"]["type"] == "pandas.DataFrame"


def test_chart_add_records_the_build(tmp_path: Path) -> None:
    out = tmp_path / "chart"
    built = jup2kub("build", CORPUS / "plain_cells.ipynb", "-o", out, "--no-images", "--no-catalog")
    assert built.returncode == 0, built.stderr
    db = str(tmp_path / "c.db")
    assert not Path(db).exists()
    added = jup2kub("catalog", "add", out, "--catalog", db, "--json")
    assert added.returncode == 0, added.stderr
    records = json.loads(added.stdout)
    assert {r["origin"] for r in records} == {"chart"}
    assert {r["pipeline"] for r in records} == {"plain-cells"}
    shown = jup2kub("catalog", "show", f"plain-cells/{records[0]['step']}", "--catalog", db,
                    "--json")  # fmt: skip
    assert json.loads(shown.stdout)["code_sha256"] == records[0]["code_sha256"]


def test_cli_json_and_text(tmp_path: Path) -> None:
    db = str(tmp_path / "c.db")
    env = {**os.environ, "JUP2KUB_CATALOG": db}
    assert jup2kub("catalog", "add", CORPUS / "digits_kale.ipynb", env=env).returncode == 0
    found = jup2kub("catalog", "search", "clf", "--json", env=env)
    assert [r["step"] for r in json.loads(found.stdout)] == ["train", "evaluate"]
    listed = jup2kub("catalog", "list", "--json", env=env)
    assert len(json.loads(listed.stdout)) == 5
    shown = jup2kub("catalog", "show", "train", env=env)
    assert "writes:      clf: unknown" in shown.stdout
    removed = jup2kub("catalog", "remove", "digits-kale/train", "--json", env=env)
    assert json.loads(removed.stdout) == {"removed": "digits-kale/train"}
    assert len(json.loads(jup2kub("catalog", "list", "--json", env=env).stdout)) == 4


@pytest.mark.parametrize(
    ("url", "message"),
    [
        ("postgresql://nobody@127.0.0.1:1/none", "cannot open the catalog"),
        ("mysql://x@127.0.0.1/db", "unsupported catalog database 'mysql'"),
        ("postgresql://x@127.0.0.1:notaport/db", "not a database URL"),
    ],
)
def test_unusable_catalog_is_a_clear_error(tmp_path: Path, url: str, message: str) -> None:
    for args in (["catalog", "list"], ["build", str(CORPUS / "plain_cells.ipynb"), "-o",
                                       str(tmp_path / "c"), "--no-images"]):  # fmt: skip
        proc = jup2kub(*args, "--catalog", url)
        assert proc.returncode == 2, proc.stderr
        assert message in proc.stderr and "Traceback" not in proc.stderr
    assert not (tmp_path / "c").exists()  # refused before building anything


def test_unknown_and_ambiguous_steps(tmp_path: Path) -> None:
    db = str(tmp_path / "c.db")
    with Catalog(db) as catalog:
        api.catalog_add(catalog, CORPUS / "sales_markers.ipynb")
        api.catalog_add(catalog, CORPUS / "sales_markers.ipynb", name="again")
    proc = jup2kub("catalog", "show", "load", "--catalog", db)
    assert proc.returncode == 2 and "again/load, sales-markers/load" in proc.stderr
    proc = jup2kub("catalog", "remove", "nope", "--catalog", db)
    assert proc.returncode == 2 and "no step 'nope'" in proc.stderr


def test_concurrent_adds_of_one_pipeline_replace_each_other(
    catalog_url: str, tmp_path: Path
) -> None:
    """The same steps recorded by several processes at once: each replaces the last, none
    fails on the unique (pipeline, step) key, one record per step remains."""
    nb = CORPUS / "growth_headings.ipynb"
    commands = [["catalog", "add", str(nb), "--catalog", catalog_url] for _ in range(4)]
    for proc in _concurrently(commands, tmp_path):
        assert proc.returncode == 0, proc.stderr
    with Catalog(catalog_url) as catalog:
        keys = [r.key for r in catalog.steps()]
    assert sorted(keys) == sorted(
        f"growth-headings/{s.name}" for s in api.inspect_notebook(nb).steps
    )


def test_default_location(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("JUP2KUB_CATALOG")
    monkeypatch.setenv("XDG_DATA_HOME", str(tmp_path / "data"))
    with Catalog() as catalog:
        assert catalog.count() == 0
    assert (tmp_path / "data" / "jup2kub" / "catalog.db").is_file()


@pytest.mark.usefixtures("base_image")
def test_a_build_with_images_records_images_and_locks(
    tmp_path: Path, make_notebook: Callable[..., Path]
) -> None:
    """A real image build (Docker): each step's record names its image, the image's digest
    (its id until pushed) and its dependency lock; the chart read back gives the same."""
    nb = make_notebook(
        ["#| step: one\nimport yaml\ndoc = yaml.safe_load('a: 1')", "#| step: two\nprint(doc)"],
        name="imaged.ipynb",
    )
    base = os.environ["J2K_BASE_IMAGE"]
    with Catalog(str(tmp_path / "c.db")) as catalog:
        _, out = api.build(
            nb, tmp_path / "out", image_build=api.ImageBuild(base_image=base), catalog=catalog
        )
        built = {r.step: r for r in catalog.steps("imaged")}
        assert set(built) == {"one", "two"}
        # the image the chart names: the step's own, or one with the same content (another
        # notebook's step that needs the same packages)
        values = yaml.safe_load((out / "values.yaml").read_text())["steps"]
        for step, record in built.items():
            image = values[step]["image"]
            assert record.image == f"{image['repository']}:{image['tag']}"
            assert record.digest.startswith("sha256:")
            assert record.origin == "build"
        assert "pyyaml==" in built["one"].lock.lower()
        catalog.remove("imaged/one")
        catalog.remove("imaged/two")
        again = {r.step: r for r in api.catalog_add(catalog, out)}
        assert {s: (r.image, r.lock) for s, r in again.items()} == {
            s: (r.image, r.lock) for s, r in built.items()
        }


def _alembic(catalog: Catalog, revision: str) -> None:
    """Bring ``catalog``'s schema down to ``revision`` (as an older jup2kub left it)."""
    from alembic import command
    from alembic.config import Config

    from jup2kub.catalog import store

    config = Config()
    config.set_main_option("script_location", str(store._MIGRATIONS))
    with catalog.engine.begin() as conn:
        config.attributes["connection"] = conn
        command.downgrade(config, revision)


def test_an_older_catalog_upgrades_and_keeps_its_steps(catalog_url: str) -> None:
    """A catalog at revision 0001 (before SBOMs) opens: its steps are kept, with no SBOM, and
    a step recorded after the upgrade keeps its SBOM's packages."""
    with Catalog(catalog_url) as catalog:
        api.catalog_add(catalog, CORPUS / "plain_cells.ipynb")
        before = [r.to_json() for r in catalog.steps()]
        _alembic(catalog, "0001")
    with Catalog(catalog_url) as catalog:  # upgraded on open
        with catalog.engine.connect() as conn:
            version = conn.execute(text("SELECT version_num FROM catalog_alembic_version"))
            assert version.scalar() == HEAD
        assert [r.to_json() for r in catalog.steps()] == before
        assert {json.dumps(r.sbom) for r in catalog.steps()} == {"{}"}
        libc = {"name": "libc6", "version": "2.36", "purl": "pkg:deb/debian/libc6@2.36"}
        sbom = {"sha256": "cd" * 32, "attached": "127.0.0.1:5000/x@sha256:" + "ef" * 32,
                "packages": [libc]}  # fmt: skip
        record = catalog.steps()[0]
        record.sbom = sbom
        catalog.add([record])
        assert catalog.find(record.key).sbom == sbom


def test_a_schema_from_a_newer_version_is_a_clear_error(tmp_path: Path) -> None:
    db = tmp_path / "newer.db"
    with Catalog(str(db)):
        pass
    engine = create_engine(f"sqlite:///{db}")
    with engine.begin() as conn:
        conn.execute(text("UPDATE catalog_alembic_version SET version_num = '9999'"))
    engine.dispose()
    proc = jup2kub("catalog", "list", "--catalog", db)
    assert proc.returncode == 2 and "Traceback" not in proc.stderr
    assert "Can't locate revision identified by '9999'" in proc.stderr
    assert "upgrade jup2kub" in proc.stderr


def test_head_revision_is_the_newest_migration() -> None:
    """``lite.HEAD`` (the quick is-the-schema-current check) names the newest migration."""
    from alembic.script import ScriptDirectory

    from jup2kub.catalog import store

    assert ScriptDirectory(str(store._MIGRATIONS)).get_current_head() == store.HEAD


def test_commands_that_need_no_catalog_do_not_load_the_database_layer() -> None:
    """The database libraries load only when a catalog is opened (their import is slow)."""
    probe = (
        "import sys, jup2kub.cli, jup2kub.api; "
        "print(sorted(m for m in ('sqlalchemy', 'alembic') if m in sys.modules))"
    )
    proc = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, check=True)
    assert proc.stdout.strip() == "[]"
