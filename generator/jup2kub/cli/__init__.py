"""Command line: parses arguments, calls the library API (``jup2kub.api``), prints results.

One module per group of commands (``notebook``: inspect, build, package; ``bundles``: export,
import; ``sharing``: keygen, sign, verify; ``running``: run; ``runs``; ``cluster``: deploy,
submit, status, results; ``catalog``), over the options they share (``options``) and how every
command reports errors, signals and warnings (``reporting``).
"""

from __future__ import annotations

import atexit
import gc

import click

import jup2kub.startup  # noqa: F401  (first: before nbformat is imported)
from jup2kub.cli.bundles import export, import_
from jup2kub.cli.catalog import catalog
from jup2kub.cli.cluster import deploy, results, status, submit
from jup2kub.cli.notebook import build, inspect, package
from jup2kub.cli.running import run
from jup2kub.cli.runs import runs
from jup2kub.cli.sharing import keygen, sign, verify
from jup2kub.version import __version__

__all__ = ["main"]


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="jup2kub")
def main() -> None:
    """Turn a Jupyter notebook into a fault-tolerant pipeline on Kubernetes."""
    # Nothing the command built needs collecting at exit: freezing it skips the collector's
    # walk over every object at interpreter shutdown (50-100 ms per command, measured).
    atexit.register(gc.freeze)


for _command in (
    inspect,
    build,
    package,
    export,
    import_,
    keygen,
    sign,
    verify,
    run,
    runs,
    submit,
    deploy,
    status,
    results,
    catalog,
):
    main.add_command(_command)
