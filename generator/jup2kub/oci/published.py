"""What was published from a chart directory: the packaged tarball and, when pushed, the
chart's reference in the registry with its digest. Kept in ``OUT/.jup2kub-published.json``
(helm leaves it out of the package) so that ``sign`` and ``verify`` know which artifact is
this chart's, and so that a stale record (the chart was rebuilt since) is noticed rather than
signed: the record holds the tarball's sha256."""

from __future__ import annotations

import hashlib
import json
import tarfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from jup2kub.errors import UsageError
from jup2kub.files import atomic_write_text
from jup2kub.oci.references import Reference, parse

RECORD = ".jup2kub-published.json"


@dataclass(frozen=True)
class Published:
    tarball: Path
    sha256: str  # of the tarball, as published
    chart: Reference | None = None  # HOST/PATH/NAME:VERSION@DIGEST when pushed

    def to_json(self) -> dict[str, Any]:
        return {
            "tarball": str(self.tarball),
            "sha256": self.sha256,
            "chart": str(self.chart) if self.chart else None,
        }


def file_sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def record(chart_dir: Path, tarball: Path, chart: Reference | None) -> Published:
    """Write the record of ``tarball`` (and where it was pushed) into ``chart_dir``."""
    published = Published(tarball.absolute(), file_sha256(tarball), chart)
    atomic_write_text(chart_dir / RECORD, json.dumps(published.to_json(), indent=2) + "\n")
    return published


def load(chart_dir: Path, *, unchanged: bool = True) -> Published | None:
    """The record, or None when the chart was never packaged; a record whose tarball changed
    or vanished is refused (publish again), unless ``unchanged`` is False (``verify`` then
    says how it changed: the provenance file's hash no longer matches)."""
    path = chart_dir / RECORD
    if not path.exists():
        return None
    try:
        data = json.loads(path.read_text())
        published = Published(
            Path(data["tarball"]),
            str(data["sha256"]),
            parse(data["chart"], what="published chart") if data.get("chart") else None,
        )
    except (OSError, ValueError, KeyError, TypeError) as exc:
        raise UsageError(
            f"unreadable record of the published chart: {exc}",
            where=str(path),
            hint="package the chart again: jup2kub package OUT",
        ) from exc
    if not unchanged:
        return published
    if not published.tarball.is_file() or file_sha256(published.tarball) != published.sha256:
        raise UsageError(
            f"the packaged chart {published.tarball} is gone or changed since it was published",
            where=str(path),
            hint="package it again: jup2kub package OUT (with --oci to push it)",
        )
    changed = _changed_files(chart_dir, published.tarball)
    if changed:
        raise UsageError(
            f"the chart was rebuilt since it was packaged ({', '.join(changed[:3])} differ)",
            where=str(chart_dir),
            hint="package it again: jup2kub package OUT (with --oci to push it)",
        )
    return published


def _changed_files(chart_dir: Path, tarball: Path) -> list[str]:
    """The packaged files whose content differs from (or is missing in) ``chart_dir``."""
    changed = []
    with tarfile.open(tarball, "r:gz") as tar:
        for member in tar.getmembers():
            if not member.isfile():
                continue
            rel = member.name.partition("/")[2]
            handle = tar.extractfile(member)
            local = chart_dir / rel
            if handle is None or not local.is_file() or not _same(rel, local, handle.read()):
                changed.append(rel)
    return changed


def _same(rel: str, local: Path, packaged: bytes) -> bool:
    """Whether the packaged file is the local one; helm writes Chart.yaml anew when it packages
    (same content, its own layout), so that one is compared as YAML."""
    if rel == "Chart.yaml":
        return bool(yaml.safe_load(local.read_bytes()) == yaml.safe_load(packaged))
    return local.read_bytes() == packaged
