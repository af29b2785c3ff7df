"""The contract of a data-parallel map cell (``#| map: true``), part of ``step.json``.

The generator cuts the cell into plain Python pieces (``jup2kub.model.mapping``); the runtime
(``execution.map_chunks``) runs them: ``before`` in the step's namespace, then ``element`` once
per item of ``iterable`` (bound to ``ITEM``) in parallel chunks, with each accumulator replaced
by a recorder whose operations are replayed on the real object in the original order, then
``finish`` and ``after``. Every piece keeps the cell's line numbers (leading blank lines).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from .errors import SpecError

#: the name an element's item is bound to while ``element`` runs
ITEM = "__j2k_item__"
#: the accumulator a comprehension or ``list(map(..))`` collects into
ACC = "__j2k_acc__"
FORMS = ("list", "set", "dict", "map", "for")


@dataclass(frozen=True)
class MapSpec:
    """One map cell: see the module docstring."""

    cell: int
    line: int  # the loop's line in the cell
    form: str  # FORMS
    iterable: str  # an expression, evaluated once in the step's namespace
    element: str  # statements run once per item (ITEM bound)
    before: str = ""
    finish: str = ""
    after: str = ""
    #: names the element code appends/adds/sets items on: replayed in order
    accumulators: list[str] = field(default_factory=list)
    #: names the loop leaves bound (``for`` form): the last element's values are kept
    carry: list[str] = field(default_factory=list)
    #: the loop target (``for`` form), rebound to the collection's last item itself
    target: str = ""
    #: module-level values the element code reads: checked unchanged after each chunk
    reads: list[str] = field(default_factory=list)
    #: the name the assembled result is bound to (comprehension forms), for messages
    result: str = ""
    chunk: int | None = None  # elements per chunk (None: automatic)

    def __post_init__(self) -> None:
        if self.form not in FORMS:
            raise SpecError(f"map form {self.form!r} is not one of {', '.join(FORMS)}")
        if self.chunk is not None and self.chunk < 1:
            raise SpecError("map chunk must be at least 1")

    def to_dict(self) -> dict[str, Any]:
        return {
            "cell": self.cell,
            "line": self.line,
            "form": self.form,
            "iterable": self.iterable,
            "element": self.element,
            "before": self.before,
            "finish": self.finish,
            "after": self.after,
            "accumulators": list(self.accumulators),
            "carry": list(self.carry),
            "target": self.target,
            "reads": list(self.reads),
            "result": self.result,
            "chunk": self.chunk,
        }

    @classmethod
    def from_dict(cls, data: object) -> MapSpec:
        if not isinstance(data, dict):
            raise SpecError("a map entry of step.json must be a JSON object")
        try:
            chunk = data.get("chunk")
            return cls(
                cell=int(data["cell"]),
                line=int(data["line"]),
                form=str(data["form"]),
                iterable=str(data["iterable"]),
                element=str(data["element"]),
                before=str(data.get("before", "")),
                finish=str(data.get("finish", "")),
                after=str(data.get("after", "")),
                accumulators=[str(v) for v in data.get("accumulators", [])],
                carry=[str(v) for v in data.get("carry", [])],
                target=str(data.get("target", "")),
                reads=[str(v) for v in data.get("reads", [])],
                result=str(data.get("result", "")),
                chunk=None if chunk is None else int(chunk),
            )
        except (KeyError, TypeError, ValueError) as exc:
            raise SpecError(f"step.json map entry is malformed: {exc}") from exc
