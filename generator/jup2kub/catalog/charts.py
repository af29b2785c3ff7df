"""What a chart written by ``jup2kub build`` tells the catalog: its pipeline (name, notebook,
split) and, when images were built, each step's lock, image reference and digest."""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from jup2kub.catalog.records import BuildFacts, sbom_summary
from jup2kub.errors import CatalogError


@dataclass(frozen=True)
class ChartFacts:
    pipeline: str
    notebook: Path
    split: str
    build: BuildFacts


def read_chart(chart: Path) -> ChartFacts:
    """Read ``chart``'s ``pipeline.json`` and ``images/``; the notebook is looked for where the
    build read it (relative paths: from here, then next to the chart)."""
    graph = _json(chart / "pipeline.json", chart)
    if not isinstance(graph, dict) or "name" not in graph or "notebook" not in graph:
        raise CatalogError("pipeline.json has no pipeline name or notebook", where=str(chart))
    notebook = Path(graph["notebook"])
    if not notebook.is_absolute() and not notebook.exists():
        beside = chart.parent / notebook.name
        notebook = beside if beside.exists() else notebook
    locks = {}
    for lock in sorted((chart / "images").glob("*/requirements.lock")):
        locks[lock.parent.name] = lock.read_text(encoding="utf-8")
    images: dict[str, str] = {}
    digests: dict[str, str] = {}
    attached: dict[str, str] = {}
    built = chart / "images" / "images.json"
    if built.exists():
        for step, info in (_json(built, chart).get("steps") or {}).items():
            images[step] = str(info.get("image") or "")
            digests[step] = str(info.get("digest") or "")
            attached[step] = str(info.get("sbom") or "")
    return ChartFacts(
        pipeline=str(graph["name"]),
        notebook=notebook,
        split=str(graph.get("split") or "auto"),
        build=BuildFacts(
            locks=locks, images=images, digests=digests, sboms=_sboms(chart, attached)
        ),
    )


def _sboms(chart: Path, attached: dict[str, str]) -> dict[str, dict[str, Any]]:
    """step -> ``sbom_summary`` of the SBOMs the build wrote (``sbom/STEP.cdx.json``)."""
    found = {}
    for path in sorted((chart / "sbom").glob("*.cdx.json")):
        step = path.name[: -len(".cdx.json")]
        try:
            found[step] = sbom_summary(path.read_bytes(), attached.get(step, ""))
        except (OSError, ValueError, AttributeError) as exc:
            raise CatalogError(f"cannot read {path.name}: {exc}", where=str(path)) from None
    return found


def _json(path: Path, chart: Path) -> Any:
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise CatalogError(
            f"not a chart written by jup2kub build (no {path.name})",
            where=str(chart),
            hint="pass a notebook or the OUT directory of `jup2kub build`",
        ) from None
    except (OSError, ValueError) as exc:
        raise CatalogError(f"cannot read {path.name}: {exc}", where=str(chart)) from None
