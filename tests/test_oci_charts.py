"""Charts in an OCI registry: ``jup2kub package --oci`` pushes what ``helm pull oci://`` then
fetches, by the digest the registry gave it; bad registries are refused clearly (exit 2).
Against the real CNCF distribution registry, the real helm."""

from __future__ import annotations

import json
import os
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest
import yaml

from jup2kub.errors import UsageError
from jup2kub.oci.charts import pull_chart
from jup2kub.oci.published import RECORD, file_sha256
from jup2kub.oci.references import Reference
from tests.support.cli_runner import CORPUS, jup2kub
from tests.support.registry import Registry, running_registry

NOTEBOOK = CORPUS / "plain_cells.ipynb"


@pytest.fixture(scope="module")
def registry(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Registry]:
    with running_registry(tmp_path_factory.mktemp("registry")) as reg:
        yield reg


@pytest.fixture(scope="module")
def chart(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("chart") / "out"
    done = jup2kub("build", NOTEBOOK, "-o", out, "--no-images", "--name", "ocidemo")
    assert done.returncode == 0, done.stderr
    return out


def _helm(*args: str | Path, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [os.environ.get("J2K_HELM", "helm"), *map(str, args)],
        capture_output=True,
        text=True,
        check=False,
        env=env,
        timeout=120,
    )


def test_package_pushes_the_chart_that_helm_pulls(
    registry: Registry, chart: Path, tmp_path: Path
) -> None:
    done = jup2kub(
        "package", chart, "-d", tmp_path / "dist", "--oci", f"oci://{registry.host}/charts"
    )
    assert done.returncode == 0, done.stderr
    version = yaml.safe_load((chart / "Chart.yaml").read_text())["version"]
    record = json.loads((chart / RECORD).read_text())
    pushed = f"{registry.host}/charts/ocidemo:{version}@"
    assert record["chart"].startswith(pushed), record
    digest = record["chart"].rpartition("@")[2]
    # the digest recorded is the registry's own for that version's tag
    assert registry.manifest_digest("charts/ocidemo", version) == digest
    assert f"pushed oci://{pushed}{digest}" in done.stdout
    tgz = tmp_path / "dist" / f"ocidemo-{version}.tgz"
    assert record["sha256"] == file_sha256(tgz)
    # helm itself pulls it, and it is the very tarball packaged
    (tmp_path / "pulled").mkdir()
    pulled = _helm(
        "pull",
        f"oci://{registry.host}/charts/ocidemo",
        "--version",
        version,
        "--plain-http",
        "-d",
        tmp_path / "pulled",
    )
    assert pulled.returncode == 0, pulled.stderr
    assert file_sha256(tmp_path / "pulled" / tgz.name) == file_sha256(tgz)
    # the record is not part of the chart package
    listing = subprocess.run(["tar", "tzf", tgz], capture_output=True, text=True, check=True)
    assert RECORD not in listing.stdout
    # pulling by the library: the same digest, and a digest pin that does not match is refused
    got, ref = pull_chart(Reference(registry.host, "charts/ocidemo"), version, tmp_path / "lib")
    assert ref.digest == digest and ref.tag == version
    assert file_sha256(got) == file_sha256(tgz)
    wrong = Reference(registry.host, "charts/ocidemo", version, "sha256:" + "0" * 64)
    with pytest.raises(UsageError, match="not the sha256:0000"):
        pull_chart(wrong, None, tmp_path / "pinned")


def test_a_registry_that_asks_for_credentials(chart: Path, tmp_path: Path) -> None:
    with running_registry(tmp_path / "auth", user="alice") as reg:
        url = f"oci://{reg.host}/charts"
        refused = jup2kub("package", chart, "-d", tmp_path / "d1", "--oci", url)
        assert refused.returncode == 2, refused.stderr
        assert "asks for credentials" in refused.stderr
        assert f"docker login {reg.host}" in refused.stderr
        assert "Traceback" not in refused.stderr
        # logged in the Docker way (what oras, cosign and helm read), the push goes through
        config = tmp_path / "docker-config"
        config.mkdir()
        import base64

        auth = base64.b64encode(f"{reg.user}:{reg.password}".encode()).decode()
        (config / "config.json").write_text(json.dumps({"auths": {reg.host: {"auth": auth}}}))
        env = {**os.environ, "DOCKER_CONFIG": str(config)}
        done = jup2kub("package", chart, "-d", tmp_path / "d2", "--oci", url, env=env)
        assert done.returncode == 0, done.stderr
        assert reg.tags("charts/ocidemo")


def test_an_unreachable_registry_and_a_bad_url(chart: Path, tmp_path: Path) -> None:
    from tests.support.prometheus_server import free_port

    down = jup2kub(
        "package", chart, "-d", tmp_path, "--oci", f"oci://127.0.0.1:{free_port()}/charts"
    )
    assert down.returncode == 2, down.stderr
    assert "unreachable" in down.stderr and "Traceback" not in down.stderr
    bad = jup2kub("package", chart, "-d", tmp_path, "--oci", "https://example.org/charts")
    assert bad.returncode == 2 and "not an oci:// URL" in bad.stderr
    upper = jup2kub("package", chart, "-d", tmp_path, "--oci", "oci://127.0.0.1:5000/Charts")
    assert upper.returncode == 2 and "not a repository" in upper.stderr


def test_a_rebuilt_chart_is_not_taken_for_the_published_one(chart: Path, tmp_path: Path) -> None:
    from jup2kub.oci import published

    out = tmp_path / "out"
    import shutil

    shutil.copytree(chart, out)
    assert jup2kub("package", out, "-d", tmp_path / "dist").returncode == 0
    assert published.load(out) is not None
    values = out / "values.yaml"
    values.write_text(values.read_text().replace("registry: ", "registry: x.example.org", 1))
    with pytest.raises(UsageError, match=r"rebuilt since it was packaged .*values\.yaml"):
        published.load(out)
