"""``jup2kub export`` / ``import``: a pushed pipeline moved to another registry through one OCI
image layout tar; digests, referrers (an SBOM) and cosign signatures survive; a damaged bundle
pushes nothing. Real registries (CNCF distribution), real ORAS and cosign, real Docker builds."""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
import tarfile
from collections.abc import Iterator
from pathlib import Path

import pytest
import yaml

from jup2kub.build.sbom import MEDIA_TYPE, SHA256_ANNOTATION
from tests.support import docker_engine
from tests.support.cli_runner import CORPUS, jup2kub
from tests.support.registry import Registry, running_registry, tool

NOTEBOOK = CORPUS / "plain_cells.ipynb"
PASSWORD = "bundle-test-pw"


def _run(*args: str | Path, env: dict[str, str] | None = None) -> str:
    done = subprocess.run(
        list(map(str, args)),
        capture_output=True,
        text=True,
        check=False,
        timeout=300,
        env={**os.environ, **(env or {})},
    )
    assert done.returncode == 0, (args, done.stdout, done.stderr)
    return done.stdout


@pytest.fixture(scope="module")
def source(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Registry]:
    with running_registry(tmp_path_factory.mktemp("source")) as reg:
        yield reg


@pytest.fixture(scope="module")
def pushed(source: Registry, tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """A chart whose images (each with the SBOM referrer `build --push` attaches) and chart are
    pushed to ``source``; its first image signed with a cosign key (as `jup2kub sign` does)."""
    base = tmp_path_factory.mktemp("pushed")
    out = base / "out"
    built = jup2kub(
        "build",
        NOTEBOOK,
        "-o",
        out,
        "--name",
        "bundled",
        "--base-image",
        docker_engine.base_image(),
        "--image-registry",
        f"{source.host}/team",
        "--push",
        timeout=1800,
    )
    assert built.returncode == 0, built.stderr
    done = jup2kub("package", out, "-d", base / "dist", "--oci", f"oci://{source.host}/charts")
    assert done.returncode == 0, done.stderr
    env = {"COSIGN_PASSWORD": PASSWORD}
    _run(tool("J2K_COSIGN"), "generate-key-pair", "--output-key-prefix", base / "k", env=env)
    values = yaml.safe_load((out / "values.yaml").read_text())
    step = sorted(values["steps"])[0]
    image = values["steps"][step]["image"]
    ref = f"{source.host}/team/{image['repository']}@{image['digest']}"
    _run(
        tool("J2K_COSIGN"),
        "sign",
        "--key",
        base / "k.key",
        "--tlog-upload=false",
        "--yes",
        ref,
        env=env,
    )
    return {"out": out, "pub": base / "k.pub", "base": base}


def test_export_then_import_keeps_digests_signatures_and_referrers(
    pushed: dict[str, Path], source: Registry, tmp_path: Path
) -> None:
    out = pushed["out"]
    tar = tmp_path / "bundle.tar"
    done = jup2kub("export", out, tar)
    assert done.returncode == 0, done.stderr
    assert "1 signature(s)" in done.stdout
    with tarfile.open(tar) as t:
        names = t.getnames()
    assert "oci-layout" in names and "index.json" in names
    values = yaml.safe_load((out / "values.yaml").read_text())
    with running_registry(tmp_path / "mirror") as mirror:
        imported = jup2kub(
            "import", tar, "--registry", f"{mirror.host}/airgap", "-o", tmp_path / "chart"
        )
        assert imported.returncode == 0, imported.stderr
        # every step image, by the same digest, under the new registry and namespace
        for spec in values["steps"].values():
            image = spec["image"]
            repo = f"airgap/{image['repository']}"
            assert mirror.manifest_digest(repo, image["tag"]) == image["digest"]
            assert mirror.manifest_digest(repo, image["digest"]) == image["digest"]
        # the chart, by the digest it had, and rewritten to the new registry in the directory
        record = json.loads((out / ".jup2kub-published.json").read_text())
        version = record["chart"].split("@")[0].rsplit(":", 1)[1]
        digest = record["chart"].rpartition("@")[2]
        assert mirror.manifest_digest("airgap/charts/bundled", version) == digest
        rewritten = yaml.safe_load((tmp_path / "chart" / "values.yaml").read_text())
        assert rewritten["image"]["registry"] == f"{mirror.host}/airgap"
        assert rewritten["steps"] == values["steps"]
        assert "# " in (tmp_path / "chart" / "values.yaml").read_text()  # comments kept
        # the signature verifies in the new registry, the SBOM is still a referrer there
        step = sorted(values["steps"])[0]
        image = values["steps"][step]["image"]
        moved = f"{mirror.host}/airgap/{image['repository']}@{image['digest']}"
        _run(
            tool("J2K_COSIGN"),
            "verify",
            "--key",
            pushed["pub"],
            "--insecure-ignore-tlog=true",
            moved,
        )
        found = json.loads(
            _run(
                tool("J2K_ORAS"),
                "discover",
                "--plain-http",
                "--format",
                "json",
                "--artifact-type",
                MEDIA_TYPE,
                moved,
            )
        )
        # the step's own SBOM (steps whose image was pushed under several repositories bring
        # each repository's SBOM: export gathers the referrers by the image's digest)
        own = hashlib.sha256((out / "sbom" / f"{step}.cdx.json").read_bytes()).hexdigest()
        attached = [(r.get("annotations") or {}).get(SHA256_ANNOTATION) for r in found["referrers"]]
        assert own in attached, found


def test_a_damaged_bundle_pushes_nothing(pushed: dict[str, Path], tmp_path: Path) -> None:
    tar = tmp_path / "bundle.tar"
    assert jup2kub("export", pushed["out"], tar).returncode == 0
    layout = tmp_path / "layout"
    with tarfile.open(tar) as t:
        t.extractall(layout, filter="data")
    blobs = sorted((layout / "blobs" / "sha256").iterdir(), key=lambda p: p.stat().st_size)
    victim = blobs[-1]
    data = bytearray(victim.read_bytes())
    data[len(data) // 2] ^= 0xFF  # same size, other content
    victim.write_bytes(bytes(data))
    damaged = tmp_path / "damaged.tar"
    with tarfile.open(damaged, "w") as t:
        for path in sorted(layout.rglob("*")):
            if path.is_file():
                t.add(path, arcname=str(path.relative_to(layout)))
    with running_registry(tmp_path / "mirror") as mirror:
        refused = jup2kub("import", damaged, "--registry", mirror.host, "-o", tmp_path / "c")
        assert refused.returncode == 2, refused.stderr
        assert "digest mismatch" in refused.stderr and victim.name in refused.stderr
        assert "Traceback" not in refused.stderr
        assert mirror.repositories() == []
        assert not (tmp_path / "c").exists()


def test_bad_input(pushed: dict[str, Path], tmp_path: Path) -> None:
    existing = tmp_path / "there.tar"
    existing.write_text("mine")
    again = jup2kub("export", pushed["out"], existing)
    assert again.returncode == 2 and "already exists" in again.stderr
    assert existing.read_text() == "mine"
    unbuilt = tmp_path / "unpushed"
    assert jup2kub("build", NOTEBOOK, "-o", unbuilt, "--no-images").returncode == 0
    refused = jup2kub("export", unbuilt, tmp_path / "b.tar")
    assert refused.returncode == 2 and "not pushed" in refused.stderr
    assert not (tmp_path / "b.tar").exists()
    tar = tmp_path / "ok.tar"
    assert jup2kub("export", pushed["out"], tar).returncode == 0
    from tests.support.prometheus_server import free_port

    down = jup2kub("import", tar, "--registry", f"127.0.0.1:{free_port()}/x", "-o", tmp_path / "d")
    assert down.returncode == 2 and "unreachable" in down.stderr, down.stderr
    assert "Traceback" not in down.stderr and not (tmp_path / "d").exists()
    notabundle = tmp_path / "x.tar"
    notabundle.write_text("not a tar")
    bad = jup2kub("import", notabundle, "--registry", "127.0.0.1:5000", "-o", tmp_path / "o")
    assert bad.returncode == 2 and "not a bundle" in bad.stderr
