"""What runs taught the model that its analysis could not see: cells that change a value in
place through code it does not follow (a function kept in a dict, an object holding its
constructor's argument, a third-party call), or draw from the global random generators through
such code (the value is then the random state, ``RANDOM_STATE``). The runtime's guard catches
it when a step runs; ``jup2kub run`` re-plans with it and records it here, so that every later
plan of the notebook (``inspect``, ``build``'s chart, ``submit``, the next run) agrees with
what ran.

A change is keyed by the SHA-256 of its cell's source as written, not by the cell's position: an
edit of that cell forgets it (the guard would catch it again), inserting cells above does not,
and a composition using the cell finds it too. The facts live in ``.jup2kub/learned.json`` of
the working directory, beside the runs (commit it with the notebook when charts are built on
another machine).
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterable
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from jup2kub.errors import InputError
from jup2kub.files import atomic_write_text
from jup2kub_runtime.execution.randomness import RANDOM_STATE

#: where ``run`` records what it learned, and every command reads it (relative to the cwd)
LEARNED_FILE = Path(".jup2kub") / "learned.json"
VERSION = 1


def cell_sha256(source: str) -> str:
    return hashlib.sha256(source.encode("utf-8")).hexdigest()


@dataclass(frozen=True)
class InPlaceChange:
    """A cell changes ``variable`` in place (seen by the guard of step ``step`` in ``run_id``)."""

    cell_sha256: str
    variable: str
    #: where it was seen, for people: the cell's index then, the notebook's file name
    cell: int
    notebook: str
    step: str
    run_id: str
    seen: str  # UTC, ISO 8601

    @property
    def key(self) -> tuple[str, str]:
        return self.cell_sha256, self.variable

    def action(self, *, past: bool = False) -> str:
        """What the cell does (``past``: did), for people."""
        if self.variable == RANDOM_STATE:
            return f"{'drew' if past else 'draws'} from the global random generators"
        return f"{'changed' if past else 'changes'} {self.variable!r} in place"

    def __str__(self) -> str:
        return (
            f"cell {self.cell} of {self.notebook} {self.action()} (seen by the guard of step "
            f"{self.step!r} in run {self.run_id})"
        )

    def to_json(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_json(cls, data: Any) -> InPlaceChange:
        if not isinstance(data, dict):
            raise ValueError("an entry is not an object")
        fields = {
            "cell_sha256": str,
            "variable": str,
            "cell": int,
            "notebook": str,
            "step": str,
            "run_id": str,
            "seen": str,
        }
        for name, kind in fields.items():
            if not isinstance(data.get(name), kind):
                raise ValueError(f"an entry's {name!r} is missing or not a {kind.__name__}")
        return cls(**{name: data[name] for name in fields})


@dataclass(frozen=True)
class Learned:
    """The in-place changes known for the notebooks planned from one working directory."""

    changes: tuple[InPlaceChange, ...] = ()

    def variables(self, source: str) -> list[str]:
        """The variables the cell with this source changes in place, in a stable order."""
        if not self.changes:  # nothing learned: no cell is hashed (every plan asks)
            return []
        sha = cell_sha256(source)
        return sorted({c.variable for c in self.changes if c.cell_sha256 == sha})

    def adding(self, new: Iterable[InPlaceChange]) -> Learned:
        changes = list(self.changes)
        for change in new:
            if not any(c.key == change.key for c in changes):
                changes.append(change)
        return Learned(tuple(changes))


NOTHING_LEARNED = Learned()


def read_learned(path: Path = LEARNED_FILE) -> Learned:
    """The facts in ``path`` (none if there is no such file)."""
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        return Learned()
    except OSError as exc:
        raise _damaged(path, exc.strerror or str(exc)) from exc
    try:
        data = json.loads(text)
        if not isinstance(data, dict) or data.get("version") != VERSION:
            raise ValueError(f"not a version {VERSION} file of jup2kub's")
        entries = data.get("in_place_changes")
        if not isinstance(entries, list):
            raise ValueError("'in_place_changes' is not a list")
        return Learned(tuple(InPlaceChange.from_json(e) for e in entries))
    except ValueError as exc:
        raise _damaged(path, str(exc)) from exc


def record_learned(new: Iterable[InPlaceChange], path: Path = LEARNED_FILE) -> Learned:
    """Add ``new`` to what ``path`` holds now (written atomically); returns the whole."""
    learned = read_learned(path).adding(new)
    doc = {
        "version": VERSION,
        "about": "cells jup2kub's runs saw change a value in place; every plan of these "
        "notebooks from this directory takes them into account (see the README, 'What the "
        "analysis guarantees'). Delete an entry to forget it.",
        "in_place_changes": [c.to_json() for c in learned.changes],
    }
    path.parent.mkdir(parents=True, exist_ok=True)
    atomic_write_text(path, json.dumps(doc, indent=1) + "\n")
    return learned


def _damaged(path: Path, why: str) -> InputError:
    return InputError(
        f"cannot read what earlier runs learned ({why})",
        where=str(path),
        hint="restore the file from version control, or delete it: runs learn its facts again",
    )
