"""The interpreter's global random generators, carried from step to step.

A notebook that seeds ``random`` or NumPy's legacy global generator in one cell and draws in
later cells continues one stream. A step process starts with fresh generators, so the state
travels between steps like a value: the generator names it ``RANDOM_STATE`` in a step's
inputs and outputs, and the runtime restores it before the step's cells and captures it after.

The stored state is a small plain dict: ``{"random": random.getstate()}`` plus, when NumPy is
imported, ``"numpy": numpy.random.get_state()`` (a tuple holding one uint32 array). PyTorch's
CPU generator is not carried: it is not installed where this runtime is tested, and a state
nobody checks would be a promise nobody keeps.
"""

from __future__ import annotations

import hashlib
import importlib
import random
import sys
from collections.abc import Iterable, Mapping
from typing import Any

#: the pseudo-variable holding the global random states in a step's inputs and outputs
RANDOM_STATE = "__random_state__"

#: the generators carried, by their key in the stored state, as messages name them
GENERATORS = {
    "random": "Python's global random generator (the random module)",
    "numpy": "numpy's global random generator",
}

#: the libraries (of the runtime's own dependencies) that draw from ``random`` in background
#: threads; they get a private generator so they never advance the notebook's stream
LIBRARY_MODULES = (
    "kafka.client_async",
    "kafka.cluster",
    "kafka.consumer.subscription_state",
    "kafka.partitioner.default",
)


def capture() -> dict[str, Any]:
    """The global generators' states now: ``random`` always, NumPy's if NumPy is imported."""
    state: dict[str, Any] = {"random": random.getstate()}
    np = sys.modules.get("numpy")
    if np is not None:
        state["numpy"] = np.random.get_state()
    return state


def split_state(inputs: Mapping[str, Any]) -> tuple[dict[str, Any], object | None]:
    """A step's loaded inputs without the random state (it is no variable), and that state."""
    rest = {k: v for k, v in inputs.items() if k != RANDOM_STATE}
    return rest, inputs.get(RANDOM_STATE)


def restore(state: object) -> None:
    """Put the generators back in ``state`` (from ``capture``, possibly in another process);
    imports NumPy when the state has NumPy's, so that the step's ``import numpy`` finds it
    seeded as the notebook had it."""
    if not isinstance(state, Mapping) or "random" not in state:
        raise ValueError(f"{RANDOM_STATE} is not a random state: {type(state).__name__}")
    random.setstate(state["random"])
    if "numpy" in state:
        importlib.import_module("numpy").random.set_state(state["numpy"])


def fingerprint() -> dict[str, bytes]:
    """A cheap digest per generator in use (NumPy's only when imported), to compare later."""
    prints = {"random": _digest(repr(random.getstate()).encode())}
    np = sys.modules.get("numpy")
    if np is not None:
        name, keys, pos, has_gauss, gauss = np.random.get_state()
        prints["numpy"] = _digest(repr((name, pos, has_gauss, gauss)).encode(), keys.tobytes())
    return prints


def changed(before: Mapping[str, bytes], after: Mapping[str, bytes]) -> list[str]:
    """The generators (keys of ``GENERATORS``) present in both whose state differs."""
    return [k for k in GENERATORS if k in before and k in after and before[k] != after[k]]


def isolate_libraries(modules: Iterable[str] = LIBRARY_MODULES) -> None:
    """Give the imported ``modules`` a private ``random.Random`` in place of the ``random``
    module: a library thread that shuffles its broker list while a step's cells run must not
    draw from the notebook's seeded stream."""
    for name in modules:
        mod = sys.modules.get(name)
        if mod is not None and getattr(mod, "random", None) is random:
            vars(mod)["random"] = random.Random()


def _digest(*parts: bytes) -> bytes:
    h = hashlib.sha1(usedforsecurity=False)
    for part in parts:
        h.update(part)
    return h.digest()
