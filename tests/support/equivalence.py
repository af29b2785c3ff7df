"""The equivalence oracle: a notebook run top to bottom with nbclient, and how a pipeline run is
compared with it (shared by tests/test_run.py and tests/test_corpus.py).

What is compared, and why each normalisation is sound:

- shown outputs (``shown``): streams, results and errors per code cell, images reduced to their
  MIME kind (tests/support/nb_outputs.py); ``%%time`` lines and object addresses
  (``<... at 0x7f..>``) are removed, because they differ between any two nbclient runs too,
  and consecutive pieces of one stream are joined (the kernel's buffering decides them);
- values crossing steps (``same``): equal as data, not as objects; figures as the pixels they
  render;
- files written (``differing_files``): byte for byte, except PNG images, which are compared as
  decoded pixels (matplotlib's ``imread``): the same pixels are the same picture, while a PNG's
  bytes also hold encoder choices (compression, text chunks) that no reader of the file sees.
"""

from __future__ import annotations

import copy
import io
import math
import re
import sys
from collections.abc import Collection
from pathlib import Path
from typing import Any

import cloudpickle
import nbformat
from nbclient import NotebookClient
from nbclient.exceptions import CellExecutionError

from tests.support.nb_outputs import text_outputs

TIMING = re.compile(r"^(CPU times|Wall time).*$", re.M)
ADDRESS = re.compile(r" at 0x[0-9a-fA-F]+")


def same(a: Any, b: Any, seen: set[tuple[int, int]] | None = None) -> bool:
    """Equality for the kinds of values notebooks hold (arrays, frames, models, objects).

    Objects are compared through their attributes; a pair met again while comparing (the
    cycles of e.g. a figure and its axes) counts as equal. Matplotlib figures and artists are
    compared as the pictures they render (``figure_pixels``)."""
    import numpy as np
    import pandas as pd

    seen = set() if seen is None else seen
    if isinstance(a, (pd.DataFrame, pd.Series)):
        return type(a) is type(b) and a.equals(b)
    if isinstance(a, np.ndarray):
        if not (isinstance(b, np.ndarray) and a.shape == b.shape):
            return False
        if a.dtype == object:
            return all(same(x, y, seen) for x, y in zip(a.flat, b.flat, strict=True))
        return bool(np.array_equal(a, b))
    if isinstance(a, float):
        return isinstance(b, float) and (math.isclose(a, b) or (math.isnan(a) and math.isnan(b)))
    if isinstance(a, (list, tuple)):
        if not (type(a) is type(b) and len(a) == len(b)):
            return False
        return all(same(x, y, seen) for x, y in zip(a, b, strict=True))
    if isinstance(a, dict):
        return (
            isinstance(b, dict) and a.keys() == b.keys() and all(same(a[k], b[k], seen) for k in a)
        )
    if isinstance(a, (int, str, bool, type(None), bytes)):
        return bool(a == b)
    pictures = figure_pixels(a), figure_pixels(b)
    if pictures[0] is not None:
        return pictures[1] is not None and same(*pictures)
    if hasattr(a, "__dict__"):
        if (id(a), id(b)) in seen:
            return True
        seen.add((id(a), id(b)))
        return type(a).__name__ == type(b).__name__ and same(vars(a), vars(b), seen)
    return ADDRESS.sub("", repr(a)) == ADDRESS.sub("", repr(b))


def figure_pixels(value: Any) -> Any:
    """The RGBA pixels a matplotlib figure (or the figure of an artist) renders, else None: two
    figures are the same when they draw the same picture."""
    if "matplotlib" not in sys.modules:
        return None
    import matplotlib.artist
    import matplotlib.figure
    import matplotlib.image

    figure = value if isinstance(value, matplotlib.figure.Figure) else None
    if figure is None and isinstance(value, matplotlib.artist.Artist):
        figure = value.figure
    if not isinstance(figure, matplotlib.figure.Figure):
        return None
    buf = io.BytesIO()
    figure.savefig(buf, format="png", dpi=40)
    buf.seek(0)
    return matplotlib.image.imread(buf, format="png")


def reference_run(path: Path, names: list[str], cwd: Path) -> tuple[Any, dict[str, Any]]:
    """Execute the notebook top to bottom with nbclient; return it and the final values."""
    nb = nbformat.read(path, as_version=4)
    dump = cwd / ".reference-values.pkl"
    probe = nbformat.v4.new_code_cell(
        "import cloudpickle as _cp\n"
        f"with open({str(dump)!r}, 'wb') as _f:\n"
        f"    _cp.dump({{_n: globals()[_n] for _n in {names!r} if _n in globals()}}, _f)\n"
    )
    nb.cells.append(probe)
    NotebookClient(
        nb, timeout=600, kernel_name="python3", resources={"metadata": {"path": str(cwd)}}
    ).execute()
    nb.cells.pop()
    values = cloudpickle.loads(dump.read_bytes())
    dump.unlink()
    return nb, values


PROBE = "j2k-reference-probe"


def reference_run_by_step(
    path: Path, handed_on: dict[int, list[str]], cwd: Path, *, fails: bool = False
) -> tuple[Any, dict[int, dict[str, Any]]]:
    """Execute the notebook top to bottom with nbclient, keeping after cell ``i`` the values
    ``handed_on[i]`` (those a step ending at cell ``i`` hands on): what the pipeline must
    store for that step. Returns the executed notebook (probes removed) and the values.
    ``fails``: a cell fails (nbclient stops there); the values kept before it are returned."""
    nb = nbformat.read(path, as_version=4)
    dumps = {i: cwd / f".reference-{i}.pkl" for i in handed_on}
    for i in sorted(handed_on, reverse=True):
        keep = f"{{_n: globals()[_n] for _n in {sorted(handed_on[i])!r} if _n in globals()}}"
        probe = nbformat.v4.new_code_cell(
            f"(lambda cp, f: (cp.dump({keep}, f), f.close()))"
            f"(__import__('cloudpickle'), open({str(dumps[i])!r}, 'wb'))"
        )
        probe.metadata[PROBE] = True
        nb.cells.insert(i + 1, probe)
    client = NotebookClient(
        nb, timeout=600, kernel_name="python3", resources={"metadata": {"path": str(cwd)}}
    )
    try:
        client.execute()
    except CellExecutionError:
        if not fails:
            raise
    else:
        assert not fails, f"{path}: no cell failed"
    nb.cells = [c for c in nb.cells if not c.metadata.get(PROBE)]
    kept = {i: dump for i, dump in dumps.items() if dump.exists()}
    values = {i: cloudpickle.loads(dump.read_bytes()) for i, dump in kept.items()}
    for dump in kept.values():
        dump.unlink()
    return nb, values


def shown(nb: Any, skipped: Collection[int] = ()) -> dict[int, list[tuple[str, str]]]:
    """What each code cell showed, comparable between runs; ``skipped`` cells are left out
    (Kale's ``skip`` cells are not part of the pipeline by design)."""
    return {
        i: [(kind, ADDRESS.sub(" at 0x", text)) for kind, text in items]
        for i, items in text_outputs(coalesced(nb), TIMING).items()
        if i not in skipped
    }


def coalesced(nb: Any) -> Any:
    """A copy whose consecutive outputs of the same stream are one output: how many messages
    a text arrived in depends on the kernel's buffering and is invisible in a notebook."""
    nb = copy.deepcopy(nb)
    for cell in nb.cells:
        merged: list[Any] = []
        for out in cell.get("outputs", []):
            last = merged[-1] if merged else None
            if (
                last is not None
                and out["output_type"] == last["output_type"] == "stream"
                and out["name"] == last["name"]
            ):
                last["text"] += out["text"]
            else:
                merged.append(out)
        if "outputs" in cell:
            cell["outputs"] = merged
    return nb


def files_in(directory: Path) -> dict[str, bytes]:
    """The files a run left under ``directory`` (the pipeline's own workdir excluded, and
    Python's bytecode cache of the notebook's own modules: it is no result, holds the source's
    modification time, and is written or not as ``PYTHONDONTWRITEBYTECODE`` says)."""
    return {
        str(p.relative_to(directory)): p.read_bytes()
        for p in sorted(directory.rglob("*"))
        if p.is_file()
        and not str(p.relative_to(directory)).startswith((".jup2kub", "work"))
        and "__pycache__" not in p.relative_to(directory).parts
    }


def same_file(name: str, a: bytes, b: bytes) -> bool:
    """Byte equality, or for PNG images equality of the decoded pixels (see the module doc)."""
    if a == b:
        return True
    if not name.lower().endswith(".png"):
        return False
    import matplotlib.image as mpimg
    import numpy as np

    pa, pb = mpimg.imread(io.BytesIO(a), format="png"), mpimg.imread(io.BytesIO(b), format="png")
    return pa.shape == pb.shape and bool(np.array_equal(pa, pb))


def differing_files(reference: Path, pipeline: Path) -> list[str]:
    """Names of the files present in only one directory, or different in content."""
    ref, got = files_in(reference), files_in(pipeline)
    names = sorted(set(ref) | set(got))
    return [n for n in names if n not in ref or n not in got or not same_file(n, ref[n], got[n])]
