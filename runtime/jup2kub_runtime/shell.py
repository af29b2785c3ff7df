"""``get_ipython()`` for step code: the generator translated magics and ``!cmd`` lines into
``get_ipython().run_line_magic(...)``/``.system(...)`` calls, exactly as IPython does, so
they run here through IPython's own magics when IPython is installed.

Two things differ from a plain terminal IPython, as in a Jupyter kernel: shell commands'
output goes through ``sys.stdout`` (so it is captured per cell), and ``%matplotlib`` is a
no-op because ``cells`` already renders figures after each cell like the inline backend.
"""

from __future__ import annotations

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


def get_ipython_for(ns: dict[str, Any]) -> Callable[[], Any]:
    """A ``get_ipython`` for namespace ``ns``; the shell is created on first use only."""

    def get_ipython() -> Any:
        shell = _instance()
        shell.user_ns = ns
        return shell

    return get_ipython
