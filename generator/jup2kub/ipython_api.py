"""The parts of IPython that the magics call, with types: IPython annotates its magic
decorators loosely and its display objects not at all, so this is the one module that calls
them (``jup2kub.magics`` stays strictly typed)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, TypeVar, cast

from IPython.core.interactiveshell import InteractiveShell
from IPython.core.magic import cell_magic, line_magic
from IPython.display import HTML, SVG, DisplayHandle, FileLink, display

F = TypeVar("F", bound=Callable[..., Any])


def line_magic_named(name: str) -> Callable[[F], F]:
    """``@line_magic(name)``. Given a name, IPython's decorator returns the decorator that
    registers the method (its annotation admits both that and the bare form)."""
    return cast("Callable[[F], F]", line_magic(name))


def cell_magic_named(name: str) -> Callable[[F], F]:
    """``@cell_magic(name)``, as ``line_magic_named``."""
    return cast("Callable[[F], F]", cell_magic(name))


def run_cell(shell: InteractiveShell, source: str) -> None:
    """Run ``source`` as a cell of the shell, outside its history."""
    shell.run_cell(source, store_history=False)


def show_html(html: str) -> None:
    display(HTML(html))


def show_svg(svg: str) -> None:
    display(SVG(svg))


def show_file_link(path: str) -> None:
    """A link the front end opens: ``path`` relative to the kernel's directory."""
    display(FileLink(path))


class HtmlArea:
    """An HTML output of the cell, replaced in place by ``update`` (none outside IPython)."""

    def __init__(self, html: str) -> None:
        self.handle: DisplayHandle | None = display(HTML(html), display_id=True)

    def update(self, html: str) -> None:
        if self.handle is not None:
            self.handle.update(HTML(html))
