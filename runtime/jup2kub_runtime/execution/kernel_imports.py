"""Imports as under a kernel: pandas is given a kernel's answers to its "am I in a kernel?"
checks when it is imported, ``plt.show()`` behaves as under the inline backend, matplotlib
renders off-screen, and figures handed on between steps unpickle with this process' ids.
``install()`` before any step's code imports (idempotent)."""

from __future__ import annotations

import importlib.abc
import importlib.machinery
import os
import sys
import weakref
from collections.abc import Callable
from types import ModuleType
from typing import Any

from .output_capture import active_capture
from .rich_display import figure_outputs


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


def _inline_pyplot(pyplot: ModuleType) -> None:
    """``plt.show()`` shows the open figures there and then and closes them, as under the
    inline backend (Agg's show would do nothing and leave them open for the next plot)."""
    agg_show = pyplot.show

    def show(*args: Any, **kwargs: Any) -> None:
        capture = active_capture()
        if capture is None:
            agg_show(*args, **kwargs)
            return
        for out in figure_outputs():
            capture.add(out)

    show.__doc__ = agg_show.__doc__
    vars(pyplot)["show"] = show


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


_installed = False


def install() -> None:
    """The hooks above, and matplotlib's off-screen backend, for every later import (once)."""
    global _installed
    if _installed:
        return
    _installed = True
    # Before any user code imports matplotlib: render off-screen, like a headless kernel.
    os.environ.setdefault("MPLBACKEND", "Agg")
    _install_import_hooks()
    if "matplotlib.transforms" in sys.modules:  # imported before the runtime
        _rekeyed_transforms(sys.modules["matplotlib.transforms"])
