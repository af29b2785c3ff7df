"""``get_ipython()`` for step code: the generator translated magics and ``!cmd`` lines into
``get_ipython().run_line_magic(...)``/``.system(...)`` calls, exactly as IPython does, so
they run here through IPython's own magics when IPython is installed.

Two things differ from a plain terminal IPython, as in a Jupyter kernel: shell commands'
output goes through ``sys.stdout`` (so it is captured per cell), and ``%matplotlib`` is a
no-op because ``cell_runner`` already renders figures after each cell like the inline backend
(``%pylab`` imports its names without switching backends; ``%config InlineBackend`` works).
"""

from __future__ import annotations

import contextlib
import os
import subprocess
import sys
import tempfile
from collections.abc import Callable
from typing import Any

_SHELL: Any = None


class NoIPythonError(RuntimeError):
    pass


def _instance() -> Any:
    global _SHELL
    if _SHELL is None:
        try:
            from IPython.core.interactiveshell import InteractiveShell
            from traitlets.config import Config
        except ImportError as exc:  # pragma: no cover - images without IPython
            raise NoIPythonError(
                "this step uses IPython syntax (magics or !commands) but IPython is not "
                "installed in its environment"
            ) from exc
        # No history database or profile writes: the root filesystem may be read-only.
        os.environ.setdefault("IPYTHONDIR", tempfile.mkdtemp(prefix="jup2kub-ipython-"))
        config = Config()
        config.HistoryManager.enabled = False
        saved_hook = sys.displayhook
        shell: Any = InteractiveShell.instance(config=config)
        sys.displayhook = saved_hook
        shell.system = _system_for(shell)
        shell.register_magic_function(lambda line: None, "line", "matplotlib")
        shell.enable_matplotlib = _inline_matplotlib  # %pylab: figures as the inline backend
        _config_with_inline_backend(shell)
        _SHELL = shell
    return _SHELL


def _system_for(shell: Any) -> Callable[[str], None]:
    def system(cmd: str) -> None:
        """Run ``cmd`` in a shell, writing its output through sys.stdout/sys.stderr."""
        proc = subprocess.run(
            shell.var_expand(cmd, depth=1),
            shell=True,
            capture_output=True,
            text=True,
            check=False,
        )
        sys.stdout.write(proc.stdout)
        sys.stderr.write(proc.stderr)
        shell.user_ns["_exit_code"] = proc.returncode

    return system


_INLINE = ("inline", "module://matplotlib_inline.backend_inline")


def _inline_matplotlib(gui: str | None = None) -> tuple[str, str]:
    """What ``%pylab``'s ``enable_matplotlib`` does in a kernel, minus switching backends:
    pyplot imported (``kernel_imports`` gives it the inline backend's ``show`` and renders figures
    after each cell); the magic then imports numpy and pylab into the namespace."""
    import matplotlib.pyplot  # noqa: F401

    return _INLINE


def _config_with_inline_backend(shell: Any) -> None:
    """``%config InlineBackend...`` as in a kernel: the inline backend's configurable is
    known to the shell (created on first mention: it imports matplotlib), so setting
    ``figure_formats`` or ``print_figure_kwargs`` registers the figure formatters."""
    from IPython.core.magics.config import ConfigMagics

    magics: Any = ConfigMagics(shell=shell)  # type: ignore[no-untyped-call]
    config_magic = magics.magics["line"]["config"]

    def config(line: str) -> Any:
        if line.strip().startswith("InlineBackend"):
            from matplotlib_inline.config import InlineBackend

            cfg = InlineBackend.instance()  # a fresh kernel's defaults, not a previous run's
            cfg.shell = shell
            if cfg not in shell.configurables:
                shell.configurables.append(cfg)
        return config_magic(line)

    # not register_magic_function: "config" is a trait name of the magics holder
    shell.magics_manager.magics["line"]["config"] = config


def reset_figure_formats() -> None:
    """Back to a fresh kernel's figure formats (PNG): a step process runs many runs, and one
    run's ``%config InlineBackend`` or ``set_matplotlib_formats`` must not reach the next."""
    if _SHELL is None:
        return
    for formatter in _SHELL.display_formatter.formatters.values():
        printers = getattr(formatter, "type_printers", {})
        for kind in [k for k in printers if getattr(k, "__qualname__", "") == "Figure"]:
            del printers[kind]
    _SHELL.config.pop("InlineBackend", None)  # %config also wrote it into the shell's config
    inline = sys.modules.get("matplotlib_inline.config")
    if inline is not None and inline.InlineBackend.initialized():
        cfg = inline.InlineBackend.instance()
        if cfg in _SHELL.configurables:
            _SHELL.configurables.remove(cfg)
        inline.InlineBackend.clear_instance()


def get_ipython_for(ns: dict[str, Any]) -> Callable[[], Any]:
    """A ``get_ipython`` for namespace ``ns``; the shell is created on first use only."""

    def get_ipython() -> Any:
        shell = _instance()
        shell.user_ns = ns
        return shell

    return get_ipython


def create_shell() -> None:
    """The IPython shell stand-in every execution creates before its cells run (50 ms): done
    ahead, and before importing ahead, so that a module imported ahead finds what it would
    find when a cell imports it (``IPython.get_ipython()``, ``__IPYTHON__``)."""
    with contextlib.suppress(Exception):
        get_ipython_for({})()
