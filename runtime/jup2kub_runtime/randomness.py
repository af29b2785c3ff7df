"""The interpreter's global random generators, carried from step to step.

A notebook that seeds ``random`` or NumPy's legacy global generator in one cell and draws in
later cells continues one stream. A step process starts with fresh generators, so the state
travels between steps like a value: the generator names it ``RANDOM_STATE`` in a step's
inputs and outputs, and the runtime restores it before the step's cells and captures it after.
"""

from __future__ import annotations

#: the pseudo-variable holding the global random states in a step's inputs and outputs
RANDOM_STATE = "__random_state__"
