"""Each step image's CycloneDX SBOM (issue 31), from a real build on the test engine: valid
against the CycloneDX JSON schema (offline, the library's bundled schemas), listing exactly the
lock's wheels and the base image's Debian packages as dpkg reports them, nothing of the build's
environment, and recorded in the catalog (``catalog show``)."""

from __future__ import annotations

import json
import os
import re
import socket
import subprocess
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import docker
import pytest
import yaml
from cyclonedx.validation.json import JsonStrictValidator
from packageurl import PackageURL

from jup2kub.build import sbom
from jup2kub.version import __version__
from tests.support.cli_runner import jup2kub
from tests.support.registry import Registry, running_registry, tool
from tests.test_images import base_image  # noqa: F401 (a fixture)

CANARY = "j2k-sbom-canary-7f3c2e19d4-never-in-sboms"
#: the notebook of tests/test_catalog.py's image build: its images are reused, not rebuilt
CELLS = ["#| step: one\nimport yaml\ndoc = yaml.safe_load('a: 1')", "#| step: two\nprint(doc)"]
_LOCK_ENTRY = re.compile(r"^(\S+)==(\S+) \\\n\s+--hash=sha256:([0-9a-f]{64})", re.M)


def validate(data: bytes) -> None:
    """Strict CycloneDX schema validation, with every network connection refused: the
    validator must work from the library's bundled schemas alone."""

    def refuse(*_args: Any) -> None:
        raise AssertionError("the SBOM validator tried to reach the network")

    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(socket.socket, "connect", refuse)
        error = JsonStrictValidator(sbom.SCHEMA_VERSION).validate_str(data.decode())
    assert error is None, error


def lock_entries(text: str) -> dict[str, tuple[str, str]]:
    """name -> (version, wheel sha256) of a requirements.lock (its pip syntax, read here
    independently of the build's own data structures)."""
    return {n: (v, h) for n, v, h in _LOCK_ENTRY.findall(text)}


def components(doc: dict[str, Any], purl_type: str) -> dict[str, dict[str, Any]]:
    return {
        c["name"]: c for c in doc["components"] if c.get("purl", "").startswith(f"pkg:{purl_type}/")
    }


def dpkg_version(base: str, package: str) -> str:
    out = docker.from_env().containers.run(
        base,
        ["dpkg-query", "-W", package],  # "NAME[:ARCH]<TAB>VERSION"
        entrypoint=[],
        remove=True,
        network_mode="none",
    )
    return bytes(out).decode().strip().split("\t")[1]


@pytest.fixture
def secret_env() -> Iterator[dict[str, str]]:
    """The build's environment, with a secret-looking variable that no output may contain."""
    yield {**os.environ, "J2K_TEST_API_TOKEN": CANARY, "AWS_SECRET_ACCESS_KEY": CANARY}


def test_parse_dpkg_status_keeps_installed_packages_only() -> None:
    status = (
        "Package: libc6\nStatus: install ok installed\nPriority: optional\n"
        "Architecture: amd64\nMulti-Arch: same\nVersion: 2.36-9+deb12u14\n"
        "Description: GNU C Library\n continued: not a field\n\n"
        "Package: gone\nStatus: deinstall ok config-files\nArchitecture: amd64\nVersion: 1.0\n\n"
        "Package: half\nStatus: install reinstreq half-installed\nArchitecture: all\n"
        "Version: 2\n\n"
        "Package: base-files\nStatus: install ok installed\nArchitecture: amd64\n"
        "Version: 12.4+deb12u15\n"
    )
    assert sbom.parse_dpkg_status(status) == [
        sbom.DebPackage("base-files", "12.4+deb12u15", "amd64"),
        sbom.DebPackage("libc6", "2.36-9+deb12u14", "amd64"),
    ]


def test_an_invalid_sbom_fails_validation() -> None:
    """The validator used below does reject what breaks the schema (so its passes count)."""
    bom = sbom.image_bom("r/x", "t", None, {"PyYAML": ("6.0.2", "ab" * 32)}, sbom.OsPackages())
    doc = json.loads(sbom.to_json(bom))
    validate(json.dumps(doc).encode())
    doc["components"][0]["hashes"][0]["content"] = "not-hex"
    errors = JsonStrictValidator(sbom.SCHEMA_VERSION).validate_str(json.dumps(doc))
    assert errors is not None


def test_build_writes_a_valid_sbom_per_step_and_the_catalog_lists_it(
    base_image: str,  # noqa: F811
    tmp_path: Path,
    make_notebook: Callable[..., Path],
    secret_env: dict[str, str],
) -> None:
    nb = make_notebook(CELLS, name="sbommed.ipynb")
    out, db = tmp_path / "out", str(tmp_path / "c.db")
    built = jup2kub("build", nb, "-o", out, "--base-image", base_image, "--catalog", db,
                    env=secret_env, timeout=1200)  # fmt: skip
    assert built.returncode == 0, built.stderr
    values = yaml.safe_load((out / "values.yaml").read_text())["steps"]
    files = {s: (out / "sbom" / f"{s}.cdx.json").read_bytes() for s in ("one", "two")}
    assert files["one"] == files["two"]  # one image (same packages): one SBOM
    for step, data in files.items():
        validate(data)
        assert CANARY.encode() not in data
        doc = json.loads(data)
        assert doc["specVersion"] == "1.6"
        image = doc["metadata"]["component"]
        assert (image["type"], image["name"], image["version"]) == (
            "container",
            values[step]["image"]["repository"],
            values[step]["image"]["tag"],
        )
        assert {"name": "jup2kub", "type": "application", "version": __version__} in doc[
            "metadata"
        ]["tools"]["components"]
        lock = lock_entries((out / "images" / step / "requirements.lock").read_text())
        python = components(doc, "pypi")
        assert {n: (c["version"], c["hashes"][0]["content"]) for n, c in python.items()} == lock
        assert "PyYAML" in python or "pyyaml" in python
        debs = components(doc, "deb")
        for package in ("base-files", "libc6"):
            version = dpkg_version(base_image, package)
            assert debs[package]["version"] == version
            purl = PackageURL.from_string(debs[package]["purl"])  # "+" is percent-encoded
            assert (purl.namespace, purl.name, purl.version, purl.qualifiers) == (
                "debian",
                package,
                version,
                {"arch": "amd64", "distro": "debian-12"},
            )
    assert sbom.SBOM_DIR + "/" in (out / ".helmignore").read_text().split()

    shown = jup2kub("catalog", "show", "sbommed/one", "--catalog", db, "--json")
    assert shown.returncode == 0, shown.stderr
    recorded = json.loads(shown.stdout)["sbom"]
    doc = json.loads(files["one"])
    assert recorded["packages"] == [
        {"name": c["name"], "version": c["version"], "purl": c["purl"]} for c in doc["components"]
    ]
    assert recorded["attached"] == ""  # not pushed
    text = jup2kub("catalog", "show", "sbommed/one", "--catalog", db).stdout
    assert f"{len(doc['components'])} packages, CycloneDX sha256:" in text
    assert f"base-files {dpkg_version(base_image, 'base-files')}  pkg:deb/debian/" in text
    # the chart read back (`catalog add OUT`) records the same
    added = jup2kub("catalog", "add", out, "--catalog", db, "--json")
    assert added.returncode == 0, added.stderr
    assert {r["step"]: r["sbom"] for r in json.loads(added.stdout)}["one"] == recorded


def test_the_cached_os_packages_are_what_the_image_holds(
    base_image: str,  # noqa: F811
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """The build caches a base image's package list by image id: a fresh read and a cached one
    give what a direct read of the image does."""
    client = docker.from_env()
    image_id = str(client.images.get(base_image).id)
    direct = sbom.os_packages(client, image_id)
    assert (direct.distro, direct.distro_version) == ("debian", "12")
    monkeypatch.setenv("JUP2KUB_CACHE", str(tmp_path / "cache"))
    assert sbom.cached_os_packages(client, image_id) == direct  # read, then written
    assert list((tmp_path / "cache" / "os-packages").glob("*.json"))
    assert sbom.cached_os_packages(client, image_id) == direct  # from the cache


def referrers(reg: Registry, repository: str, digest: str) -> list[dict[str, Any]]:
    """The referrers of ``repository@digest`` as the registry stores them. The distribution
    registry (v3.1) serves no referrers API, so ORAS keeps them as OCI 1.1 prescribes for such
    registries: an index tagged ``sha256-<hex>`` (the referrers tag schema)."""
    index = reg.manifest(repository, digest.replace(":", "-"))
    assert index["mediaType"] == "application/vnd.oci.image.index.v1+json"
    return list(index["manifests"])


def test_push_attaches_each_images_sbom_once_as_a_referrer(
    base_image: str,  # noqa: F811
    tmp_path: Path,
    make_notebook: Callable[..., Path],
) -> None:
    """A pushed image gets its SBOM as an OCI 1.1 referrer: listed by the registry and by
    ``oras discover`` with the CycloneDX artifactType, pulled back byte for byte; the two steps
    sharing one image give one referrer, and a second push of the same image adds none."""
    oras = tool("J2K_ORAS")
    nb = make_notebook(CELLS, name="pushed.ipynb")
    out, db = tmp_path / "out", str(tmp_path / "c.db")
    with running_registry(tmp_path / "registry") as reg:
        build = ["build", nb, "-o", out, "--base-image", base_image, "--catalog", db,
                 "--image-registry", reg.host, "--push"]  # fmt: skip
        for attempt in range(2):
            built = jup2kub(*build, env={**os.environ, "J2K_ORAS": oras}, timeout=1200)
            assert built.returncode == 0, built.stderr
            image = yaml.safe_load((out / "values.yaml").read_text())["steps"]["one"]["image"]
            found = referrers(reg, image["repository"], image["digest"])
            assert len(found) == 1, (attempt, found)
            assert found[0]["artifactType"] == sbom.MEDIA_TYPE
            said = "SBOM already attached as" if attempt else "SBOM attached as"
            assert f"step one, two: {said} " in built.stdout
        data = (out / "sbom" / "one.cdx.json").read_bytes()
        assert data == (out / "sbom" / "two.cdx.json").read_bytes()
        validate(data)
        purl = PackageURL.from_string(json.loads(data)["metadata"]["component"]["purl"])
        assert (purl.type, purl.version) == ("oci", image["digest"])
        assert purl.qualifiers["repository_url"] == f"{reg.host}/{image['repository']}"
        subject = f"{reg.host}/{image['repository']}@{image['digest']}"
        referrer = f"{reg.host}/{image['repository']}@{found[0]['digest']}"
        discovered = subprocess.run(
            [oras, "discover", "--plain-http", "--format", "json", subject],
            capture_output=True, text=True, check=True,
        ).stdout  # fmt: skip
        assert [(r["artifactType"], r["digest"]) for r in json.loads(discovered)["referrers"]] == [
            (sbom.MEDIA_TYPE, found[0]["digest"])
        ]
        pulled = tmp_path / "pulled"
        subprocess.run([oras, "pull", "--plain-http", "-o", str(pulled), referrer],
                       capture_output=True, check=True)  # fmt: skip
        assert (pulled / "sbom.cdx.json").read_bytes() == data
    images_json = json.loads((out / "images" / "images.json").read_text())
    assert images_json["steps"]["one"]["sbom"] == referrer
    shown = json.loads(jup2kub("catalog", "show", "pushed/two", "--catalog", db, "--json").stdout)
    assert shown["sbom"]["attached"] == referrer
    assert (
        f"attached as {referrer}"
        in jup2kub("catalog", "show", "pushed/two", "--catalog", db).stdout
    )
    added = jup2kub("catalog", "add", out, "--catalog", str(tmp_path / "again.db"), "--json")
    assert {r["sbom"]["attached"] for r in json.loads(added.stdout)} == {referrer}


def test_a_push_without_oras_is_refused_before_anything_is_built(
    tmp_path: Path, make_notebook: Callable[..., Path]
) -> None:
    nb = make_notebook(CELLS, name="unpushed.ipynb")
    env = {**os.environ, "J2K_ORAS": str(tmp_path / "no-oras")}
    proc = jup2kub("build", nb, "-o", tmp_path / "out", "--image-registry", "127.0.0.1:1",
                   "--push", "--no-catalog", env=env)  # fmt: skip
    assert proc.returncode == 2, proc.stderr
    assert "J2K_ORAS points at" in proc.stderr and "Traceback" not in proc.stderr
    assert "building" not in proc.stdout and not (tmp_path / "out").exists()
