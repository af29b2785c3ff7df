"""Runtime errors, classified like kopf's: permanent ones are dead-lettered at once, temporary
ones are retried with exponential backoff (then dead-lettered once the retries are spent).
"""

from __future__ import annotations

from typing import Any


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
    """The step's own code raised; carries the nbformat-style error (cell, ename, evalue,
    traceback). Retried, since notebooks often fail on transient causes (network, memory)."""

    def __init__(self, info: dict[str, Any], *, permanent: bool = False) -> None:
        self.info = info
        self.permanent = permanent
        where = f"cell {info.get('cell')}" if info.get("cell") is not None else "step setup"
        super().__init__(f"{where}: {info.get('ename')}: {info.get('evalue')}")


class OutputError(PermanentError):
    """An output variable is missing or cannot be serialized (e.g. a lock or a generator)."""
