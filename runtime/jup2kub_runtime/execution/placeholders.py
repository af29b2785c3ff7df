"""Stand-ins for values pickle cannot store, handed on only in case they are not replaced; and
for names a cell tagged ``raises-exception`` did not get to bind.

``with open(..) as file`` in one step, then ``for file in os.listdir(..)`` in the next: the
second step hands ``file`` on because the loop might not run, but then it holds the (closed)
file, which cannot be stored. The analysis cannot know whether the loop runs, so instead of
refusing the notebook the value is stored as an ``Unstorable``; using it in a later step raises
``UnstorableValueError`` naming the variable, the step and the reason, never a silent stand-in.

A cell tagged ``raises-exception`` may raise before it binds a name a later step reads; in the
notebook that name is then undefined. The step stores an ``Unbound`` for it, and a step loading
one leaves the name out of its namespace (``bound``): reading it raises Python's own NameError
where the notebook's would.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, NoReturn

import cloudpickle


class UnstorableValueError(RuntimeError):
    """A later step used a value that could not be stored between steps."""


class Unstorable:
    """Raises on every use but pickling; see the module docstring."""

    __slots__ = ("_why",)

    def __init__(self, why: str) -> None:
        object.__setattr__(self, "_why", why)

    def __reduce__(self) -> tuple[type[Unstorable], tuple[str]]:
        return (Unstorable, (object.__getattribute__(self, "_why"),))

    def _fail(self, *args: object, **kwargs: object) -> NoReturn:
        raise UnstorableValueError(object.__getattribute__(self, "_why"))

    def __getattr__(self, name: str) -> Any:
        self._fail()

    __setattr__ = __call__ = __str__ = __repr__ = __format__ = __bool__ = _fail
    __len__ = __iter__ = __getitem__ = __setitem__ = __contains__ = __hash__ = _fail
    __eq__ = __ne__ = __lt__ = __le__ = __gt__ = __ge__ = __add__ = __radd__ = _fail
    __enter__ = __exit__ = __int__ = __float__ = __index__ = __fspath__ = _fail


def stand_ins(values: Mapping[str, Any], names: list[str], step: str) -> dict[str, Any]:
    """``values`` with each of ``names`` that pickle refuses replaced by an ``Unstorable``."""
    out = dict(values)
    for name in names:
        if name not in out:
            continue
        try:
            cloudpickle.dumps(out[name])
        except Exception as exc:  # whatever pickle raises for this object
            kind = type(out[name]).__name__
            out[name] = Unstorable(
                f"{name!r} was not stored by step {step!r}: it held a {kind}, which cannot be "
                f"stored between steps ({exc}). The notebook rebinds it conditionally (a loop "
                "or branch) and that did not happen in this run; bind it in the step that uses "
                "it, or make sure the rebinding happens"
            )
    return out


class Unbound:
    """A name its step did not bind because a ``raises-exception`` cell raised first."""

    __slots__ = ("name", "step")

    def __init__(self, name: str, step: str) -> None:
        self.name, self.step = name, step

    def __reduce__(self) -> tuple[type[Unbound], tuple[str, str]]:
        return (Unbound, (self.name, self.step))

    def __repr__(self) -> str:
        return f"<{self.name!r}: not bound by step {self.step!r}>"


def bound(values: Mapping[str, Any]) -> dict[str, Any]:
    """``values`` without the names that are not bound (``Unbound``)."""
    return {k: v for k, v in values.items() if not isinstance(v, Unbound)}
