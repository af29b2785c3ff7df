"""Rich display as in a kernel: IPython's display formatter, matplotlib figures as the inline
backend shows them, ``display``/``DisplayHandle``/``clear_output`` and the shell's display
publisher, all recording into an ``output_capture.Capture``."""

from __future__ import annotations

import base64
import contextlib
import io
import sys
import uuid
from collections.abc import Callable, Mapping
from typing import Any

from .output_capture import Capture, Output
from .shell import reset_figure_formats

_formatter: Any = None
_formatter_tried = False


def ipython_formatter() -> Any:
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
    fmt = ipython_formatter()
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


def close_figures() -> None:
    """Figures the replayed code opened are not shown (the cell that made them showed them)."""
    plt = sys.modules.get("matplotlib.pyplot")
    if plt is not None:
        with contextlib.suppress(Exception):
            plt.close("all")


def figure_outputs() -> list[Output]:
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


def display_for(capture: Capture) -> Callable[..., Any]:
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


def _publisher(capture: Capture) -> Any:
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

    def __init__(self, capture: Capture) -> None:
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


class publishing_shell:
    """Creates the IPython shell stand-in up front (so ``clear_output``,
    ``publish_display_data`` and ``set_matplotlib_formats`` find it, as in a kernel) with
    ``_Publisher`` as its display publisher."""

    def __init__(self, ns: dict[str, Any], capture: Capture) -> None:
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


class patched_display:
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
                vars(mod)["display"] = self.display

    def __exit__(self, *exc: object) -> None:
        for mod, original in self.saved:
            mod.display = original
