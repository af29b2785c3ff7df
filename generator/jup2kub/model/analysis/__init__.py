"""Static data-flow analysis of one code cell.

Each top-level statement becomes a list of events in execution order: ``read``, ``def``, ``del``
and ``mutate`` of module-level names, each marked certain or conditional. ``pipeline`` then replays
those events across steps to find which values cross which step boundary. Scoping follows Python:
function and lambda bodies, comprehensions, class bodies, ``global``, walrus and exception names.

Why not ``symtable`` or pyflakes: both give scopes but not the order of reads and writes at module
level, which decides whether a read sees this step's definition or an earlier step's. Mutation
(``df["x"] = ...``, ``lst.append(...)``, ``model.fit(...)``) is treated as a redefinition so
that later steps see the mutated value; see ``knowledge.PURE_METHODS`` for the calls assumed not
to mutate.

Modules: ``knowledge`` (what is known about names the analysis cannot see into), ``events`` (what
it yields), ``scopes`` (Python's scoping rules), ``calls`` (changes made through the notebook's
own functions, over its call graph), ``shapes`` (kinds of top-level statements: replayable
definitions, setup calls, cell magics), ``cells`` (one cell's statements to events), ``modules``
(the notebook's own modules an import reads).
"""

from jup2kub.model.analysis.cells import analyze_cell, written_scripts
from jup2kub.model.analysis.events import CellAnalysis, Event, Statement, Summary
from jup2kub.model.analysis.knowledge import BUILTIN_NAMES

__all__ = [
    "BUILTIN_NAMES",
    "CellAnalysis",
    "Event",
    "Statement",
    "Summary",
    "analyze_cell",
    "written_scripts",
]
