"""Runtime checks of what the static analysis assumed about a step, so that an effect it could
not see fails the run (or warns) instead of silently handing later steps a different value.

* ``readonly_inputs``: inputs the step must leave unchanged, since later steps read the same
  stored value. Each is fingerprinted right after loading (a hash of its pickle, made in this
  process: pickles of sets and the like are not stable across processes) and again after the
  step's cells; small ones after every cell too, so the message can name the cell.
* ``random_guard``: the global generators were seeded before the step and the analysis saw no
  draw in it; their states are fingerprinted after the replay and after every cell.

Fingerprints must not change when the step only reads a value, or a correct notebook is
refused. Two kinds of objects change their pickle on a read, and are handled on purpose:
caches of derived data (pandas' ``cache_readonly`` in ``_cache``, ``functools.cached_property``
values) are left out of the fingerprint; matplotlib artists (figures, axes, ... also inside a
seaborn grid) count by identity only, since drawing them (``savefig``, the inline display)
rewrites their layout and staleness state. A value that cannot be pickled here is not checked.
"""

from __future__ import annotations

import functools
import hashlib
import pickle
import random
import sys
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:  # cloudpickle ships no types: its Pickler is a pickle.Pickler
    from pickle import Pickler as CloudPickler
else:
    from cloudpickle import Pickler as CloudPickler

from ..contract.config import GuardSettings
from ..contract.errors import GUARD_PHASE, INPUT_CHANGED, RANDOM_DRAWN, ErrorRecord
from ..contract.spec import StepSpec
from . import randomness

#: inputs stored at most this large are fingerprinted after every cell (else only at the end):
#: at most ~10 ms per cell even for object-heavy values
PER_CELL_MAX_BYTES = 256 << 10


class GuardError(Exception):
    """A check failed in mode ``fail``: ``record`` is the step's error (permanent)."""

    def __init__(self, record: ErrorRecord) -> None:
        super().__init__(record.evalue)
        self.record = record


# ---- fingerprints ------------------------------------------------------------------------------


class _HashSink:
    """The file a fingerprint's pickle is written to: only hashed, never kept."""

    def __init__(self) -> None:
        self.hash = hashlib.sha1(usedforsecurity=False)

    def write(self, data: bytes) -> int:
        self.hash.update(data)
        return len(data)

    def buffer(self, buf: pickle.PickleBuffer) -> bool:
        """Hash an out-of-band buffer (numpy arrays, pandas blocks) without copying it."""
        raw = buf.raw()
        self.hash.update(len(raw).to_bytes(8, "little"))
        self.hash.update(raw)
        return False


class _FingerprintPickler(CloudPickler):
    """cloudpickle, leaving out what reading a value may change (see the module docstring)."""

    def reducer_override(self, obj: Any) -> Any:
        artist = sys.modules.get("matplotlib.artist")
        if artist is not None and isinstance(obj, artist.Artist):
            return str, (f"<{type(obj).__qualname__} artist at {id(obj):#x}>",)
        cached = _cached_keys(type(obj))
        if cached:
            state = getattr(obj, "__dict__", None)
            if isinstance(state, dict) and not cached.isdisjoint(state):
                return _without(obj.__reduce_ex__(pickle.HIGHEST_PROTOCOL), cached)
        return super().reducer_override(obj)


_CACHED_KEYS: dict[type, frozenset[str]] = {}


def _cached_keys(cls: type) -> frozenset[str]:
    """The ``__dict__`` keys of ``cls``'s instances that only cache derived data."""
    known = _CACHED_KEYS.get(cls)
    if known is not None:
        return known
    keys = {
        name
        for klass in cls.__mro__
        for name, attr in vars(klass).items()
        if isinstance(attr, functools.cached_property)
    }
    if cls.__module__.startswith("pandas"):
        keys.add("_cache")  # pandas' cache_readonly (e.g. a DatetimeArray's unit, freq)
    found = _CACHED_KEYS[cls] = frozenset(keys)
    return found


_EMPTIED = object()


def _without(reduced: Any, keys: frozenset[str]) -> Any:
    """A ``__reduce_ex__`` result whose state dict(s) lack ``keys``, reduced as if the object
    had never cached anything: a dict left empty goes, as objects without a ``__dict__``
    state reduce (pandas' arrays add a third item to their state tuple once they cache)."""
    if not isinstance(reduced, tuple) or len(reduced) < 3:
        return reduced

    def clean(state: Any) -> Any:
        if isinstance(state, dict) and not keys.isdisjoint(state):
            return {k: v for k, v in state.items() if k not in keys} or _EMPTIED
        return state

    state = reduced[2]
    if isinstance(state, tuple):
        state = tuple(c for c in map(clean, state) if c is not _EMPTIED)
    else:
        state = clean(state)
        state = None if state is _EMPTIED else state
    return (*reduced[:2], state, *reduced[3:])


def fingerprint(value: Any) -> bytes | None:
    """A digest of ``value``'s content, stable while it is only read; None if it cannot be
    pickled here (then it is not checked)."""
    sink = _HashSink()
    try:
        _FingerprintPickler(sink, protocol=5, buffer_callback=sink.buffer).dump(value)
    except Exception:
        return None
    return sink.hash.digest()


# ---- the checks of one execution ---------------------------------------------------------------


@dataclass
class _Watched:
    name: str
    value: Any  # the loaded object itself: a rebinding of the name does not hide a change
    per_cell: bool
    digest: bytes


@dataclass
class StepGuards:
    """The checks of one execution of ``spec``; ``execute_step`` calls ``start`` once the
    inputs are loaded, ``before_cells`` after the replay, ``after_cell`` after each cell and
    ``after_cells`` at the end. A failed check raises GuardError (mode ``fail``) or writes a
    warning to the cell's stderr and the process' own (mode ``warn``) and goes on."""

    spec: StepSpec
    settings: GuardSettings = field(default_factory=GuardSettings)
    #: stored size of each input (values.json ``bytes``); unknown sizes: checked at the end only
    sizes: Mapping[str, int] = field(default_factory=dict)
    _watched: list[_Watched] = field(default_factory=list)
    _random: dict[str, bytes] | None = None

    @property
    def active(self) -> bool:
        return self.settings.mode != "off"

    def start(self, inputs: Mapping[str, Any]) -> None:
        """Fingerprint the read-only inputs, right after loading."""
        if not self.active:
            return
        for name in self.spec.readonly_inputs:
            size = self.sizes.get(name)
            if name not in inputs or (size is not None and size > self.settings.max_bytes):
                continue
            digest = fingerprint(inputs[name])
            if digest is not None:
                per_cell = size is not None and size <= PER_CELL_MAX_BYTES
                self._watched.append(_Watched(name, inputs[name], per_cell, digest))

    def before_cells(self) -> None:
        """The generators' states after the replay (and the restored random state)."""
        if self.active and self.spec.random_guard:
            self._random = randomness.fingerprint()

    def after_cell(self, cell: int) -> None:
        self._check_random(cell)
        self._check_inputs(cell, [w for w in self._watched if w.per_cell])

    def after_cells(self) -> None:
        only = self.spec.cells[0].index if len(self.spec.cells) == 1 else None
        self._check_inputs(only, [w for w in self._watched if not w.per_cell])

    def _check_inputs(self, cell: int | None, watched: list[_Watched]) -> None:
        for w in watched:
            digest = fingerprint(w.value)
            if digest is None or digest == w.digest:
                continue
            w.digest = digest  # warn once per change
            if is_generator(w.value):
                ename, message = RANDOM_DRAWN, generator_drawn_message(self.spec.step, w.name, cell)
            else:
                ename, message = INPUT_CHANGED, input_changed_message(self.spec.step, w.name, cell)
            self._report(ErrorRecord(cell, ename, message, phase=GUARD_PHASE, variable=w.name))

    def _check_random(self, cell: int) -> None:
        if self._random is None:
            return
        now = randomness.fingerprint()
        drawn = randomness.changed(self._random, now)
        self._random = now
        if drawn:
            message = random_drawn_message(self.spec.step, cell, drawn[0])
            self._report(ErrorRecord(cell, RANDOM_DRAWN, message, phase=GUARD_PHASE))

    def _report(self, record: ErrorRecord) -> None:
        if self.settings.mode == "fail":
            raise GuardError(record)
        warning = f"[jup2kub] warning: {record.evalue}"
        print(warning, file=sys.stderr)  # the cell's output, in the results notebook
        if sys.__stderr__ is not None and sys.stderr is not sys.__stderr__:
            print(warning, file=sys.__stderr__, flush=True)  # the step's log (pod, local run)


def is_generator(value: Any) -> bool:
    """Whether ``value`` is a random generator or one of its methods (``np.random.rand``)."""
    target = getattr(value, "__self__", value)
    np = sys.modules.get("numpy")
    kinds: tuple[type, ...] = (random.Random,)
    if np is not None:
        kinds += (np.random.RandomState, np.random.Generator)
    return isinstance(target, kinds)


def generator_drawn_message(step: str, name: str, cell: int | None) -> str:
    where = f" (cell {cell})" if cell is not None else ""
    return (
        f"step {step!r} drew from the random generator {name!r} holds{where}, but the analysis "
        f"did not see it: a generator stored in a variable (or one of its functions, as in "
        f"{name} = np.random.rand) is a copy in a later step, so the draw would not continue the "
        f"notebook's random stream and later steps would get the unchanged generator. Call the "
        f"random functions directly, or create the generator (np.random.default_rng(seed)) in "
        f"the step that draws from it"
    )


def input_changed_message(step: str, name: str, cell: int | None) -> str:
    where = f" (cell {cell})" if cell is not None else ""
    return (
        f"step {step!r} changed {name!r} in place{where}, but the analysis did not see it, so "
        f"later steps would get the unchanged value: likely a function or method that modifies "
        f"its argument. Assign the result instead ({name} = f({name})), or keep the cells that "
        f"modify and read it in one step; or run the notebook once with `jup2kub run` (it "
        f"re-plans around this and records it in .jup2kub/learned.json) and build the chart "
        f"again from that directory"
    )


_RANDOM_FIXES = {
    "numpy": "pass an explicit random_state/seed or a Generator (np.random.default_rng) to "
    "that call",
    "random": "draw from an own random.Random(seed) instance instead",
}


def random_drawn_message(step: str, cell: int, generator: str) -> str:
    return (
        f"step {step!r}: cell {cell} drew from {randomness.GENERATORS[generator]} through a call "
        f"the analysis did not recognise, so later steps would not continue the notebook's "
        f"random stream; {_RANDOM_FIXES[generator]}"
    )
