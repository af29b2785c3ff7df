"""Sharing a built pipeline through OCI registries, as the api offers it: package (and push)
the chart, deploy a chart from a registry, export and import a pipeline as one tar; make keys,
sign and verify the chart and its images. The api
re-exports these; they live here to keep each module readable at once."""

from __future__ import annotations

import functools
import tempfile
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from jup2kub.chart.package import package_chart
from jup2kub.cluster.kube import KubeTarget
from jup2kub.oci import bundle, keys, published, signing, transfer
from jup2kub.oci import charts as oci_charts
from jup2kub.oci.references import Reference, parse_oci_url

if TYPE_CHECKING:
    from jup2kub.cluster.deploy import DeployResult


@dataclass(frozen=True)
class Packaged:
    """A packaged chart: the tarball (indexed beside it) and, when pushed, its reference in the
    registry with the digest the registry gave it."""

    tarball: Path
    chart: Reference | None


def package(
    chart_dir: Path,
    destination: Path | None = None,
    repo_index_url: str | None = None,
    *,
    oci: str | None = None,
) -> Packaged:
    """Package the chart in OUT (a .tgz and a chart repository's index.yaml); with ``oci``
    (``oci://HOST/PATH``), push it there too. The record in OUT says what was published."""
    where = parse_oci_url(oci) if oci else None  # a bad URL is refused before packaging
    tgz = package_chart(chart_dir, destination, repo_index_url)
    chart = oci_charts.push_chart(tgz, where) if where else None
    published.record(chart_dir, tgz, chart)
    return Packaged(tgz, chart)


def deploy_from_registry(
    chart: str,
    release: str,
    values_files: Sequence[Path] = (),
    target: KubeTarget = KubeTarget(),
    *,
    version: str | None = None,
    verify: Callable[[Path, Reference], None] | None = None,
    **options: Any,
) -> DeployResult:
    """Pull ``oci://HOST/PATH/NAME`` (``version``, else the newest), let ``verify`` check the
    pulled tarball and its digest, then install exactly those bytes (never a second pull)."""
    from jup2kub.cluster.deploy import deploy as deploy_chart  # asyncio, pyhelm3: deploy only

    ref = parse_oci_url(chart, what="chart reference")
    with tempfile.TemporaryDirectory(prefix="jup2kub-chart-") as scratch:
        tgz, pulled = oci_charts.pull_chart(ref, version, Path(scratch))
        say = options.get("on_progress") or (lambda _m: None)
        say(f"pulled oci://{pulled}")
        if verify is not None:
            verify(tgz, pulled)
        return deploy_chart(tgz, release, values_files, target, **options)


def export_bundle(
    chart_dir: Path, target: Path, on_progress: Callable[[str], None] | None = None
) -> list[bundle.Entry]:
    """Write the pushed chart in OUT and its step images (with their SBOMs and signatures)
    into one OCI image layout tar, for a registry this one cannot reach."""
    return transfer.export(chart_dir, target, on_progress or (lambda _m: None))


def import_bundle(
    source: Path,
    registry: str,
    chart_out: Path,
    on_progress: Callable[[str], None] | None = None,
) -> list[Reference]:
    """Push a bundle's chart and images into ``registry`` (``HOST[/NS]``), digests unchanged,
    and write the chart to ``chart_out`` with its image registry rewritten."""
    return transfer.import_(source, registry, chart_out, on_progress or (lambda _m: None))


# -- signing (cosign for what is in a registry, Helm provenance for the tarball) -------------

#: where the key password comes from when not typed (cosign's own variable)
SIGNING_PASSWORD_ENV = keys.PASSWORD_ENV


def keygen(prefix: Path, password: str) -> keys.KeyFiles:
    """Make ``PREFIX.key``/``PREFIX.pub`` (cosign) and ``PREFIX.secring.gpg``/
    ``PREFIX.pubring.gpg`` (OpenPGP, for Helm's provenance), one password for both."""
    return keys.generate(prefix, password)


def sign(
    chart_dir: Path,
    key: Path,
    password: str,
    *,
    keyring: Path | None = None,
    destination: Path | None = None,
    oci: str | None = None,
    log: Callable[[str], None] = lambda _line: None,
) -> signing.Signed:
    """Sign the chart's step images by digest, package the chart with Helm's provenance (into
    ``destination``, else where it was last packaged), and push and sign it in the registry
    (``oci``, else where it was last pushed, if it was). Refuses what it can before signing
    anything (no digests, a wrong password); the record in OUT follows each step done."""

    def package_signed(dest: Path | None, key: keys.ProvenanceKey) -> Path:
        return package_chart(chart_dir, dest, sign=key)

    request = signing.SignRequest(chart_dir, key, password, keyring, destination, oci)
    return signing.sign_built(request, package_signed, log)


def verify(
    chart_dir: Path,
    pub: Path,
    *,
    keyring: Path | None = None,
    log: Callable[[str], None] = lambda _line: None,
) -> None:
    """Check the signatures of the chart's step images, of its packaged tarball (.prov) and,
    when it was pushed, of the chart in the registry; a SignatureError lists every failure."""
    signing.verify_built(chart_dir, pub, keyring or keys.beside(pub, ".pubring.gpg"), log)


def verify_pulled_chart(
    key: Path, keyring: Path | None = None, log: Callable[[str], None] = lambda _line: None
) -> Callable[[Path, Reference], None]:
    """``deploy_from_registry``'s ``verify`` for ``deploy --verify --key PUB``: the chart's
    signature (by the digest pulled), its .prov if pulled too, and every step image's."""
    return functools.partial(signing.verify_chart, key=key, keyring=keyring, log=log)
