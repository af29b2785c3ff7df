"""What Jup2Kub reads of a chart, as a directory or a packaged tarball: its values and
Chart.yaml, and the step images its templates deploy (``image.registry`` /
``steps.<name>.image.repository`` @ ``digest``), each once. One home for signing, verifying,
pushing and moving charts."""

from __future__ import annotations

import io
import tarfile
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from jup2kub.errors import UsageError
from jup2kub.oci.references import Reference, parse


@dataclass(frozen=True)
class StepImage:
    """One image of the chart (by digest) and the steps that run it."""

    ref: Reference
    steps: tuple[str, ...]

    def __str__(self) -> str:
        return f"{self.ref} (step{'s' if len(self.steps) > 1 else ''} {', '.join(self.steps)})"


def chart_values(chart_dir: Path) -> dict[str, Any]:
    """A chart directory's values.yaml."""
    try:
        values = yaml.safe_load((chart_dir / "values.yaml").read_text(encoding="utf-8"))
    except (OSError, yaml.YAMLError) as exc:
        raise UsageError(
            "not a chart built by jup2kub (no readable values.yaml)",
            where=str(chart_dir),
            hint="pass the OUT directory of `jup2kub build`",
        ) from exc
    return values if isinstance(values, dict) else {}


def packaged_yaml(tgz: Path, name: str) -> Any:
    """A top-level YAML file of a packaged chart (``NAME/values.yaml``, ``NAME/Chart.yaml``)."""
    try:
        with tarfile.open(tgz, "r:gz") as tar:
            member = next(
                m
                for m in tar.getmembers()
                if m.name.count("/") == 1 and m.name.endswith(f"/{name}")
            )
            handle = tar.extractfile(member)
            return yaml.safe_load(io.BytesIO(handle.read() if handle else b""))
    except (OSError, tarfile.TarError, StopIteration, yaml.YAMLError) as exc:
        raise UsageError(
            f"not a packaged Helm chart (no readable {name} inside)",
            where=str(tgz),
            hint="pass a .tgz written by `jup2kub package` or `helm package`",
        ) from exc


def tarball_values(tgz: Path) -> dict[str, Any]:
    """A packaged chart's values.yaml."""
    values = packaged_yaml(tgz, "values.yaml")
    return values if isinstance(values, dict) else {}


def chart_meta(tgz: Path) -> tuple[str, str]:
    """A packaged chart's name and version (its Chart.yaml)."""
    meta = packaged_yaml(tgz, "Chart.yaml")
    if not isinstance(meta, dict) or "name" not in meta or "version" not in meta:
        raise UsageError("the packaged Chart.yaml lacks name or version", where=str(tgz))
    return str(meta["name"]), str(meta["version"])


def step_images(values: Mapping[str, Any]) -> tuple[list[StepImage], list[str]]:
    """The chart's step images by digest, each once (steps may share one), composed as the
    templates compose them; and the steps whose image has no digest (never pushed)."""
    registry = str((values.get("image") or {}).get("registry") or "").rstrip("/")
    by_ref: dict[Reference, list[str]] = {}
    undigested: list[str] = []
    for step, spec in sorted((values.get("steps") or {}).items()):
        image = (spec or {}).get("image") or {}
        digest = image.get("digest")
        repository = str(image.get("repository") or "")
        if not digest or not repository:
            undigested.append(step)
            continue
        name = f"{registry}/{repository}" if registry else repository
        ref = parse(f"{name}@{digest}", what=f"image of step {step}")
        by_ref.setdefault(ref.by_digest(), []).append(step)
    return [StepImage(ref, tuple(steps)) for ref, steps in by_ref.items()], undigested


def require_digests(undigested: Sequence[str], where: str) -> None:
    """Only pushed images (with a registry digest) can be signed."""
    if undigested:
        raise UsageError(
            f"the images of step{'s' if len(undigested) > 1 else ''} {', '.join(undigested)} "
            "have no digest: they were not pushed to a registry",
            where=where,
            hint="build with --push first: jup2kub build NOTEBOOK -o OUT --image-registry "
            "HOST/NAMESPACE --push",
        )
