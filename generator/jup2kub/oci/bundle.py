"""A chart and its step images as one OCI image layout in a tar file, for moving a pipeline
into an air-gapped registry: ``export`` copies them out of the registry (with their referrers,
such as SBOMs, and their cosign signatures), ``import`` pushes them into another registry
under the same repositories, and the digests do not change.

ORAS does the copying (it keeps manifests byte for byte). The layout's ``index.json`` names
each entry (``org.opencontainers.image.ref.name``) and says what it is with Jup2Kub's
annotations (kind, repository relative to the registry, tag), so an import needs nothing but
the tar.
"""

from __future__ import annotations

import hashlib
import json
import tarfile
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from jup2kub.errors import InputError, RegistryError, UsageError
from jup2kub.oci import tools
from jup2kub.oci.references import Reference

REF_NAME = "org.opencontainers.image.ref.name"
KIND = "io.jup2kub.kind"  # "image", "chart" or "signature"
REPOSITORY = "io.jup2kub.repository"  # relative to the registry (and namespace)
TAG = "io.jup2kub.tag"

HELM_CHART_LAYER = "application/vnd.cncf.helm.chart.content.v1.tar+gzip"


@dataclass(frozen=True)
class Entry:
    """One artifact of the bundle: ``source`` in its registry, stored as ``name``; pushed on
    import to ``<registry>/<repository>:<tag>``."""

    kind: str
    name: str
    repository: str
    tag: str
    digest: str


def signature_tag(digest: str) -> str:
    """cosign's tag for the signatures of ``digest`` (its classic, tag-based format)."""
    return digest.replace(":", "-") + ".sig"


# --------------------------------------------------------------------------- export


def copy_out(source: Reference, layout: Path, name: str) -> str:
    """Copy ``source`` (pinned by digest) and its referrers into the layout as ``name``;
    returns the digest the layout holds."""
    args = ["cp", "-r", "--no-tty", str(source), "--to-oci-layout", f"{layout}:{name}"]
    if source.plain_http:
        args.insert(1, "--from-plain-http")
    out = tools.run(tools.ORAS, args, registry=source.registry)
    return _digest_line(out, source)


def copy_signature(image: Reference, layout: Path, name: str) -> str | None:
    """Copy cosign's signature of ``image`` into the layout, when it has one; returns the
    signature manifest's digest."""
    sig = Reference(image.registry, image.repository, signature_tag(str(image.digest)))
    try:
        return copy_out(sig, layout, name)
    except RegistryError as exc:
        if "no such artifact" in exc.what:
            return None
        raise


def _digest_line(out: str, source: Reference) -> str:
    for line in out.splitlines():
        if line.startswith("Digest: "):
            return line.removeprefix("Digest: ").strip()
    raise InputError(f"oras printed no digest copying {source}:\n{out}", where=str(source))


def annotate(layout: Path, entries: list[Entry]) -> None:
    """Say in ``index.json`` what each named entry is (kind, repository, tag)."""
    index_path = layout / "index.json"
    index = json.loads(index_path.read_text())
    by_name = {e.name: e for e in entries}
    for manifest in index["manifests"]:
        entry = by_name.get((manifest.get("annotations") or {}).get(REF_NAME, ""))
        if entry is not None:
            manifest["annotations"].update(
                {KIND: entry.kind, REPOSITORY: entry.repository, TAG: entry.tag}
            )
    index_path.write_text(json.dumps(index, indent=2) + "\n")


def write_tar(layout: Path, bundle: Path) -> None:
    """The layout as a tar at ``bundle``, written beside it and renamed into place."""
    with tempfile.NamedTemporaryFile(
        dir=bundle.parent, prefix=f".{bundle.name}.", suffix=".tmp", delete=False
    ) as tmp:
        part = Path(tmp.name)
    try:
        with tarfile.open(part, "w") as tar:
            for path in sorted(layout.rglob("*")):
                if path.is_file() and "ingest" not in path.relative_to(layout).parts:
                    tar.add(path, arcname=str(path.relative_to(layout)), recursive=False)
        part.replace(bundle)
    except BaseException:
        part.unlink(missing_ok=True)
        raise


# --------------------------------------------------------------------------- import


def unpack(bundle: Path, into: Path) -> list[Entry]:
    """Extract the bundle, check every blob against its digest, and list its entries."""
    try:
        with tarfile.open(bundle) as tar:
            tar.extractall(into, filter="data")
        index = json.loads((into / "index.json").read_text())
    except (OSError, tarfile.TarError, ValueError) as exc:
        raise UsageError(
            f"not a bundle written by `jup2kub export`: {exc}",
            where=str(bundle),
            hint="pass the tar file that `jup2kub export OUT bundle.tar` wrote",
        ) from exc
    check_blobs(into, bundle)
    entries = list(_entries(index))
    if not entries:
        raise UsageError("the bundle names no chart or image", where=str(bundle))
    return entries


def check_blobs(layout: Path, bundle: Path) -> None:
    """Every blob's content hashes to its name: a damaged or altered bundle is refused before
    anything is pushed."""
    for blob in sorted((layout / "blobs" / "sha256").glob("*")):
        if _sha256(blob) != blob.name:
            raise UsageError(
                f"the bundle is damaged or was altered: blob sha256:{blob.name} does not match "
                "its content (digest mismatch)",
                where=str(bundle),
                hint="export it again from the source registry",
            )


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def _entries(index: dict[str, Any]) -> Iterator[Entry]:
    for manifest in index.get("manifests") or []:
        notes = manifest.get("annotations") or {}
        if KIND in notes:
            yield Entry(
                notes[KIND], notes[REF_NAME], notes[REPOSITORY], notes[TAG], manifest["digest"]
            )


def copy_in(layout: Path, entry: Entry, target: Reference) -> None:
    """Push ``entry`` (and its referrers) from the layout to ``target``; the registry must
    then hold it under the same digest."""
    args = ["cp", "-r", "--no-tty", "--from-oci-layout", f"{layout}:{entry.name}", str(target)]
    if target.plain_http:
        args.insert(1, "--to-plain-http")
    out = tools.run(tools.ORAS, args, registry=target.registry)
    got = _digest_line(out, target)
    if got != entry.digest:
        raise RegistryError(
            target.registry,
            f"digest mismatch: {target} is {got} in the registry, {entry.digest} in the bundle",
            hint="the registry rewrote the manifest; use a registry that stores OCI manifests "
            "as they are (any OCI distribution-spec registry does)",
        )


def chart_tarball(layout: Path, entry: Entry) -> bytes:
    """The packaged chart (.tgz) of a chart entry: its manifest's Helm layer."""
    manifest = json.loads(_blob(layout, entry.digest).read_bytes())
    layers = [x for x in manifest.get("layers", []) if x.get("mediaType") == HELM_CHART_LAYER]
    if len(layers) != 1:
        raise UsageError(f"entry {entry.name} of the bundle is not a Helm chart", where=entry.name)
    return _blob(layout, layers[0]["digest"]).read_bytes()


def _blob(layout: Path, digest: str) -> Path:
    return layout / "blobs" / "sha256" / digest.removeprefix("sha256:")
