"""Executes one step's code like a Jupyter kernel would, capturing what the cells show.

One namespace per execution: the parameters cell, then the run's overrides (JSON values), the
step's inputs (loaded by the caller from the state store), the replayed definitions, then the
cells in order. Each cell's stdout/stderr, rich displays (IPython display protocol, matplotlib
figures as PNG like the inline backend) and last-expression value are recorded as nbformat
outputs, so a results notebook can be assembled later. No Kafka here: the local runner uses it.

What is shown matches a Jupyter kernel: pandas is given a kernel's answers to its "am I in a
kernel?" checks when it is imported, and ``plt.show()`` behaves as under the inline backend.
Outputs are recorded as nbclient records a kernel's messages: stdout/stderr buffered and
flushed as ipykernel does, ``clear_output`` (also ``wait=True``) and display ids
(``DisplayHandle.update``) applied to the recorded outputs, figures in the formats chosen with
``%config InlineBackend`` or ``set_matplotlib_formats``.
"""

from __future__ import annotations

import ast
import base64
import builtins
import contextlib
import ctypes
import functools
import importlib.abc
import importlib.machinery
import io
import linecache
import os
import signal
import sys
import threading
import time
import tokenize
import traceback
import uuid
import weakref
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from types import CodeType, ModuleType
from typing import Any, TextIO

from . import randomness
from .config import secret_parameters
from .errors import ConfigError, ErrorRecord
from .guards import GuardError, StepGuards
from .mapping import MapElementError, run_map
from .shell import get_ipython_for, reset_figure_formats
from .spec import StepSpec

# Before any user code imports matplotlib: render off-screen, like a headless kernel.
os.environ.setdefault("MPLBACKEND", "Agg")

Output = dict[str, Any]
_EXEC_LOCK = threading.Lock()  # sys.stdout/err are process-wide: one execution at a time


class StepTimeout(BaseException):
    """Raised inside the step's code when J2K_STEP_TIMEOUT_SECONDS has elapsed."""


@dataclass
class CellRecord:
    """What one cell produced."""

    index: int
    outputs: list[Output] = field(default_factory=list)
    seconds: float = 0.0
    execution_count: int | None = None
    #: wall-clock start (epoch seconds): the results notebook's per-cell timings
    started_at: float | None = None
    #: every display/update with a display id, in order: it rewrites earlier outputs
    #: with that id, also other steps' (the results notebook applies those)
    display_events: list[Output] = field(default_factory=list)
    display_ids: dict[str, str] = field(default_factory=dict)  # output position -> id

    def to_dict(self) -> dict[str, Any]:
        doc: dict[str, Any] = {
            "index": self.index,
            "execution_count": self.execution_count,
            "seconds": round(self.seconds, 6),
            "outputs": self.outputs,
        }
        if self.started_at is not None:
            doc["started_at"] = round(self.started_at, 6)
        if self.display_events:
            doc["display_events"] = self.display_events
        if self.display_ids:
            doc["display_ids"] = self.display_ids
        return doc


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


class _Router(io.TextIOBase):
    """Stands in for sys.stdout/err: appends text to the current cell's stream output."""

    def __init__(
        self,
        name: str,
        sink: Callable[[str, str], None],
        flush: Callable[[str], None],
        echo: TextIO | None,
    ) -> None:
        self.name = name
        self._sink = sink
        self._flush = flush
        self._echo = echo

    def writable(self) -> bool:
        return True

    def write(self, text: str) -> int:
        if not isinstance(text, str):
            raise TypeError(f"write() argument must be str, not {type(text).__name__}")
        if text:
            self._sink(self.name, text)
            if self._echo is not None:
                self._echo.write(text)
        return len(text)

    def flush(self) -> None:
        self._flush(self.name)
        if self._echo is not None:
            self._echo.flush()

    def isatty(self) -> bool:
        return False


#: ipykernel's OutStream flushes a stream this long after its first unflushed write
FLUSH_INTERVAL = 0.2


class _Capture:
    """Collects outputs for the cell being executed, as nbclient records a kernel's messages.

    Streams are buffered per stream like ipykernel's OutStream and flushed on ``flush()``,
    before any display, clear or error, when FLUSH_INTERVAL has passed since the first
    unflushed write (the kernel's timer, checked at the next event) and at the end of the
    cell (stdout first). ``clear_output(wait=True)`` clears when the next output arrives;
    outputs published with a display id are rewritten in place by later displays/updates
    with that id, as nbclient does (events also kept per cell for other steps' outputs)."""

    def __init__(self) -> None:
        self.current: list[Output] = []
        self.record: CellRecord | None = None
        self._lock = threading.RLock()
        self._pending: dict[str, list[Any]] = {}  # stream -> [text, first write time]
        self._clear_before_next = False
        self._by_id: dict[str, list[Output]] = {}

    def stream(self, name: str, text: str) -> None:
        with self._lock:
            self._timed_flush()
            pending = self._pending.setdefault(name, ["", 0.0])
            if not pending[0]:
                pending[1] = time.monotonic()
            pending[0] += text

    def _timed_flush(self) -> None:
        now = time.monotonic()
        due = [
            (t, n) for n, (text, t) in self._pending.items() if text and now - t >= FLUSH_INTERVAL
        ]
        for _, name in sorted(due):
            self.flush(name)

    def flush(self, name: str) -> None:
        with self._lock:
            pending = self._pending.get(name)
            if pending and pending[0]:
                text, pending[0] = pending[0], ""
                self._append({"output_type": "stream", "name": name, "text": text})

    def flush_all(self) -> None:
        """What ipykernel does before publishing anything and at the end of a cell."""
        with self._lock:
            self._timed_flush()
            self.flush("stdout")
            self.flush("stderr")

    def _append(self, output: Output) -> None:
        self.clear_if_pending()
        last = self.current[-1] if self.current else None
        if (
            output["output_type"] == "stream"
            and last
            and last["output_type"] == "stream"
            and last["name"] == output["name"]
        ):
            last["text"] += output["text"]
        else:
            self.current.append(output)

    def clear_if_pending(self) -> None:
        with self._lock:
            if self._clear_before_next:
                self._clear_before_next = False
                self._clear_now()

    def _clear_now(self) -> None:
        gone = {id(o) for o in self.current}
        self.current[:] = []
        for outputs in self._by_id.values():
            outputs[:] = [o for o in outputs if id(o) not in gone]

    def add(self, output: Output) -> None:
        with self._lock:
            self.flush_all()
            self._append(output)

    def clear(self, wait: bool = False) -> None:
        with self._lock:
            self.flush_all()
            if wait:
                self._clear_before_next = True
            else:
                self._clear_now()

    def publish(
        self, data: dict[str, Any], metadata: dict[str, Any], display_id: str | None, update: bool
    ) -> None:
        """A display_data (or update_display_data) message as nbclient applies it."""
        with self._lock:
            self.flush_all()
            if display_id:
                for earlier in self._by_id.get(display_id, []):
                    earlier["data"], earlier["metadata"] = dict(data), dict(metadata)
                if self.record is not None:
                    self.record.display_events.append(
                        {"display_id": display_id, "data": data, "metadata": metadata}
                    )
            if update:
                return
            output = {"output_type": "display_data", "data": data, "metadata": metadata}
            self._append(output)
            if display_id:
                self._by_id.setdefault(display_id, []).append(output)

    def display_ids(self, outputs: list[Output]) -> dict[str, str]:
        """Position (as a string, for JSON) -> display id of the outputs that have one."""
        ids = {id(o): d for d, outs in self._by_id.items() for o in outs}
        return {str(i): ids[id(o)] for i, o in enumerate(outputs) if id(o) in ids}


# ---- imports as under a kernel -----------------------------------------------------------------


class ZMQKernelLookalike:
    """What pandas asks ``get_ipython()`` to tell a Jupyter kernel from a terminal: a ``kernel``
    attribute (then display.max_columns is 20, not 0 = "fit the terminal", so wide frames are
    cut after 10 columns and wrapped, as in Jupyter) and "zmq" in the type's name (an IPython
    frontend: categories footers unwrapped, the console size from display.width)."""

    kernel = None


#: module -> globals it finds before its code runs; a kernel has them as builtins
_KERNEL_GLOBALS: dict[str, dict[str, Any]] = {
    "pandas.core.config_init": {"get_ipython": ZMQKernelLookalike},
    "pandas.io.formats.console": {"get_ipython": ZMQKernelLookalike, "__IPYTHON__": True},
}


class _SeededLoader(importlib.abc.Loader):
    """Runs a module's own loader between putting ``extra`` into the module's globals and
    calling ``after`` on the module."""

    def __init__(
        self, loader: Any, extra: dict[str, Any], after: Callable[[ModuleType], None] | None
    ) -> None:
        self._loader = loader
        self._extra = extra
        self._after = after

    def create_module(self, spec: importlib.machinery.ModuleSpec) -> ModuleType | None:
        created: ModuleType | None = self._loader.create_module(spec)
        return created

    def exec_module(self, module: ModuleType) -> None:
        module.__dict__.update(self._extra)
        self._loader.exec_module(module)
        if self._after is not None:
            self._after(module)

    def __getattr__(self, name: str) -> Any:  # get_source, get_data, ... as the real loader
        return getattr(self._loader, name)


class _KernelGlobalsFinder(importlib.abc.MetaPathFinder):
    """pandas looks at ``get_ipython``/``__IPYTHON__`` (builtins in a kernel) when it is
    imported and when it formats; this gives exactly those modules a kernel's answer, without
    putting a fake IPython where other libraries or the step's code would see it. It also
    gives pyplot the inline backend's ``show`` (``_AFTER_IMPORT``)."""

    def find_spec(
        self, fullname: str, path: Any = None, target: ModuleType | None = None
    ) -> importlib.machinery.ModuleSpec | None:
        extra, after = _KERNEL_GLOBALS.get(fullname), _AFTER_IMPORT.get(fullname)
        if extra is None and after is None:
            return None
        spec = importlib.machinery.PathFinder.find_spec(fullname, path, target)
        if spec is not None and hasattr(spec.loader, "exec_module"):
            spec.loader = _SeededLoader(spec.loader, extra or {}, after)
        return spec


def _install_import_hooks() -> None:
    if not any(isinstance(f, _KernelGlobalsFinder) for f in sys.meta_path):
        sys.meta_path.insert(0, _KernelGlobalsFinder())


# ---- rich display ------------------------------------------------------------------------------

_formatter: Any = None
_formatter_tried = False


def _ipython_formatter() -> Any:
    global _formatter, _formatter_tried
    if not _formatter_tried:
        _formatter_tried = True
        try:
            from IPython.core.formatters import DisplayFormatter

            _formatter = DisplayFormatter()
        except Exception:  # IPython missing or broken: plain fallback below
            _formatter = None
    return _formatter


_REPR_METHODS = {
    "text/html": "_repr_html_",
    "text/markdown": "_repr_markdown_",
    "text/latex": "_repr_latex_",
    "image/svg+xml": "_repr_svg_",
    "image/png": "_repr_png_",
    "image/jpeg": "_repr_jpeg_",
    "application/json": "_repr_json_",
}


def _jsonable(data: Mapping[str, Any]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for mime, value in data.items():
        if isinstance(value, bytes):
            value = base64.b64encode(value).decode("ascii")
        out[mime] = value
    return out


def format_object(obj: Any, include: Any = None, exclude: Any = None) -> tuple[Output, Output]:
    """A display bundle (data, metadata) for ``obj``, like IPython's display formatter in a
    kernel (where the inline backend adds PNG for matplotlib figures); ``include``/``exclude``
    limit the MIME types as ``display`` does."""
    if _is_figure(obj):
        return _figure_display(obj, include, exclude)
    fmt = _ipython_formatter()
    if fmt is not None:
        try:
            got_data, got_md = fmt.format(obj, include=include, exclude=exclude)
            return _jsonable(got_data), dict(got_md or {})
        except Exception:  # a broken _repr_*_ must not fail the step; fall back to repr
            pass
    data: dict[str, Any] = {}
    metadata: dict[str, Any] = {}
    bundle = getattr(obj, "_repr_mimebundle_", None)
    if callable(bundle):
        try:
            got = bundle()
            if isinstance(got, tuple):
                data.update(got[0] or {})
                metadata.update(got[1] or {})
            elif isinstance(got, dict):
                data.update(got)
        except Exception:
            pass
    for mime, method in _REPR_METHODS.items():
        fn = getattr(obj, method, None)
        if mime not in data and callable(fn) and not isinstance(obj, type):
            try:
                value = fn()
            except Exception:
                continue
            if value is not None:
                data[mime] = value
    try:
        data.setdefault("text/plain", repr(obj))
    except Exception as exc:
        data.setdefault("text/plain", f"<unrepresentable object: {exc!r}>")
    return _jsonable(data), metadata


def _is_figure(obj: Any) -> bool:
    module = sys.modules.get("matplotlib.figure")
    return module is not None and isinstance(obj, module.Figure)


def _figure_display(fig: Any, include: Any, exclude: Any) -> tuple[Output, Output]:
    try:
        data, md = _figure_bundle(fig)
    except Exception:  # a figure that cannot render shows its repr, as IPython does
        data, md = {"text/plain": repr(fig)}, {}
    keep = [m for m in data if (not include or m in include) and m not in (exclude or ())]
    return {m: data[m] for m in keep}, {m: md[m] for m in md if m in keep or m not in data}


_FIGURE_MIMES = ("image/png", "image/jpeg", "image/svg+xml", "application/pdf")


def _shell_figure_formatter() -> Any:
    """The shell's display formatter once figure formats were chosen (``%config
    InlineBackend.figure_formats``, ``set_matplotlib_formats``): IPython's
    ``select_figure_formats`` registered Figure printers on it, as in a kernel."""
    module = sys.modules.get("IPython.core.interactiveshell")
    if module is None or not module.InteractiveShell.initialized():
        return None
    fmt = module.InteractiveShell.instance().display_formatter
    figure = sys.modules["matplotlib.figure"].Figure
    for mime in _FIGURE_MIMES:
        if figure in getattr(fmt.formatters.get(mime), "type_printers", {}):
            return fmt
    return None


def _figure_bundle(fig: Any) -> tuple[dict[str, Any], dict[str, Any]]:
    """A figure as the inline backend's formatter shows it (also for ``display(fig)`` and a
    cell ending in ``fig``): PNG as IPython's ``print_figure`` draws it (or the formats the
    notebook chose), none for an empty figure, and its repr."""
    chosen = _shell_figure_formatter()
    if chosen is not None:
        got, md = chosen.format(fig)
        return _jsonable(got), dict(md or {})
    data: dict[str, Any] = {"text/plain": repr(fig)}
    if fig.axes or fig.lines:
        buf = io.BytesIO()
        fig.canvas.print_figure(
            buf,
            format="png",
            facecolor=fig.get_facecolor(),
            edgecolor=fig.get_edgecolor(),
            dpi=fig.dpi,
            bbox_inches="tight",
        )
        data["image/png"] = base64.b64encode(buf.getvalue()).decode("ascii")
    return data, {}


def _figure_metadata(fig: Any) -> dict[str, Any]:
    """matplotlib-inline's hint for a transparent figure whose tick labels are all light or
    all dark: the background the frontend must draw behind it."""
    from matplotlib import colors

    if colors.to_rgba(fig.get_facecolor())[3] >= 0.5:
        return {}
    labels = [
        label.get_color()
        for axes in fig.axes
        for axis in (axes.xaxis, axes.yaxis)
        for label in axis.get_ticklabels()
    ]
    if not labels:
        return {}
    light = colors.to_rgba_array(labels)[:, :3].dot((0.299, 0.587, 0.114)) > 0.5
    if not (light == light[0]).all():
        return {}
    return {"needs_background": "dark" if light[0] else "light"}


def _close_figures() -> None:
    """Figures the replayed code opened are not shown (the cell that made them showed them)."""
    plt = sys.modules.get("matplotlib.pyplot")
    if plt is not None:
        with contextlib.suppress(Exception):
            plt.close("all")


def _figure_outputs() -> list[Output]:
    """display_data for every open pyplot figure, then close them: what the inline backend
    shows after a cell and on ``plt.show()``."""
    plt = sys.modules.get("matplotlib.pyplot")
    if plt is None:
        return []
    outputs: list[Output] = []
    try:
        for num in plt.get_fignums():
            fig = plt.figure(num)
            data, metadata = _figure_bundle(fig)
            metadata = _merge(metadata, _figure_metadata(fig))
            outputs.append({"output_type": "display_data", "data": data, "metadata": metadata})
        plt.close("all")
    except Exception as exc:  # a figure that cannot render is reported, not fatal
        outputs.append(
            {
                "output_type": "stream",
                "name": "stderr",
                "text": f"[jup2kub] could not render a figure: {exc!r}\n",
            }
        )
    return outputs


_active_capture: _Capture | None = None  # the running execution's, for plt.show()


def _inline_pyplot(pyplot: ModuleType) -> None:
    """``plt.show()`` shows the open figures there and then and closes them, as under the
    inline backend (Agg's show would do nothing and leave them open for the next plot)."""
    agg_show = pyplot.show

    def show(*args: Any, **kwargs: Any) -> None:
        capture = _active_capture
        if capture is None:
            agg_show(*args, **kwargs)
            return
        for out in _figure_outputs():
            capture.add(out)

    show.__doc__ = agg_show.__doc__
    pyplot.show = show  # type: ignore[attr-defined]


def _rekeyed_transforms(transforms: ModuleType) -> None:
    """A figure handed on between steps is unpickled in another process: matplotlib keys a
    transform's parents by ``id()`` and its ``__setstate__`` keeps the ids of the process that
    pickled it, so a parent created here at such an address replaces an entry (and a dead one's
    callback removes it): a stale transform then draws text off by the DPI change of
    ``savefig``. Keyed by this process' ids instead, as in the notebook's one process."""
    node = transforms.TransformNode

    def __setstate__(self: Any, data_dict: dict[str, Any]) -> None:
        self.__dict__ = data_dict
        parents = {id(v): v for v in self._parents.values() if v is not None}
        self._parents = {}
        for k, v in parents.items():
            self._parents[k] = weakref.ref(v, _dropper(self._parents, k))

    node.__setstate__ = __setstate__


def _dropper(entries: dict[int, Any], key: int) -> Callable[[Any], None]:
    def drop(_ref: Any) -> None:  # the parent died: forget it
        entries.pop(key, None)

    return drop


#: module -> what to change once it is imported (see _KernelGlobalsFinder)
_AFTER_IMPORT: dict[str, Callable[[ModuleType], None]] = {
    "matplotlib.pyplot": _inline_pyplot,
    "matplotlib.transforms": _rekeyed_transforms,
}
_install_import_hooks()
if "matplotlib.transforms" in sys.modules:  # imported before the runtime
    _rekeyed_transforms(sys.modules["matplotlib.transforms"])


def _add_error_output(outputs: list[Output], error: Output, figures: list[Output]) -> None:
    """A kernel shows a cell's error before the figures the inline backend flushes after the
    cell (a post-execute hook, which runs even when the cell raised); the error is an output
    like any other for a pending ``clear_output(wait=True)``."""
    capture = _active_capture
    if capture is not None and capture.current is outputs:
        capture.clear_if_pending()
    outputs.insert(len(outputs) - len(figures), error)


# ---- execution ---------------------------------------------------------------------------------


def _error_record(exc: BaseException, cell: int | None, phase: str) -> ErrorRecord:
    """The step code's exception, its traceback without this module's frames."""
    te = traceback.TracebackException.from_exception(exc)
    here = os.path.abspath(__file__)
    te.stack = traceback.StackSummary.from_list(
        [f for f in te.stack if os.path.abspath(f.filename) != here]
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


def warm_up(
    spec: StepSpec, *, imports: bool = True, restart: Callable[[str], None] | None = None
) -> None:
    """What every execution of ``spec`` needs, done ahead (a step process calls it while it
    joins its consumer group): IPython's display machinery imported, the cells compiled, the
    IPython shell stand-in created and, with ``imports``, the installed modules the cells
    import, where that is quiet (``preimport``: a noisy one restarts the process without it,
    or is handed to ``restart``). Holds the execution lock meanwhile: an execution waits, and
    the capture of the imports' output sees no cell's."""
    with contextlib.suppress(Exception):
        import IPython.display  # noqa: F401
    _ipython_formatter()
    sources = [("<parameters>", spec.parameters_source)] if spec.parameters_source else []
    sources += [(f"<cell {c.cell}>", c.source) for c in spec.replay]
    sources += [(f"<cell {c.index}>", c.source) for c in spec.cells]
    for filename, source in sources:
        with contextlib.suppress(Exception):  # a syntax error is reported when the run hits it
            _compile_source(source, filename)
    with _EXEC_LOCK:
        create_shell()
        if imports:
            from . import preimport  # not at the top: preimport imports this module first

            preimport.warm([spec], alone=False, restart=restart or preimport.restart_without)


def create_shell() -> None:
    """The IPython shell stand-in every execution creates before its cells run (50 ms): done
    ahead, and before importing ahead, so that a module imported ahead finds what it would
    find when a cell imports it (``IPython.get_ipython()``, ``__IPYTHON__``)."""
    with contextlib.suppress(Exception):
        get_ipython_for({})()


def _run_source(source: str, filename: str, ns: dict[str, Any]) -> tuple[bool, Any]:
    """exec ``source``; if it ends in an expression, eval that and return (True, value)."""
    body, last = _compile_source(source, filename)
    linecache.cache[filename] = (len(source), None, source.splitlines(True), filename)
    exec(body, ns)
    if last is None:
        return False, None
    value = eval(last, ns)
    return not _ends_in_semicolon(source), value


def _run_cell(
    spec: StepSpec, index: int, source: str, ns: dict[str, Any], capture: _Capture
) -> tuple[bool, Any]:
    """A cell as ``_run_source`` runs it; a map cell's elements in parallel (``mapping``)."""
    filename = f"<cell {index}>"
    for map_spec in spec.maps:
        if map_spec.cell == index:
            return run_map(map_spec, ns, filename, source, _run_source, capture)
    return _run_source(source, filename, ns)


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
    inputs, random_state = randomness.split_state(inputs)
    guards = StepGuards(spec) if guards is None else guards
    capture = _Capture()
    ns: dict[str, Any] = {"__name__": "__main__", "__builtins__": builtins}
    cells: list[CellRecord] = []
    error: ErrorRecord | None = None
    permanent = False
    figures: list[Output] = []  # the last cell's, shown after its error
    random_out: dict[str, Any] = {}
    started = time.time()

    display = _display_for(capture)
    ns["display"] = display
    ns["get_ipython"] = get_ipython_for(ns)
    with (
        _EXEC_LOCK,
        _Timer(timeout),
        _patched_io(capture, echo),
        _patched_display(display),
        _publishing_shell(ns, capture),
    ):
        phase, cell_no = "parameters", None
        try:
            guards.start(inputs)
            if spec.parameters_source:
                _run_source(spec.parameters_source, "<parameters>", ns)
            phase = "overrides"
            ns.update(overrides)
            phase = "secret parameters"
            ns.update(secret_parameters(spec.secret_parameters))
            ns.update(inputs)
            phase = "replay"
            for rep in spec.replay:
                cell_no = rep.cell
                _run_source(rep.source, f"<cell {rep.cell}>", ns)
            capture.flush_all()  # what the replay printed belongs to no cell: dropped
            capture.current = []
            _close_figures()
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
                finally:
                    capture.flush_all()  # before the error or figures, as ipykernel does
                    figures = _figure_outputs()
                    for out in figures:
                        capture.add(out)
                    capture.flush_all()
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
            # a map's element was retried already, on its own (``mapping``)
            permanent = isinstance(exc, (SyntaxError, ConfigError, MapElementError))
            if cells and phase == "cell":
                _add_error_output(cells[-1].outputs, error.to_output(), figures)
    values: dict[str, Any] = {}
    if error is None:
        missing = [v for v in spec.outputs if v not in ns and v != randomness.RANDOM_STATE]
        if missing:
            error = ErrorRecord(
                None,
                "NameError",
                f"step {spec.step!r} did not define output(s) {', '.join(missing)}",
                phase="outputs",
            )
            permanent = True
        else:
            values = {v: ns[v] for v in spec.outputs if v != randomness.RANDOM_STATE}
            if randomness.RANDOM_STATE in spec.outputs:
                values[randomness.RANDOM_STATE] = random_out
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


def _display_for(capture: _Capture) -> Callable[..., Any]:
    """IPython's ``display`` as a kernel runs it (same arguments; a DisplayHandle back when
    given a display id), recording into ``capture``."""

    def display(
        *objs: Any,
        include: Any = None,
        exclude: Any = None,
        metadata: dict[str, Any] | None = None,
        transient: dict[str, Any] | None = None,
        display_id: Any = None,
        raw: bool = False,
        clear: bool = False,
        update: bool = False,
        **_: Any,
    ) -> Any:
        transient = dict(transient or {})
        if display_id:
            transient["display_id"] = uuid.uuid4().hex if display_id is True else display_id
        shown_id = transient.get("display_id")
        if update and not shown_id:
            raise TypeError("display_id required for update_display")
        if not objs and shown_id:
            objs, raw = ({},), True
        if clear:
            _publisher(capture).clear_output(wait=True)
        for obj in objs:
            if raw:
                data, md = _jsonable(obj), dict(metadata or {})
            else:
                data, md = format_object(obj, include=include, exclude=exclude)
                if not data:
                    continue  # _ipython_display_ showed it itself
                if metadata:
                    md = _merge(md, metadata)
            _publisher(capture).publish(data, md, transient=transient or None, update=update)
        return _display_handle(str(shown_id)) if display_id else None

    return display


def _merge(into: Any, new: Any) -> Any:
    """``display(..., metadata=...)`` merges as IPython does: nested dicts key by key."""
    if not isinstance(into, dict) or not isinstance(new, dict):
        return new
    for key, value in new.items():
        into[key] = _merge(into.get(key), value)
    return into


def _publisher(capture: _Capture) -> Any:
    """Where ``display`` publishes, as IPython's does: the shell's display publisher (ours,
    or one that ``IPython.utils.capture.capture_output`` put in its place)."""
    module = sys.modules.get("IPython.core.interactiveshell")
    if module is not None and module.InteractiveShell.initialized():
        return module.InteractiveShell.instance().display_pub
    return _Publisher(capture)


def _display_handle(display_id: str) -> Any:
    try:
        from IPython.core.display_functions import DisplayHandle
    except Exception:  # no IPython: nothing to update it with anyway
        return None
    return DisplayHandle(display_id)  # type: ignore[no-untyped-call]


class _Publisher:
    """The shell's ``display_pub`` while a step runs: ``publish_display_data``,
    ``clear_output`` and anything else publishing through the shell record into the cell."""

    is_publishing = False

    def __init__(self, capture: _Capture) -> None:
        self._capture = capture

    def publish(
        self,
        data: dict[str, Any],
        metadata: dict[str, Any] | None = None,
        source: Any = None,
        *,
        transient: dict[str, Any] | None = None,
        update: bool = False,
        **_: Any,
    ) -> None:
        display_id = (transient or {}).get("display_id")
        self._capture.publish(_jsonable(data), dict(metadata or {}), display_id, update)

    def clear_output(self, wait: bool = False) -> None:
        self._capture.clear(wait)


class _publishing_shell:
    """Creates the IPython shell stand-in up front (so ``clear_output``,
    ``publish_display_data`` and ``set_matplotlib_formats`` find it, as in a kernel) with
    ``_Publisher`` as its display publisher."""

    def __init__(self, ns: dict[str, Any], capture: _Capture) -> None:
        self.ns = ns
        self.capture = capture
        self.shell: Any = None

    def __enter__(self) -> None:
        try:
            shell = self.ns["get_ipython"]()
            reset_figure_formats()
        except Exception:  # no IPython: the plain display above still works
            return
        self.shell = shell
        self.saved = shell.display_pub
        shell.display_pub = _Publisher(self.capture)
        # as inside a kernel's run_cell: a nested run_cell (``%%capture``) keeps the
        # displayhook in place (capture_output's) instead of setting the terminal's
        shell.display_trap.__enter__()

    def __exit__(self, *exc: object) -> None:
        if self.shell is not None:
            self.shell.display_trap.__exit__(None, None, None)
            self.shell.display_pub = self.saved


class _patched_io:
    def __init__(self, capture: _Capture, echo: bool) -> None:
        self.capture = capture
        self.echo = echo

    def __enter__(self) -> None:
        global _active_capture
        _active_capture = self.capture
        self.saved = (sys.stdout, sys.stderr)
        out, err = self.saved if self.echo else (None, None)
        sys.stdout = _Router("stdout", self.capture.stream, self.capture.flush, out)
        sys.stderr = _Router("stderr", self.capture.stream, self.capture.flush, err)

    def __exit__(self, *exc: object) -> None:
        global _active_capture
        _active_capture = None
        sys.stdout, sys.stderr = self.saved


class _patched_display:
    """Makes IPython's ``display`` (imported by the step's code) record into our capture."""

    TARGETS = ("IPython.display", "IPython.core.display_functions", "IPython.core.display")

    def __init__(self, display: Callable[..., None]) -> None:
        self.display = display
        self.saved: list[tuple[Any, Any]] = []

    def __enter__(self) -> None:
        try:
            import IPython.display  # noqa: F401 - make sure the modules exist to patch
        except Exception:
            return
        for name in self.TARGETS:
            mod = sys.modules.get(name)
            if mod is not None and hasattr(mod, "display"):
                self.saved.append((mod, mod.display))
                mod.display = self.display  # type: ignore[attr-defined]

    def __exit__(self, *exc: object) -> None:
        for mod, original in self.saved:
            mod.display = original  # type: ignore[attr-defined]
