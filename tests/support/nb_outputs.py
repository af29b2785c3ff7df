"""What a notebook showed, in a comparable form: shared by the tests that compare a pipeline's
results notebook with a top-to-bottom run (tests/test_run.py, e2e/tests/test_pipeline.py)."""

from __future__ import annotations

import re
from typing import Any


def text_outputs(nb: Any, timing: re.Pattern[str]) -> dict[int, list[tuple[str, str]]]:
    """Per code cell: (kind, text) of streams, results and errors; images reduced to their kind.

    ``timing`` matches what differs between any two runs (e.g. %%time lines); it is removed
    from stream text. The injected-parameters cell is left out.
    """
    out: dict[int, list[tuple[str, str]]] = {}
    for index, cell in enumerate(nb.cells):
        if cell.cell_type != "code" or "injected-parameters" in cell.metadata.get("tags", []):
            continue
        items = []
        for o in cell.get("outputs", []):
            kind = o["output_type"]
            if kind == "stream":
                text = timing.sub("", o["text"]).strip()
                if text:
                    items.append((o["name"], text))
            elif kind in ("execute_result", "display_data"):
                data = o.get("data", {})
                if "image/png" in data:
                    items.append((kind, "image/png"))
                else:
                    items.append((kind, str(data.get("text/plain", ""))))
            elif kind == "error":
                items.append(("error", f"{o['ename']}: {o['evalue']}"))
        out[index] = items
    return out
