"""The generator's version: recorded in charts, images and the catalog, shown by ``--version``.

A module of its own, imported by the modules that record it: ``jup2kub`` itself (the package)
loads the IPython magics on ``%load_ext``, which import the command line and the library."""

__version__ = "0.1.0"
