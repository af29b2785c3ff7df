"""Jup2Kub step runtime: runs one pipeline step inside its container.

This package is shipped in every step image and must never import ``jup2kub`` (the generator).
"""

__version__ = "0.1.0"
