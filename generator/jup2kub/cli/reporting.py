"""How a command ends and what it says besides its output.

Errors raised on purpose (``Jup2KubError``) are printed without a traceback, with their exit
code (2 for input and usage errors, like click's own usage errors); SIGINT, SIGTERM and SIGHUP
end a command with 128 + the signal's number. What was repaired on reading a notebook
(``NotebookRepairedWarning``) is printed as one ``warning:`` line.
"""

from __future__ import annotations

import contextlib
import functools
import json
import signal
import sys
import warnings
from collections.abc import Callable, Iterator
from types import FrameType
from typing import ParamSpec, TextIO, TypeVar

import click

from jup2kub.api import Pipeline
from jup2kub.errors import Jup2KubError, NotebookRepairedWarning, Terminated

P = ParamSpec("P")
R = TypeVar("R")


def reports_errors(func: Callable[P, R]) -> Callable[P, R]:
    """The command's own errors and signals as one line on stderr and an exit code."""

    @functools.wraps(func)
    def wrapper(*args: P.args, **kwargs: P.kwargs) -> R:
        try:
            with warnings.catch_warnings(), _signals_raise():
                warnings.simplefilter("always", NotebookRepairedWarning)
                warnings.showwarning = _show_warning
                return func(*args, **kwargs)
        except Jup2KubError as exc:
            click.echo(f"error: {exc}", err=True)
            sys.exit(exc.exit_code)
        except (KeyboardInterrupt, Terminated) as exc:
            signum = exc.signum if isinstance(exc, Terminated) else signal.SIGINT
            click.echo(f"interrupted ({signal.Signals(signum).name})", err=True)
            sys.exit(128 + signum)

    return wrapper


@contextlib.contextmanager
def _signals_raise() -> Iterator[None]:
    """SIGTERM and SIGHUP raise ``Terminated`` while a command runs (as Ctrl-C raises
    KeyboardInterrupt), so that it ends its child processes and says what it left."""

    def handler(signum: int, _frame: FrameType | None) -> None:
        raise Terminated(signum)

    previous = {s: signal.signal(s, handler) for s in (signal.SIGTERM, signal.SIGHUP)}
    try:
        yield
    finally:
        for s, h in previous.items():
            signal.signal(s, h)


_python_showwarning = warnings.showwarning


def _show_warning(
    message: Warning | str,
    category: type[Warning],
    filename: str,
    lineno: int,
    file: TextIO | None = None,
    line: str | None = None,
) -> None:
    """Our own warnings as ``warning:`` lines on stderr; any other the Python way."""
    if issubclass(category, NotebookRepairedWarning):
        click.echo(f"warning: {message}", err=True)
    else:
        _python_showwarning(message, category, filename, lineno, file, line)


def warn(message: str) -> None:
    click.echo(f"warning: {message}", err=True)


def split_warnings(pipeline: Pipeline) -> None:
    """What the split honours differently from Kale's tags, or ignores."""
    for warning in pipeline.split_warnings:
        warn(str(warning))


def echo_json(data: object, *, ensure_ascii: bool = True) -> None:
    """``data`` as indented JSON on stdout."""
    click.echo(json.dumps(data, indent=2, ensure_ascii=ensure_ascii))
