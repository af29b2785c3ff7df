"""What a call does beyond its arguments, decided with the notebook's imports in hand: drawing
from or seeding the interpreter's global random generators."""

from __future__ import annotations

from collections.abc import Iterable, Mapping

from jup2kub.model.analysis.knowledge import (
    GLOBAL_RNG_MODULES,
    IMPLICIT_RNG_CALLS,
    RNG_KEYWORDS,
    RNG_NEUTRAL,
    RNG_SEEDERS,
)

SEED = "seed"
DRAW = "draw"


def qualified(callee: str, imports: Mapping[str, str]) -> str:
    """``np.random.rand`` -> ``numpy.random.rand`` when ``np`` was imported as numpy."""
    head, _, rest = callee.partition(".")
    module = imports.get(head)
    if module is None:
        return callee
    return f"{module}.{rest}" if rest else module


def random_effect(callee: str, keywords: Iterable[str], imports: Mapping[str, str]) -> str | None:
    """SEED, DRAW or None for a call of ``callee`` (as written) given the imports so far.

    Calls into ``random``/``numpy.random`` are exact; library calls known to draw from NumPy's
    global generator when not given a seed (``train_test_split``, ``df.sample``, ``fit``) are
    counted as draws unless a ``random_state``-like keyword is passed."""
    name = qualified(callee, imports)
    module, _, function = name.rpartition(".")
    if module in GLOBAL_RNG_MODULES:
        if function in RNG_SEEDERS:
            return SEED
        return None if function in RNG_NEUTRAL or function.startswith("_") else DRAW
    if function in IMPLICIT_RNG_CALLS and not RNG_KEYWORDS.intersection(keywords):
        return DRAW
    return None


class AliasClasses:
    """May-alias classes of variables, updated in notebook order (flow-sensitive per statement):
    a name joins the class of what it is bound to and leaves it when certainly rebound.

    The classes of two names or more are kept frozen as they change, so that ``snapshot`` (taken
    twice per step) costs the number of classes, not the number of names ever seen: 1,000-cell
    notebooks spent most of their analysis there."""

    def __init__(self) -> None:
        self._of: dict[str, set[str]] = {}
        #: id of a class's set -> the class, for the classes of two names or more
        self._frozen: dict[int, frozenset[str]] = {}

    def members(self, name: str) -> set[str]:
        return self._of.get(name, {name})

    def rebind(self, name: str) -> None:
        group = self._of.pop(name, None)
        if group is not None:
            group.discard(name)
            self._freeze(group)

    def join(self, name: str, others: Iterable[str]) -> None:
        merged = set(self.members(name))
        for other in others:
            merged |= self.members(other)
        for member in merged:
            old = self._of.get(member)
            if old is not None:  # replaced by ``merged``: no longer a class of its own
                self._frozen.pop(id(old), None)
            self._of[member] = merged
        self._freeze(merged)

    def _freeze(self, group: set[str]) -> None:
        if len(group) > 1:
            self._frozen[id(group)] = frozenset(group)
        else:
            self._frozen.pop(id(group), None)

    def snapshot(self) -> list[frozenset[str]]:
        """The classes of two names or more."""
        return list(self._frozen.values())
