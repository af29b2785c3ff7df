"""How long the walk through our code is for one command (issue 27's "front doors" figure).

Traces ``api.build`` (chart only, no images) and ``api.run`` (embedded, no step cache) of one
notebook in this process with ``sys.setprofile`` and counts, over the product's own functions
(``jup2kub.*`` and ``jup2kub_runtime.*``; comprehensions and lambdas folded into the function
that holds them; the step processes are not traced, only the command's own):

- ``functions``: distinct functions visited (the "stops" of a reader following the code);
- ``modules``: distinct modules those functions live in;
- ``hops``: distinct caller -> callee edges that cross from one module to another (each is a
  jump a reader makes into another file, and a ``return`` back out of it);
- ``api calls``: the functions of other modules that ``jup2kub.api`` calls itself (what the
  library API has to know about: one front door per concern is the aim);
- ``entries``: per module, how many distinct functions of other modules call into it (how
  often a reader re-enters that file), the largest first.

    python -m bench.walks [NOTEBOOK] [--json OUT]

The figures depend on the code only (not on timing): re-run it after a change to compare.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
from collections import Counter
from collections.abc import Callable
from pathlib import Path
from types import FrameType
from typing import Any

REPO = Path(__file__).resolve().parents[1]
DEFAULT_NOTEBOOK = REPO / "examples" / "weather_markers.ipynb"
PACKAGES = ("jup2kub", "jup2kub_runtime")


def _ours(frame: FrameType) -> str | None:
    """The product module a frame runs in, or None."""
    module = frame.f_globals.get("__name__", "")
    if isinstance(module, str) and module.split(".")[0] in PACKAGES:
        return module
    return None


def _function(frame: FrameType) -> tuple[str, str] | None:
    """(module, function) of the nearest product frame that is a named function."""
    while frame is not None:
        module = _ours(frame)
        generated = frame.f_code.co_filename == "<string>"  # a dataclass's __init__
        if module is not None and not generated and not frame.f_code.co_name.startswith("<"):
            return module, frame.f_code.co_qualname
        if module is None:
            return None
        frame = frame.f_back  # type: ignore[assignment]  # a comprehension's holder
    return None


def trace(call: Callable[[], object]) -> dict[str, Any]:
    """Run ``call`` under the profiler and count the walk (see the module's docstring)."""
    functions: set[tuple[str, str]] = set()
    edges: set[tuple[tuple[str, str], tuple[str, str]]] = set()

    def profile(frame: FrameType, event: str, arg: object) -> None:
        if event != "call":
            return
        code = frame.f_code
        if code.co_name.startswith("<") or code.co_filename == "<string>":
            return  # a comprehension, a lambda or a generated __init__: not a stop of its own
        callee = _function(frame)
        if callee is None:
            return
        functions.add(callee)
        caller = _function(frame.f_back) if frame.f_back is not None else None
        if caller is not None and caller[0] != callee[0]:
            edges.add((caller, callee))

    sys.setprofile(profile)
    try:
        call()
    finally:
        sys.setprofile(None)
    entries = Counter(module for _, module in {(caller, callee[0]) for caller, callee in edges})
    return {
        "functions": len(functions),
        "modules": len({module for module, _ in functions}),
        "hops": len(edges),
        "api_calls": sorted(
            f"{callee[0]}.{callee[1]}" for caller, callee in edges if caller[0] == "jup2kub.api"
        ),
        "entries": dict(entries.most_common()),
    }


def walks(notebook: Path) -> dict[str, dict[str, Any]]:
    """The build and run walks of ``notebook``, each traced from its ``api`` call."""
    from jup2kub import api  # after the profiler's own imports: what api imports is not traced

    with tempfile.TemporaryDirectory(prefix="j2k-walks-") as tmp:
        work = Path(tmp)
        figures = {
            "build": trace(lambda: api.build(notebook, work / "chart")),
            "run": trace(lambda: api.run(notebook, workdir=work / "run", cache=False, jobs=2)),
        }
    return figures


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("notebook", nargs="?", type=Path, default=DEFAULT_NOTEBOOK)
    parser.add_argument("--json", type=Path, help="also write the figures here")
    args = parser.parse_args(argv)
    figures = walks(args.notebook.resolve())
    for command, walk in figures.items():
        top = ", ".join(f"{m} {n}" for m, n in list(walk["entries"].items())[:5])
        print(
            f"{command}: {walk['functions']} functions in {walk['modules']} modules, "
            f"{walk['hops']} module hops; entered most: {top}"
        )
        print(f"  api calls ({len(walk['api_calls'])}): " + ", ".join(walk["api_calls"]))
    if args.json:
        args.json.write_text(json.dumps(figures, indent=2, sort_keys=True) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
