"""Errors the user can act on.

Every error says what is wrong, where (notebook, cell, line, step, variable) and what to do.
``InputError`` subclasses mean bad input or usage: the CLI exits with code 2 for them and never
shows a traceback. Anything else is a bug in Jup2Kub or the environment (exit code 1).
"""

from __future__ import annotations

import shlex
from collections.abc import Sequence


class Jup2KubError(Exception):
    """Base of all errors Jup2Kub raises on purpose."""

    exit_code = 1

    def __init__(self, what: str, *, where: str | None = None, hint: str | None = None) -> None:
        self.what = what
        self.where = where
        self.hint = hint
        super().__init__(self.message)

    @property
    def message(self) -> str:
        text = f"{self.where}: {self.what}" if self.where else self.what
        if self.hint:
            text += f"\n  hint: {self.hint}"
        return text

    def __str__(self) -> str:
        return self.message


class Terminated(BaseException):
    """SIGTERM (or SIGHUP) arrived: raised like KeyboardInterrupt, so that every ``finally``
    on the way out runs (child processes are ended, files closed)."""

    def __init__(self, signum: int) -> None:
        self.signum = signum
        super().__init__(f"signal {signum}")


class RunInterrupted(Jup2KubError):
    """A run was stopped by Ctrl-C or a signal: its completed steps are kept and it can be
    resumed. Exit code 128 + the signal's number (130 for Ctrl-C, 143 for SIGTERM)."""

    def __init__(
        self, run_id: str, workdir: str, signum: int, *, notebook: str, resumable: bool
    ) -> None:
        self.run_id = run_id
        self.workdir = workdir
        self.signum = signum
        self.resumable = resumable
        self.exit_code = 128 + signum
        super().__init__(
            f"run {run_id} was interrupted ({_signal_name(signum)}); every step process has "
            "ended, and the steps that completed are kept",
            where=workdir,
            hint=(
                "complete it, reusing what completed and did not change: "
                + shlex.join(["jup2kub", "run", notebook, "--workdir", workdir])
                + f" --resume {run_id}"
                if resumable
                else "start the run again"
            ),
        )


def _signal_name(signum: int) -> str:
    import signal

    try:
        return signal.Signals(signum).name
    except ValueError:
        return f"signal {signum}"


class DeployError(Jup2KubError):
    """The release could not be installed or did not become ready."""


class ClusterError(Jup2KubError):
    """The cluster cannot be reached with the given kubeconfig/context, or its API refused.

    ``status`` and ``body`` are the API server's answer, when there was one."""

    def __init__(
        self,
        what: str,
        *,
        where: str | None = None,
        hint: str | None = None,
        status: int | None = None,
        body: str | None = None,
    ) -> None:
        super().__init__(what, where=where, hint=hint)
        self.status = status
        self.body = body


class KafkaUnavailableError(Jup2KubError):
    """The broker did not answer (a temporary condition: retry later)."""


class RunStorageError(Jup2KubError):
    """The work directory ran out of space or became unwritable during a run."""


class ImageBuildError(Jup2KubError):
    """The engine failed to build or push an image (exit code 1: see the build log)."""


class InputError(Jup2KubError):
    """The notebook, a values file or a command-line argument is wrong (exit code 2)."""

    exit_code = 2


class ValuesError(InputError):
    """A values file is unreadable, or the chart's schema rejects the values."""


class UsageError(InputError):
    """The command line asks for something impossible."""


class RegistryError(InputError):
    """An OCI registry refused or could not be reached (unreachable, asks for credentials that
    were not given, names no such artifact); ``registry`` is its host."""

    def __init__(self, registry: str, what: str, *, hint: str | None = None) -> None:
        self.registry = registry
        super().__init__(what, where=registry, hint=hint)


class SignatureError(InputError):
    """A signature is missing, made with another key, or does not match what it signs;
    ``subject`` names the image or chart."""

    def __init__(self, subject: str, what: str, *, hint: str | None = None) -> None:
        self.subject = subject
        super().__init__(what, where=subject, hint=hint)


class NotebookReadError(InputError):
    """The file is missing, not JSON, or not a notebook Jupyter could open; ``cell`` is the
    index of the broken cell, when one is to blame."""

    def __init__(
        self, path: str, reason: str, *, hint: str | None = None, cell: int | None = None
    ) -> None:
        self.path = path
        self.reason = reason
        self.cell = cell
        super().__init__(
            f"not a readable Jupyter notebook: {reason}",
            where=path if cell is None else f"{path}: cell {cell}",
            hint=hint or "pass an .ipynb file saved by Jupyter (nbformat 4)",
        )


class NotebookRepairedWarning(UserWarning):
    """The notebook deviates from nbformat in a way Jupyter tolerates; it was repaired on
    reading (the file itself is left alone). The CLI prints it as a ``warning:`` line."""


class UnsupportedKernelError(InputError):
    """Only Python notebooks can be analysed and run."""

    def __init__(self, path: str, language: str) -> None:
        self.path = path
        self.language = language
        super().__init__(
            f"the notebook's kernel language is {language!r}; only Python notebooks are supported",
            where=path,
            hint="switch the notebook to a Python 3 kernel, or set metadata.kernelspec.language",
        )


class CellSyntaxError(InputError):
    """A code cell does not parse, even after IPython syntax is translated."""

    def __init__(
        self,
        path: str,
        cell_index: int,
        line: int,
        column: int,
        reason: str,
        text: str | None = None,
    ) -> None:
        self.path = path
        self.cell_index = cell_index
        self.line = line
        self.column = column
        self.reason = reason
        self.text = text
        what = f"syntax error: {reason}"
        if text:
            what += f"\n    {text.rstrip()}"
        super().__init__(
            what,
            where=f"{path}: cell {cell_index}, line {line}",
            hint="fix the cell so that it runs in Jupyter, then try again",
        )


class SplitError(InputError):
    """The notebook cannot be cut into a valid step graph."""


class UnknownStepError(SplitError):
    """A ``prev:`` tag names a step that does not exist."""

    def __init__(self, path: str, cell_index: int, step: str, target: str, known: Sequence[str]):
        self.path = path
        self.cell_index = cell_index
        self.step = step
        self.target = target
        self.known = list(known)
        super().__init__(
            f"step {step!r} says prev:{target}, but there is no step named {target!r}",
            where=f"{path}: cell {cell_index}",
            hint="known steps: "
            + (", ".join(self.known) or "(none)")
            + "; fix the tag or name a step so",
        )


class DuplicateStepError(SplitError):
    """Two separate groups of cells claim the same step name."""

    def __init__(self, path: str, name: str, cells: Sequence[int]) -> None:
        self.path = path
        self.name = name
        self.cells = list(cells)
        super().__init__(
            f"step name {name!r} is used by separate groups of cells "
            f"(cells {', '.join(map(str, self.cells))})",
            where=path,
            hint="give each step a unique name; to put cells into one step, place them together",
        )


class CycleError(SplitError):
    """Explicit ``prev:`` edges close a cycle."""

    def __init__(self, path: str, cycle: Sequence[str]) -> None:
        self.path = path
        self.cycle = list(cycle)
        super().__init__(
            "the steps depend on each other in a cycle: " + " -> ".join(self.cycle),
            where=path,
            hint="remove one of the prev: tags on this cycle",
        )


class NoCodeError(SplitError):
    """There is nothing to run."""

    def __init__(self, path: str, detail: str = "the notebook has no code cells") -> None:
        self.path = path
        super().__init__(detail, where=path, hint="add code cells (or untag skipped ones)")


class CatalogError(InputError):
    """The step catalog cannot be opened or used (bad URL, unreachable server, unknown step)."""


class CompositionError(InputError):
    """A composition file is malformed or its wiring is wrong (names the line, step, variable)."""


class MapRefusedError(SplitError):
    """A cell marked ``map`` cannot run its iterations apart with the notebook's results."""

    def __init__(
        self,
        path: str,
        cell: int,
        line: int | None,
        what: str,
        *,
        variable: str | None = None,
        hint: str | None = None,
    ) -> None:
        self.path = path
        self.cell = cell
        self.line = line
        self.variable = variable
        where = f"{path}: cell {cell}" + (f", line {line}" if line is not None else "")
        super().__init__(
            f"map cell: {what}",
            where=where,
            hint=hint
            or "remove '#| map: true' (or the map tag) to run the loop as written, in one process",
        )
