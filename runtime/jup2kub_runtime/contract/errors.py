"""Runtime errors, classified like kopf's: permanent ones are dead-lettered at once, temporary
ones are retried with exponential backoff (then dead-lettered once the retries are spent).

``ErrorRecord`` is why a step failed, in the one shape that error.json, outputs.json, the
status and dead-letter messages and the single-execution command's output are made from.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

#: the ``phase`` of an ErrorRecord a guard of the analysis' assumptions wrote
#: (``execution.guards``), and its ``ename``s: an input changed in place, a generator drawn from
GUARD_PHASE = "guard"
INPUT_CHANGED = "InputChangedError"
RANDOM_DRAWN = "RandomDrawError"


@dataclass(frozen=True)
class ErrorRecord:
    """nbformat-style error of a step: the cell (None: outside the cells), the exception's
    name and value, its traceback lines; ``phase`` says where it happened (parameters,
    overrides, replay, cell, outputs) and ``variable`` names the output that could not be
    stored (OutputError), so no reader has to parse it out of ``evalue``."""

    cell: int | None
    ename: str
    evalue: str
    traceback: list[str] = field(default_factory=list)
    phase: str | None = None
    variable: str | None = None

    @classmethod
    def of(
        cls, exc: BaseException, *, cell: int | None = None, phase: str | None = None
    ) -> ErrorRecord:
        """The record of a runtime error raised outside the step's code (no traceback)."""
        variable = exc.variable if isinstance(exc, OutputError) else None
        return cls(cell, type(exc).__name__, str(exc), phase=phase, variable=variable)

    def to_json(self) -> dict[str, Any]:
        """The full record (error.json, outputs.json, the command's output)."""
        doc: dict[str, Any] = {"output_type": "error", "cell": self.cell}
        if self.phase is not None:
            doc["phase"] = self.phase
        doc.update(ename=self.ename, evalue=self.evalue, traceback=list(self.traceback))
        return self._with_variable(doc)

    def to_output(self) -> dict[str, Any]:
        """The nbformat ``error`` output appended to the failing cell's outputs."""
        return {
            "output_type": "error",
            "ename": self.ename,
            "evalue": self.evalue,
            "traceback": list(self.traceback),
        }

    def to_message(self) -> dict[str, Any]:
        """What a dead-letter message carries."""
        return self._with_variable(
            {
                "cell": self.cell,
                "ename": self.ename,
                "evalue": self.evalue,
                "traceback": list(self.traceback),
            }
        )

    def summary(self) -> dict[str, Any]:
        """What a status message carries (no traceback: status messages stay small)."""
        return self._with_variable({"cell": self.cell, "ename": self.ename, "evalue": self.evalue})

    def _with_variable(self, doc: dict[str, Any]) -> dict[str, Any]:
        if self.variable is not None:
            doc["variable"] = self.variable
        return doc

    @classmethod
    def from_json(cls, obj: object) -> ErrorRecord:
        """Read a record back, tolerating older or foreign ones (missing or odd keys)."""
        d: dict[str, Any] = obj if isinstance(obj, dict) else {}
        cell = d.get("cell")
        trace = d.get("traceback")
        return cls(
            cell=cell if isinstance(cell, int) and not isinstance(cell, bool) else None,
            ename=str(d.get("ename") or "Error"),
            evalue=str(d.get("evalue") or ""),
            traceback=[str(t) for t in trace] if isinstance(trace, list) else [],
            phase=_str_or_none(d.get("phase")),
            variable=_str_or_none(d.get("variable")),
        )

    def __str__(self) -> str:
        where = f"cell {self.cell}" if self.cell is not None else "step setup"
        return f"{where}: {self.ename}: {self.evalue}"


def _str_or_none(value: object) -> str | None:
    return value if isinstance(value, str) else None


class StepRuntimeError(Exception):
    """Base of the errors the runtime raises on purpose."""

    permanent: bool = True


class PermanentError(StepRuntimeError):
    """Retrying cannot help (bad message, bad spec, unpicklable value): dead-letter now."""

    permanent = True


class TemporaryError(StepRuntimeError):
    """May succeed later (broker away, volume hiccup, flaky user code): retry with backoff."""

    permanent = False

    def __init__(self, message: str, *, delay: float | None = None) -> None:
        super().__init__(message)
        self.delay = delay


class ConfigError(PermanentError):
    """A missing or malformed environment variable: the process stops with exit code 2."""

    def __init__(self, variable: str, problem: str) -> None:
        self.variable = variable
        super().__init__(f"{variable}: {problem}")


class SpecError(PermanentError):
    """step.json is missing, not JSON, of another version, or inconsistent."""


class MessageError(PermanentError):
    """A Kafka message that is not valid JSON of the expected shape (dead-lettered)."""

    def __init__(self, reason: str) -> None:
        self.reason = reason
        super().__init__(reason)


class StateError(TemporaryError):
    """The state volume failed to read or write (retried: volumes come back)."""


class MissingInputError(PermanentError):
    """An upstream step is not complete or did not store a variable this step needs."""


class CellError(TemporaryError):
    """The step's own code raised; carries its ErrorRecord. Retried, since notebooks often
    fail on transient causes (network, memory)."""

    def __init__(self, record: ErrorRecord, *, permanent: bool = False) -> None:
        self.record = record
        self.permanent = permanent
        super().__init__(str(record))


class OutputError(PermanentError):
    """An output variable cannot be serialized (e.g. a lock or a generator); ``variable``
    names it."""

    def __init__(self, message: str, *, variable: str | None = None) -> None:
        super().__init__(message)
        self.variable = variable
