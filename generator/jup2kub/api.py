"""The library API behind the CLI (as papermill's ``execute_notebook`` is behind its CLI)."""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from jup2kub import chart
from jup2kub.analysis import analyze_cell
from jup2kub.errors import InputError
from jup2kub.notebook import load_notebook
from jup2kub.pipeline import Pipeline, build_pipeline
from jup2kub.split import code_cells, split_notebook


def inspect_notebook(path: str | Path, split: str = "auto") -> Pipeline:
    """Read a notebook, cut it into steps and work out the values that flow between them."""
    nb = load_notebook(path)
    parts = split_notebook(nb, split)
    analyses = [analyze_cell(nb.path, i, nb.cells[i].source) for i in sorted(code_cells(parts))]
    return build_pipeline(nb, parts, analyses)


def require_storable(pipeline: Pipeline) -> None:
    """Refuse a pipeline in which an unpicklable value (open file, lock, generator, ...)
    would have to cross a step boundary: it would fail at run time, after other steps ran."""
    if not pipeline.unshippable:
        return
    first = pipeline.unshippable[0]
    more = "".join(f"\n  also: {u}" for u in pipeline.unshippable[1:])
    raise InputError(
        f"{first}{more}",
        where=pipeline.notebook,
        hint=f"move the code that uses {first.name!r} into step {first.source!r} (e.g. with a "
        "step marker or tag), or create it again in the step that needs it",
    )


@dataclass(frozen=True)
class ImageBuild:
    """How ``build`` builds the step images (None there: write the chart only)."""

    base_image: str = "python:3.11-slim"  # = images.DEFAULT_BASE_IMAGE (a test checks)
    platform: str | None = None
    push: bool = False
    trace: bool = False
    data_files: str = "copy"


def build(
    path: str | Path,
    out: str | Path,
    split: str = "auto",
    options: chart.ChartOptions | None = None,
    image_build: ImageBuild | None = None,
    log: Callable[[str], None] | None = None,
) -> tuple[Pipeline, Path]:
    """Build the step images (unless ``image_build`` is None) and write the Helm chart, with
    the images' tags/digests and the dependency locks, to ``out`` in one atomic step."""
    pipeline = inspect_notebook(path, split)
    require_storable(pipeline)
    options = options or chart.ChartOptions()
    if options.notebook_sha256 is None:
        options = dataclasses.replace(options, notebook_sha256=pipeline.notebook_sha256)
    audit: dict[str, bytes] = {}
    if image_build is not None:
        from jup2kub import deps, images  # the Docker SDK loads only when images are built

        name = options.name or chart.pipeline_name(Path(path))
        client = images.engine()
        target = images.probe_target(client, image_build.base_image, image_build.platform)
        captured = deps.capture(pipeline, target, name=name)
        for warning in captured.warnings:
            if log is not None:
                log(f"warning: {warning}")
        if image_build.trace:
            deps.trace(captured, pipeline, data_files=image_build.data_files)
        locks = deps.lock(captured)
        built = images.build_images(
            pipeline,
            captured,
            locks,
            images.ImageOptions(
                base_image=image_build.base_image,
                registry=options.image_registry,
                platform=image_build.platform,
                push=image_build.push,
            ),
            client=client,
            name=name,
            log=log,
        )
        options = dataclasses.replace(options, image_tags=built.tags, image_digests=built.digests)
        audit = images.build_files(captured, locks, built)
    written = chart.build_chart(pipeline.to_json(), Path(path), Path(out), options, audit)
    return pipeline, written
