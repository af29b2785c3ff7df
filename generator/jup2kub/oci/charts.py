"""Helm charts in OCI registries (Helm 3.8+): pushing a packaged chart and pulling one by
version, through helm itself, so the artifact is exactly the one ``helm pull oci://`` and Flux
or Argo CD fetch. A chart's reference is ``HOST/PATH/NAME`` tagged with its version."""

from __future__ import annotations

import re
import subprocess
import tempfile
from pathlib import Path

from jup2kub.errors import InputError, UsageError
from jup2kub.helm import find_helm
from jup2kub.oci.chart_files import chart_meta
from jup2kub.oci.references import OCI_SCHEME, Reference
from jup2kub.oci.tools import failure

_DIGEST_LINE = re.compile(r"^Digest:\s*(sha256:[0-9a-f]{64})\s*$", re.MULTILINE)


def _helm(args: list[str], registry: str) -> str:
    """helm's output; registry failures said in terms of the registry (RegistryError)."""
    result = subprocess.run(
        [find_helm(), *args], capture_output=True, text=True, check=False, stdin=subprocess.DEVNULL
    )
    if result.returncode != 0:
        raise failure(f"helm {args[0]}", (result.stderr or result.stdout).strip(), registry)
    return result.stdout + result.stderr


def _plain(where: Reference) -> list[str]:
    return ["--plain-http"] if where.plain_http else []


def push_chart(tgz: Path, where: Reference) -> Reference:
    """Push the packaged chart under ``where`` (``HOST/PATH``); returns the chart's reference
    ``HOST/PATH/NAME:VERSION@DIGEST`` with the registry's manifest digest."""
    name, version = chart_meta(tgz)
    out = _helm(["push", str(tgz), OCI_SCHEME + where.name, *_plain(where)], where.registry)
    found = _DIGEST_LINE.search(out)
    if not found:
        raise InputError(f"helm push printed no digest for {tgz.name}:\n{out}", where=str(where))
    return Reference(where.registry, f"{where.repository}/{name}", version, found.group(1))


def pull_chart(chart: Reference, version: str | None, dest: Path) -> tuple[Path, Reference]:
    """Pull the chart ``HOST/PATH/NAME`` (``version``: a version or range, else the newest)
    into ``dest``; returns the tarball and the chart's reference with its digest.

    A digest in ``chart`` pins it: the pulled chart must have exactly that digest."""
    dest.mkdir(parents=True, exist_ok=True)
    pinned = ["--version", version or str(chart.tag)] if version or chart.tag else []
    with tempfile.TemporaryDirectory(dir=dest) as scratch:
        out = _helm(
            [
                "pull",
                OCI_SCHEME + chart.name,
                "--destination",
                scratch,
                "--prov",  # the chart's provenance file comes along when it has one
                *pinned,
                *_plain(chart),
            ],
            chart.registry,
        )
        tgz = _only_tarball(Path(scratch), chart)
        found = _DIGEST_LINE.search(out)
        if not found:
            raise InputError(f"helm pull printed no digest:\n{out}", where=str(chart))
        digest = found.group(1)
        if chart.digest and digest != chart.digest:
            raise UsageError(
                f"the registry serves digest {digest}, not the {chart.digest} asked for",
                where=str(chart),
                hint="the tag was moved: check the reference, or pin the digest now served",
            )
        final = dest / tgz.name
        prov = Path(f"{tgz}.prov")
        if prov.is_file():
            prov.replace(Path(f"{final}.prov"))
        tgz.replace(final)
    _name, pulled_version = chart_meta(final)
    return final, Reference(chart.registry, chart.repository, pulled_version, digest)


def _only_tarball(directory: Path, chart: Reference) -> Path:
    found = sorted(directory.glob("*.tgz"))
    if len(found) != 1:
        raise InputError(f"helm pull wrote {len(found)} chart archives", where=str(chart))
    return found[0]
