"""``export`` and ``import``: a built, pushed chart and its step images moved between
registries through one tar file (the OCI image layout of ``oci.bundle``)."""

from __future__ import annotations

import io
import os
import shutil
import tarfile
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

import yaml

from jup2kub.errors import UsageError
from jup2kub.oci import bundle, published
from jup2kub.oci.references import Reference, parse

Say = Callable[[str], None]


def step_images(chart_dir: Path) -> dict[str, Reference]:
    """step -> its image pinned by digest, from the chart's values (as its templates compose
    it); a step without a digest is refused: it was never pushed."""
    values = _values(chart_dir)
    registry = str((values.get("image") or {}).get("registry") or "").rstrip("/")
    images: dict[str, Reference] = {}
    for step, spec in sorted((values.get("steps") or {}).items()):
        image = (spec or {}).get("image") or {}
        if not image.get("digest") or not registry:
            raise UsageError(
                f"step {step}'s image has no registry digest",
                where=str(chart_dir / "values.yaml"),
                hint="build and push the images first: jup2kub build NOTEBOOK -o OUT "
                "--image-registry HOST/NS --push",
            )
        ref = parse(f"{registry}/{image['repository']}", what=f"step {step}'s image")
        images[step] = Reference(ref.registry, ref.repository, image.get("tag"), image["digest"])
    return images


def _values(chart_dir: Path) -> dict[str, Any]:
    try:
        values = yaml.safe_load((chart_dir / "values.yaml").read_text())
    except (OSError, yaml.YAMLError) as exc:
        raise UsageError(
            "not a chart directory of `jup2kub build` (no readable values.yaml)",
            where=str(chart_dir),
            hint="pass the OUT directory of `jup2kub build`",
        ) from exc
    return values if isinstance(values, dict) else {}


def _relative(ref: Reference, registry: str) -> str:
    """The repository below the chart's image registry (``HOST/NS``)."""
    prefix = registry.partition("/")[2]
    return ref.repository.removeprefix(prefix + "/") if prefix else ref.repository


def export(chart_dir: Path, target: Path, say: Say) -> list[bundle.Entry]:
    """Write the chart (as pushed by ``package --oci``) and its step images, with their
    referrers and signatures, into the tar ``target``."""
    if target.exists():
        raise UsageError(
            "the bundle file already exists", where=str(target), hint="choose another name"
        )
    record = published.load(chart_dir)
    if record is None or record.chart is None:
        raise UsageError(
            "the chart was not pushed to a registry",
            where=str(chart_dir),
            hint="push it first: jup2kub package OUT --oci oci://HOST/PATH",
        )
    registry = str(_values(chart_dir).get("image", {}).get("registry") or "")
    sources = [("chart", record.chart, record.chart.repository)]
    unique = {str(r): r for r in step_images(chart_dir).values()}
    for i, ref in enumerate(unique.values()):
        sources.append((f"image-{i}", ref, _relative(ref, registry)))
    with tempfile.TemporaryDirectory(prefix="jup2kub-export-") as scratch:
        layout = Path(scratch)
        entries = []
        for name, ref, repository in sources:
            entries += _export_one(name, ref, repository, layout, say)
        bundle.annotate(layout, entries)
        bundle.write_tar(layout, target)
    return entries


def _export_one(
    name: str, ref: Reference, repository: str, layout: Path, say: Say
) -> list[bundle.Entry]:
    """The artifact ``ref`` (chart or image) with its referrers, and its cosign signature
    when it has one."""
    kind = "chart" if name == "chart" else "image"
    digest = bundle.copy_out(ref.by_digest(), layout, name)
    own_tag = str(ref.tag or digest.replace(":", "-"))
    entries = [bundle.Entry(kind, name, repository, own_tag, digest)]
    say(f"{kind} {ref}")
    signature = bundle.copy_signature(ref.by_digest(), layout, f"{name}-signature")
    if signature:
        entries.append(
            bundle.Entry(
                "signature",
                f"{name}-signature",
                repository,
                bundle.signature_tag(digest),
                signature,
            )
        )
        say(f"  its signature ({bundle.signature_tag(digest)})")
    return entries


def import_(bundle_tar: Path, registry: str, out: Path, say: Say) -> list[Reference]:
    """Push every artifact of the bundle to ``registry`` (``HOST[/NS]``) under its
    repository, the digests unchanged; write the chart into ``out`` with its image registry
    rewritten to ``registry``. Returns what was pushed."""
    target = parse(f"{registry.rstrip('/')}/x", what="registry").registry
    namespace = registry.rstrip("/").partition("/")[2]
    if out.exists():
        raise UsageError(
            "the chart directory already exists", where=str(out), hint="choose another -o directory"
        )
    with tempfile.TemporaryDirectory(prefix="jup2kub-import-") as scratch:
        layout = Path(scratch)
        entries = bundle.unpack(bundle_tar, layout)
        pushed = []
        for entry in entries:
            repository = f"{namespace}/{entry.repository}" if namespace else entry.repository
            ref = parse(f"{target}/{repository}:{entry.tag}", what="imported reference")
            bundle.copy_in(layout, entry, ref)
            say(f"{entry.kind} {ref}@{entry.digest}")
            pushed.append(Reference(ref.registry, ref.repository, ref.tag, entry.digest))
        chart = next(e for e in entries if e.kind == "chart")
        write_chart(bundle.chart_tarball(layout, chart), out, registry.rstrip("/"))
    return pushed


def write_chart(tgz: bytes, out: Path, registry: str) -> None:
    """Unpack the chart into ``out`` (atomically: a temporary directory renamed into place)
    with ``image.registry`` set to ``registry`` (the rest of values.yaml, comments included,
    as it was)."""
    out.parent.mkdir(parents=True, exist_ok=True)
    scratch = Path(tempfile.mkdtemp(prefix=f".{out.name}.", dir=out.parent))
    try:
        with tarfile.open(fileobj=io.BytesIO(tgz), mode="r:gz") as tar:
            tar.extractall(scratch, filter="data")
        (top,) = [p for p in scratch.iterdir() if p.is_dir()]
        _set_registry(top / "values.yaml", registry)
        os.replace(top, out)
    finally:
        shutil.rmtree(scratch, ignore_errors=True)


def _set_registry(values: Path, registry: str) -> None:
    from ruamel.yaml import YAML

    rt = YAML()
    rt.preserve_quotes = True
    data = rt.load(values.read_text())
    data["image"]["registry"] = registry
    with values.open("w") as f:
        rt.dump(data, f)
