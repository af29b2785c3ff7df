"""The generator's version, in a module of its own: the modules that stamp it on what they write
import it from here, not from the package, whose ``__init__`` loads the IPython magics (and with
them the whole command line) when ``%load_ext jup2kub`` calls it."""

__version__ = "0.1.0"
