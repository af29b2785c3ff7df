"""Drawing the step graph: Graphviz DOT and Mermaid text always, SVG/PNG through Graphviz's
``dot`` program when it is installed."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

from jup2kub.errors import UsageError
from jup2kub.files import atomic_write_bytes, writable
from jup2kub.model.pipeline import Pipeline

FORMATS = ("svg", "png", "dot", "mmd")


def _label(pipeline: Pipeline, name: str) -> str:
    step = pipeline.step(name)
    parts = [name]
    if step.outputs:
        parts.append("out: " + ", ".join(sorted(step.outputs)))
    return "\\n".join(parts)


def _edges(pipeline: Pipeline) -> list[tuple[str, str, str]]:
    """(upstream, step, label) per edge: the values it carries, else why it exists."""
    edges = []
    for s in pipeline.steps:
        for up in s.after:
            values = sorted(v for v, src in s.inputs.items() if src == up)
            label = ", ".join(values) if values else ("files" if up in s.file_deps else "after")
            edges.append((up, s.name, label))
    return edges


def to_dot(pipeline: Pipeline) -> str:
    lines = [
        "digraph pipeline {",
        "  rankdir=LR;",
        '  node [shape=box, style="rounded,filled", fillcolor="#eef3fb", fontname="Helvetica"];',
        '  edge [fontname="Helvetica", fontsize=10];',
    ]
    for s in pipeline.steps:
        lines.append(f'  "{s.name}" [label="{_label(pipeline, s.name)}"];')
    for up, down, label in _edges(pipeline):
        lines.append(f'  "{up}" -> "{down}" [label="{label}"];')
    lines.append("}")
    return "\n".join(lines) + "\n"


def to_mermaid(pipeline: Pipeline) -> str:
    ids = {s.name: f"s{i}" for i, s in enumerate(pipeline.steps)}
    lines = ["flowchart LR"]
    for s in pipeline.steps:
        lines.append(f'  {ids[s.name]}["{s.name}"]')
    for up, down, label in _edges(pipeline):
        lines.append(f'  {ids[up]} -->|"{label}"| {ids[down]}')
    return "\n".join(lines) + "\n"


def render(pipeline: Pipeline, fmt: str, name: str = "the graph") -> bytes:
    """The graph in ``fmt`` (one of FORMATS; svg and png through Graphviz's ``dot``)."""
    if fmt not in FORMATS:
        raise UsageError(
            f"cannot draw a graph as {name!r}",
            hint="use a file name ending in " + ", ".join("." + f for f in FORMATS),
        )
    if fmt == "mmd":
        return to_mermaid(pipeline).encode()
    if fmt == "dot":
        return to_dot(pipeline).encode()
    dot = shutil.which("dot")
    if dot is None:
        raise UsageError(
            f"drawing {name} needs Graphviz's 'dot' program, which is not installed",
            hint="install Graphviz (e.g. apt-get install graphviz), or write a .mmd "
            "(Mermaid) or .dot file instead",
        )
    proc = subprocess.run(
        [dot, f"-T{fmt}"], input=to_dot(pipeline).encode(), capture_output=True, check=False
    )
    if proc.returncode != 0:
        raise UsageError(f"Graphviz failed: {proc.stderr.decode(errors='replace').strip()}")
    return proc.stdout


def svg(pipeline: Pipeline) -> str | None:
    """The graph as SVG text for a page (Jupyter), or None where Graphviz is missing."""
    try:
        return render(pipeline, "svg").decode("utf-8")
    except UsageError:
        return None


def write_graph(pipeline: Pipeline, target: Path) -> None:
    """Write the graph to ``target``; its suffix picks the format."""
    data = render(pipeline, target.suffix.lstrip(".").lower(), target.name)
    with writable("the graph", target, hint="choose a writable --graph path"):
        atomic_write_bytes(target, data)
