"""Step images: each step's dependencies captured and locked (``deps``), then built with the
local Docker engine (``images``, from the Dockerfiles in ``dockerfiles/``).

This module stays light (no Docker SDK): the CLI reads the defaults from here.
"""

#: Base image of the step images (needs python3 and glibc); pinned by digest at build time
#: when the engine knows its digest.
DEFAULT_BASE_IMAGE = "python:3.11-slim"
