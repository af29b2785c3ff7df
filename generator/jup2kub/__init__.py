"""Jup2Kub: a Jupyter notebook becomes a fault-tolerant pipeline on Kubernetes.

The data path reads forward: ``model`` (notebook -> steps -> Pipeline) -> ``plan`` (what each
step becomes on Kafka) -> ``build`` (step images) and ``chart`` (the Helm chart), or ``run``
(on this machine) and ``cluster`` (a deployed release); ``api`` is the library API, ``cli`` the
command line over it.
"""

from jup2kub.version import __version__

__all__ = ["__version__", "load_ipython_extension", "unload_ipython_extension"]


def load_ipython_extension(ipython: object) -> None:
    """``%load_ext jup2kub``: the ``%jup2kub`` and ``%%step`` magics (``jup2kub.magics``)."""
    # the magics load IPython, the command line and the library: only on %load_ext
    from jup2kub.magics import load_ipython_extension as load

    load(ipython)


def unload_ipython_extension(ipython: object) -> None:
    from jup2kub.magics import unload_ipython_extension as unload  # as above

    unload(ipython)
