"""The step code bundle ``$J2K_CODE_PATH/step.json``: what one pipeline step executes.

The generator writes it with these dataclasses (``StepSpec(...).to_json()``) and the runtime
reads it back with ``StepSpec.from_json``/``load``, so both sides share one schema and version.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .errors import SpecError
from .mapspec import MapSpec
from .valid_names import IDENTIFIER_RE, NAME_RE

SPEC_VERSION = 1
SPEC_FILENAME = "step.json"


def check_name(kind: str, value: object) -> str:
    """Return ``value`` if it is a valid pipeline/step name, else raise SpecError."""
    if not isinstance(value, str) or not NAME_RE.match(value):
        raise SpecError(
            f"{kind} name {value!r} is invalid: use 1-63 letters, digits, '_' or '-', "
            "starting with a letter or digit"
        )
    return value


@dataclass(frozen=True)
class Cell:
    """One notebook cell of the step, in plain Python (IPython syntax already translated)."""

    index: int
    source: str
    #: tagged ``raises-exception``: an error here is recorded in the cell's outputs and the
    #: step goes on, as nbclient does (the key is written only when set: older runtimes and
    #: older specs read the same)
    allows_errors: bool = False

    def to_dict(self) -> dict[str, Any]:
        return {"index": self.index, "source": self.source} | (
            {"allows_errors": True} if self.allows_errors else {}
        )


@dataclass(frozen=True)
class ReplayCell:
    """Definitions (imports, def, class) re-executed so that this step has them too."""

    cell: int
    source: str


@dataclass(frozen=True)
class StepSpec:
    """Everything one step needs to run; see the module docstring."""

    pipeline: str
    step: str
    cells: list[Cell]
    parameters_source: str = ""
    parameters: list[str] = field(default_factory=list)
    replay: list[ReplayCell] = field(default_factory=list)
    inputs: dict[str, str] = field(default_factory=dict)
    outputs: list[str] = field(default_factory=list)
    upstream: list[str] = field(default_factory=list)
    downstream: list[str] = field(default_factory=list)
    #: output names that may refer to one object (or share parts of one): stored together,
    #: so that a later step loading several of them gets one object, as in the notebook
    groups: list[list[str]] = field(default_factory=list)
    #: inputs this step must leave unchanged: later steps read the same stored value, so a
    #: change the analysis did not foresee would be a silent difference (the run fails instead)
    readonly_inputs: list[str] = field(default_factory=list)
    #: the global random generators were seeded before this step and the analysis saw no draw
    #: in it: a draw would leave later steps out of step with the notebook (the run fails)
    random_guard: bool = False
    #: outputs that may hold a value pickle cannot store (an open file), handed on only in case
    #: a later step's conditional definition does not happen: stored as a placeholder that
    #: raises a clear error when used (``placeholders.Unstorable``)
    placeholders: list[str] = field(default_factory=list)
    #: parameters whose value is a secret: not in ``parameters_source`` (None there), but in
    #: the process's environment (``valid_names.secret_parameter_env``), set after the overrides
    secret_parameters: list[str] = field(default_factory=list)
    #: the notebook seeds a global random generator before or in this step: an import that
    #: draws from one must then happen where the notebook imports (not ahead, ``preimport``)
    random_seeded: bool = False
    #: the step cache may reuse this step's results (``cachekey``, ``stepcache``); the files
    #: its code names (hashed into its key) and the files it writes (kept with an entry)
    cache: bool = False
    cache_reads: list[str] = field(default_factory=list)
    cache_writes: list[str] = field(default_factory=list)
    #: data-parallel map cells (``#| map: true``): their elements run in parallel chunks
    maps: list[MapSpec] = field(default_factory=list)
    version: int = SPEC_VERSION

    def __post_init__(self) -> None:
        self.validate()

    @property
    def is_root(self) -> bool:
        return not self.upstream

    def validate(self) -> None:
        """Raise SpecError when the bundle is inconsistent (the generator's bug, not the user's)."""
        if self.version != SPEC_VERSION:
            raise SpecError(
                f"step.json version {self.version} is not supported "
                f"(this runtime reads version {SPEC_VERSION})"
            )
        check_name("pipeline", self.pipeline)
        check_name("step", self.step)
        for name in [*self.upstream, *self.downstream]:
            check_name("step", name)
        if self.step in self.upstream or self.step in self.downstream:
            raise SpecError(f"step {self.step!r} lists itself as upstream or downstream")
        for var, source in self.inputs.items():
            if not IDENTIFIER_RE.match(var):
                raise SpecError(f"input {var!r} is not a Python identifier")
            if source not in self.upstream:
                raise SpecError(f"input {var!r} comes from {source!r}, which is not upstream")
        for var in [*self.outputs, *self.parameters, *self.secret_parameters]:
            if not IDENTIFIER_RE.match(var):
                raise SpecError(f"variable {var!r} is not a Python identifier")
        for group in self.groups:
            if not set(group) <= set(self.outputs):
                raise SpecError(f"group {group!r} names values that are not outputs")
        if not set(self.placeholders) <= set(self.outputs):
            raise SpecError("placeholders must be outputs")
        if not set(self.readonly_inputs) <= set(self.inputs):
            raise SpecError("readonly_inputs must be inputs")
        indexes = [c.index for c in self.cells]
        if len(set(indexes)) != len(indexes):
            raise SpecError("two cells of the step have the same index")
        if not {m.cell for m in self.maps} <= set(indexes):
            raise SpecError("a map entry names a cell that is not one of the step's")

    def to_dict(self) -> dict[str, Any]:
        return {
            "version": self.version,
            "pipeline": self.pipeline,
            "step": self.step,
            "parameters_source": self.parameters_source,
            "parameters": list(self.parameters),
            "replay": [{"cell": r.cell, "source": r.source} for r in self.replay],
            "cells": [c.to_dict() for c in self.cells],
            "inputs": dict(self.inputs),
            "outputs": list(self.outputs),
            "upstream": list(self.upstream),
            "downstream": list(self.downstream),
            "groups": [list(g) for g in self.groups],
            "readonly_inputs": list(self.readonly_inputs),
            "random_guard": self.random_guard,
            "placeholders": list(self.placeholders),
            **(
                {"secret_parameters": list(self.secret_parameters)}
                if self.secret_parameters
                else {}
            ),
            **(
                {
                    "cache": True,
                    "cache_reads": list(self.cache_reads),
                    "cache_writes": list(self.cache_writes),
                }
                if self.cache
                else {}
            ),
            **({"maps": [m.to_dict() for m in self.maps]} if self.maps else {}),
        }

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), indent=1, sort_keys=False) + "\n"

    @classmethod
    def from_dict(cls, data: object) -> StepSpec:
        if not isinstance(data, dict):
            raise SpecError("step.json must hold a JSON object")
        try:
            return cls(
                version=_get(data, "version", int),
                pipeline=_get(data, "pipeline", str),
                step=_get(data, "step", str),
                parameters_source=_get(data, "parameters_source", str, ""),
                parameters=_str_list(data, "parameters"),
                replay=[
                    ReplayCell(cell=_get(r, "cell", int), source=_get(r, "source", str))
                    for r in _obj_list(data, "replay")
                ],
                cells=[
                    Cell(
                        index=_get(c, "index", int),
                        source=_get(c, "source", str),
                        allows_errors=_get(c, "allows_errors", bool, False),
                    )
                    for c in _get(data, "cells", list)
                ],
                inputs=_str_dict(data, "inputs"),
                outputs=_str_list(data, "outputs"),
                upstream=_str_list(data, "upstream"),
                downstream=_str_list(data, "downstream"),
                groups=[_strings(g, "groups") for g in _obj_list(data, "groups")],
                readonly_inputs=_str_list(data, "readonly_inputs"),
                random_guard=_get(data, "random_guard", bool, False),
                placeholders=_str_list(data, "placeholders"),
                secret_parameters=_str_list(data, "secret_parameters"),
                random_seeded=_get(data, "random_seeded", bool, False),
                cache=_get(data, "cache", bool, False),
                cache_reads=_str_list(data, "cache_reads"),
                cache_writes=_str_list(data, "cache_writes"),
                maps=[MapSpec.from_dict(m) for m in _obj_list(data, "maps")],
            )
        except SpecError:
            raise
        except (TypeError, ValueError) as exc:  # pragma: no cover - defensive
            raise SpecError(f"step.json is malformed: {exc}") from exc

    @classmethod
    def from_json(cls, text: str | bytes) -> StepSpec:
        try:
            data = json.loads(text)
        except ValueError as exc:
            raise SpecError(f"step.json is not valid JSON: {exc}") from exc
        return cls.from_dict(data)

    @classmethod
    def load(cls, path: str | Path) -> StepSpec:
        """Read ``path`` (a step.json file, or a directory holding one)."""
        p = Path(path)
        if p.is_dir():
            p = p / SPEC_FILENAME
        try:
            text = p.read_text(encoding="utf-8")
        except OSError as exc:
            raise SpecError(f"cannot read step bundle {p}: {exc.strerror or exc}") from exc
        return cls.from_json(text)

    def dump(self, path: str | Path) -> Path:
        """Write to ``path`` (a file, or a directory that gets a step.json)."""
        p = Path(path)
        if p.is_dir():
            p = p / SPEC_FILENAME
        p.write_text(self.to_json(), encoding="utf-8")
        return p


_MISSING = object()


def _get(data: object, key: str, typ: type, default: Any = _MISSING) -> Any:
    if not isinstance(data, dict):
        raise SpecError(f"expected a JSON object holding {key!r}")
    if key not in data:
        if default is _MISSING:
            raise SpecError(f"step.json lacks {key!r}")
        return default
    value = data[key]
    if not isinstance(value, typ) or (typ is int and isinstance(value, bool)):
        raise SpecError(f"step.json {key!r} must be {typ.__name__}, not {type(value).__name__}")
    return value


def _obj_list(data: dict[str, Any], key: str) -> list[Any]:
    value = _get(data, key, list, [])
    assert isinstance(value, list)
    return value


def _str_list(data: dict[str, Any], key: str) -> list[str]:
    return _strings(_obj_list(data, key), key)


def _strings(value: object, key: str) -> list[str]:
    if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
        raise SpecError(f"step.json {key!r} must be a list of strings")
    return list(value)


def _str_dict(data: dict[str, Any], key: str) -> dict[str, str]:
    value = _get(data, key, dict, {})
    assert isinstance(value, dict)
    if not all(isinstance(k, str) and isinstance(v, str) for k, v in value.items()):
        raise SpecError(f"step.json {key!r} must map strings to strings")
    return dict(value)
