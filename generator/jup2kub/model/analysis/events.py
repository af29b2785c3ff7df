"""What the analysis of a cell yields: per top-level statement, the events (read, def, del,
mutate) of module-level names in execution order."""

from __future__ import annotations

from dataclasses import dataclass, field


@dataclass(frozen=True)
class Event:
    """Something a statement does to a module-level name, in execution order."""

    kind: str  # "read" | "def" | "del" | "mutate"
    name: str
    line: int
    certain: bool = True
    #: for a def: what the value is when it cannot be stored (an open file, a lock, ...)
    unshippable: str | None = None


@dataclass(frozen=True)
class Summary:
    """What using a function or class reads and writes at call time (its body's free names)."""

    reads: frozenset[str]
    writes: frozenset[str]


@dataclass
class Statement:
    """One top-level statement of a cell, with its data-flow events and replay information."""

    cell: int
    line: int
    end_line: int
    source: str
    events: list[Event] = field(default_factory=list)
    #: names bound by a replayable definition (import, def, class, or an if/try of only those)
    code_names: tuple[str, ...] = ()
    summaries: dict[str, Summary] = field(default_factory=dict)
    star_import: bool = False
    #: module name whose state this statement configures (``np.random.seed(0)``), "%" for magics
    setup_root: str | None = None
    file_writes: set[str] = field(default_factory=set)
    literals: set[str] = field(default_factory=set)


@dataclass
class CellAnalysis:
    index: int
    python: str  # the cell translated to plain Python (what a step executes)
    statements: list[Statement]
