"""Executes one step's code like a Jupyter kernel would, capturing what the cells show.

One namespace per execution: the parameters cell, then the run's overrides (JSON values), the
step's inputs (loaded by the caller from the state store), the replayed definitions, then the
cells in order. Each cell's stdout/stderr, rich displays (IPython display protocol, matplotlib
figures as PNG like the inline backend) and last-expression value are recorded as nbformat
outputs, so a results notebook can be assembled later. No Kafka here: the local runner uses it.

What is shown matches a Jupyter kernel: pandas is given a kernel's answers to its "am I in a
kernel?" checks when it is imported, and ``plt.show()`` behaves as under the inline backend
(``kernel_imports``). Outputs are recorded as nbclient records a kernel's messages
(``output_capture``): stdout/stderr buffered and flushed as ipykernel does, ``clear_output``
(also ``wait=True``) and display ids (``DisplayHandle.update``) applied to the recorded
outputs, figures in the formats chosen with ``%config InlineBackend`` or
``set_matplotlib_formats`` (``rich_display``).
"""

from __future__ import annotations

import ast
import builtins
import contextlib
import ctypes
import functools
import io
import linecache
import os
import signal
import threading
import time
import tokenize
import traceback
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from types import CodeType
from typing import Any

from ..contract.config import secret_parameters
from ..contract.errors import ConfigError, ErrorRecord
from ..contract.spec import StepSpec
from . import kernel_imports, output_capture, randomness, rich_display
from .guards import GuardError, StepGuards
from .map_chunks import MapElementError, run_map
from .output_capture import Capture, CellRecord, Output, active_capture, patched_io
from .placeholders import Unbound, bound
from .rich_display import (
    close_figures,
    display_for,
    figure_outputs,
    format_object,
    ipython_formatter,
    patched_display,
    publishing_shell,
)
from .shell import get_ipython_for

kernel_imports.install()  # before any step's code imports: the hooks, MPLBACKEND

_EXEC_LOCK = threading.Lock()  # sys.stdout/err are process-wide: one execution at a time


class StepTimeout(BaseException):
    """Raised inside the step's code when J2K_STEP_TIMEOUT_SECONDS has elapsed."""


@dataclass
class ExecutionResult:
    """Outcome of ``execute_step``: output values when it succeeded, else ``error``."""

    step: str
    values: dict[str, Any]
    cells: list[CellRecord]
    error: ErrorRecord | None
    started_at: float
    finished_at: float
    parameters: dict[str, Any] = field(default_factory=dict)
    permanent: bool = False  # a failure that retrying cannot fix (syntax error, missing output)

    @property
    def ok(self) -> bool:
        return self.error is None

    @property
    def seconds(self) -> float:
        return self.finished_at - self.started_at

    def outputs_document(self) -> dict[str, Any]:
        """The ``outputs.json`` content: per-cell nbformat outputs, plus the error if any."""
        return {
            "version": 1,
            "step": self.step,
            "parameters": self.parameters,
            "cells": [c.to_dict() for c in self.cells],
            "error": None if self.error is None else self.error.to_json(),
        }

    def timing(self) -> dict[str, Any]:
        return {
            "started_at": self.started_at,
            "finished_at": self.finished_at,
            "seconds": round(self.seconds, 6),
            "cells": {str(c.index): round(c.seconds, 6) for c in self.cells},
        }


def _add_error_output(outputs: list[Output], error: Output, figures: list[Output]) -> None:
    """A kernel shows a cell's error before the figures the inline backend flushes after the
    cell (a post-execute hook, which runs even when the cell raised); the error is an output
    like any other for a pending ``clear_output(wait=True)``."""
    capture = active_capture()
    if capture is not None and capture.current is outputs:
        capture.clear_if_pending()
    outputs.insert(len(outputs) - len(figures), error)


# ---- execution ---------------------------------------------------------------------------------


#: the modules executing a step's code: their frames are left out of its tracebacks
_OWN_FILES = frozenset(
    os.path.abspath(path)
    for path in (__file__, output_capture.__file__, rich_display.__file__, kernel_imports.__file__)
)


def _allowed(exc: BaseException) -> bool:
    """Whether a cell tagged ``raises-exception`` may raise ``exc`` and the step go on: any
    exception of the cell's code, as in a kernel; not the step's time limit, a failed check of
    the analysis' assumptions (Jup2Kub's own, not the notebook's) nor an interrupt (Ctrl-C
    ends the run's step processes)."""
    return not isinstance(exc, (StepTimeout, GuardError, KeyboardInterrupt))


def _error_record(exc: BaseException, cell: int | None, phase: str) -> ErrorRecord:
    """The step code's exception, its traceback without this module's frames."""
    te = traceback.TracebackException.from_exception(exc)
    te.stack = traceback.StackSummary.from_list(
        [f for f in te.stack if os.path.abspath(f.filename) not in _OWN_FILES]
    )
    return ErrorRecord(
        cell,
        type(exc).__name__,
        str(exc),
        "".join(te.format()).rstrip("\n").split("\n"),
        phase=phase,
    )


@functools.lru_cache(maxsize=512)
def _compile_source(source: str, filename: str) -> tuple[CodeType, CodeType | None]:
    """The code of ``source`` without its last expression, and that expression's code (None
    if it does not end in one). Cached: a step process runs the same cells for every run."""
    tree = ast.parse(source, filename, "exec")
    last: ast.Expression | None = None
    tail = tree.body[-1] if tree.body else None
    if isinstance(tail, ast.Expr):
        tree.body.pop()
        last = ast.Expression(tail.value)
    # dont_inherit: this module's ``from __future__ import annotations`` must not turn the
    # notebook's annotations into strings (a kernel evaluates them)
    body = compile(tree, filename, "exec", dont_inherit=True)
    return body, None if last is None else compile(last, filename, "eval", dont_inherit=True)


def prepare(spec: StepSpec) -> None:
    """What every execution of ``spec`` needs that can be done ahead without the execution lock:
    IPython's display machinery imported, the cells compiled (``preimport.warm_up`` does the
    rest)."""
    with contextlib.suppress(Exception):
        import IPython.display  # noqa: F401
    ipython_formatter()
    sources = [("<parameters>", spec.parameters_source)] if spec.parameters_source else []
    sources += [(f"<cell {c.cell}>", c.source) for c in spec.replay]
    sources += [(f"<cell {c.index}>", c.source) for c in spec.cells]
    for filename, source in sources:
        with contextlib.suppress(Exception):  # a syntax error is reported when the run hits it
            _compile_source(source, filename)


def execution_lock() -> threading.Lock:
    """Held by an execution (sys.stdout/err are process-wide) and by a warm-up."""
    return _EXEC_LOCK


def run_source(source: str, filename: str, ns: dict[str, Any]) -> tuple[bool, Any]:
    """exec ``source``; if it ends in an expression, eval that and return (True, value)."""
    body, last = _compile_source(source, filename)
    linecache.cache[filename] = (len(source), None, source.splitlines(True), filename)
    exec(body, ns)
    if last is None:
        return False, None
    value = eval(last, ns)
    return not _ends_in_semicolon(source), value


def _run_cell(
    spec: StepSpec, index: int, source: str, ns: dict[str, Any], capture: Capture
) -> tuple[bool, Any]:
    """A cell as ``run_source`` runs it; a map cell's elements in parallel (``map_chunks``)."""
    filename = f"<cell {index}>"
    for map_spec in spec.maps:
        if map_spec.cell == index:
            return run_map(map_spec, ns, filename, source, run_source, capture)
    return run_source(source, filename, ns)


_QUIET_SKIP = frozenset(
    {tokenize.ENDMARKER, tokenize.NL, tokenize.NEWLINE, tokenize.COMMENT, tokenize.INDENT}
)


@functools.lru_cache(maxsize=512)
def _ends_in_semicolon(source: str) -> bool:
    """IPython hides the value of a cell whose last token is ';', comments aside
    (``df.plot();  # no repr``), as its DisplayHook.semicolon_at_end_of_expression does."""
    try:
        tokens = list(tokenize.generate_tokens(io.StringIO(source).readline))
    except (tokenize.TokenError, SyntaxError):
        return source.rstrip().endswith(";")
    for token in reversed(tokens):
        if token.type in _QUIET_SKIP or token.type == tokenize.DEDENT:
            continue
        return token.type == tokenize.OP and token.string == ";"
    return False


class _Timer:
    """Raises StepTimeout in the executing thread once ``seconds`` have elapsed."""

    def __init__(self, seconds: float | None) -> None:
        self.seconds = seconds if seconds and seconds > 0 else None
        self._timer: threading.Timer | None = None
        self._old: Any = None

    def __enter__(self) -> _Timer:
        if self.seconds is None:
            return self
        if threading.current_thread() is threading.main_thread():
            # A signal interrupts blocking calls too (time.sleep, socket reads).
            self._old = signal.signal(signal.SIGALRM, self._on_alarm)
            signal.setitimer(signal.ITIMER_REAL, self.seconds)
        else:
            ident = threading.get_ident()
            self._timer = threading.Timer(self.seconds, self._inject, args=(ident,))
            self._timer.daemon = True
            self._timer.start()
        return self

    def _on_alarm(self, signum: int, frame: Any) -> None:
        raise StepTimeout(f"step exceeded its time limit of {self.seconds:g}s")

    def _inject(self, ident: int) -> None:
        ctypes.pythonapi.PyThreadState_SetAsyncExc(
            ctypes.c_ulong(ident), ctypes.py_object(StepTimeout)
        )

    def __exit__(self, *exc: object) -> None:
        if self._timer is not None:
            self._timer.cancel()
        if self._old is not None:
            signal.setitimer(signal.ITIMER_REAL, 0)
            signal.signal(signal.SIGALRM, self._old)


def execute_step(
    spec: StepSpec,
    inputs: Mapping[str, Any],
    overrides: Mapping[str, Any] | None = None,
    *,
    echo: bool = False,
    timeout: float | None = None,
    guards: StepGuards | None = None,
    on_cell: Callable[[int, CellRecord | None], None] | None = None,
) -> ExecutionResult:
    """Run the step's code in a fresh namespace and return its outputs and captured cells.

    ``on_cell(index, previous)`` runs before each cell with the record of the cell before it
    (None for the first): a process killed by a signal leaves that much behind.

    Never raises for errors in the step's code: they come back as ``result.error`` (with the
    cell index), so the caller decides between retry and dead-letter. The global random state
    (``randomness.RANDOM_STATE`` among ``inputs``) is restored after the replay, and captured
    as an output if ``spec.outputs`` names it; ``guards`` (default: the spec's checks with the
    default settings) check what the analysis assumed.
    """
    overrides = dict(overrides or {})
    inputs, random_state = randomness.split_state(bound(inputs))
    guards = StepGuards(spec) if guards is None else guards
    capture = Capture()
    ns: dict[str, Any] = {"__name__": "__main__", "__builtins__": builtins}
    cells: list[CellRecord] = []
    error: ErrorRecord | None = None
    permanent = False
    figures: list[Output] = []  # the last cell's, shown after its error
    allowed_errors: list[ErrorRecord] = []  # raised in cells tagged raises-exception
    random_out: dict[str, Any] = {}
    started = time.time()

    display = display_for(capture)
    ns["display"] = display
    ns["get_ipython"] = get_ipython_for(ns)
    with (
        _EXEC_LOCK,
        _Timer(timeout),
        patched_io(capture, echo),
        patched_display(display),
        publishing_shell(ns, capture),
    ):
        phase, cell_no = "parameters", None
        try:
            guards.start(inputs)
            if spec.parameters_source:
                run_source(spec.parameters_source, "<parameters>", ns)
            phase = "overrides"
            ns.update(overrides)
            phase = "secret parameters"
            ns.update(secret_parameters(spec.secret_parameters))
            ns.update(inputs)
            phase = "replay"
            for rep in spec.replay:
                cell_no = rep.cell if rep.cell >= 0 else None  # no cell holds the code
                run_source(rep.source, f"<cell {rep.cell}>", ns)
            capture.flush_all()  # what the replay printed belongs to no cell: dropped
            capture.current = []
            close_figures()
            phase, cell_no = "random-state", None
            if random_state is not None:
                randomness.restore(random_state)
            guards.before_cells()
            phase = "cell"
            for count, cell in enumerate(spec.cells, start=1):
                if on_cell is not None:
                    on_cell(cell.index, cells[-1] if cells else None)
                figures = []
                cell_no = cell.index
                record = CellRecord(index=cell.index, execution_count=count, started_at=time.time())
                capture.current, capture.record = record.outputs, record
                cells.append(record)
                t0 = time.perf_counter()
                allowed: ErrorRecord | None = None
                try:
                    shown, value = _run_cell(spec, cell.index, cell.source, ns, capture)
                    if shown and value is not None:
                        data, md = format_object(value)
                        capture.add(
                            {
                                "output_type": "execute_result",
                                "execution_count": count,
                                "data": data,
                                "metadata": md,
                            }
                        )
                    guards.after_cell(cell.index)
                except BaseException as exc:
                    if not (cell.allows_errors and _allowed(exc)):
                        raise
                    allowed = _error_record(exc, cell.index, "cell")
                    allowed_errors.append(allowed)
                    guards.after_cell(cell.index)  # what it changed before raising counts too
                finally:
                    capture.flush_all()  # before the error or figures, as ipykernel does
                    figures = figure_outputs()
                    for out in figures:
                        capture.add(out)
                    capture.flush_all()
                    if allowed is not None:
                        _add_error_output(record.outputs, allowed.to_output(), figures)
                    record.display_ids = capture.display_ids(record.outputs)
                    record.seconds = time.perf_counter() - t0
            guards.after_cells()
            random_out = randomness.capture()
        except GuardError as exc:  # the analysis' assumption broke: retrying cannot help
            error, permanent = exc.record, True
            if cells:
                _add_error_output(cells[-1].outputs, error.to_output(), figures)
        except BaseException as exc:  # the step's code may raise anything, even SystemExit
            error = _error_record(exc, cell_no, phase)
            # a map's element was retried already, on its own (``map_chunks``)
            permanent = isinstance(exc, (SyntaxError, ConfigError, MapElementError))
            if cells and phase == "cell":
                _add_error_output(cells[-1].outputs, error.to_output(), figures)
    values: dict[str, Any] = {}
    if error is None:
        values, error = _output_values(spec, ns, random_out, unbound_ok=bool(allowed_errors))
        permanent = error is not None
    return ExecutionResult(
        step=spec.step,
        values=values,
        cells=cells,
        error=error,
        started_at=started,
        finished_at=time.time(),
        parameters=overrides,
        permanent=permanent,
    )


def _output_values(
    spec: StepSpec, ns: dict[str, Any], random_out: dict[str, Any], *, unbound_ok: bool
) -> tuple[dict[str, Any], ErrorRecord | None]:
    """The step's outputs from its namespace, or the error naming those it did not define.
    ``unbound_ok``: a cell tagged ``raises-exception`` raised, maybe before binding some; those
    are handed on as ``Unbound`` (a later step reading one gets the notebook's NameError)."""
    missing = [v for v in spec.outputs if v not in ns and v != randomness.RANDOM_STATE]
    if missing and not unbound_ok:
        message = f"step {spec.step!r} did not define output(s) {', '.join(missing)}"
        return {}, ErrorRecord(None, "NameError", message, phase="outputs")
    values = {
        v: ns[v] if v in ns else Unbound(v, spec.step)
        for v in spec.outputs
        if v != randomness.RANDOM_STATE
    }
    if randomness.RANDOM_STATE in spec.outputs:
        values[randomness.RANDOM_STATE] = random_out
    return values, None


def release_after_fork() -> None:
    """In a process forked while another thread may hold the execution lock: a fresh one."""
    global _EXEC_LOCK
    _EXEC_LOCK = threading.Lock()
