"""The catalog a composition looks its ``catalog:`` steps and wire types up in
(``model.compose.StepCatalog``): the one given, else the default catalog if there is one,
connected (SQLAlchemy imported) only when a composition asks, and closed afterwards."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING

from jup2kub.catalog.database import default_location
from jup2kub.catalog.records import StepRecord

if TYPE_CHECKING:
    from jup2kub.catalog.lite import LiteCatalog
    from jup2kub.catalog.store import Catalog


class DeferredCatalog:
    """The catalog at ``location``, connected on the first question."""

    def __init__(self, location: str) -> None:
        self.location = location
        self._catalog: Catalog | None = None

    def _connected(self) -> Catalog:
        if self._catalog is None:
            from jup2kub.catalog.store import Catalog  # SQLAlchemy: only when a step is asked for

            self._catalog = Catalog(self.location)
        return self._catalog

    def find(self, name: str) -> StepRecord:
        return self._connected().find(name)

    def steps(self) -> list[StepRecord]:
        return self._connected().steps()

    def close(self) -> None:
        if self._catalog is not None:
            self._catalog.close()


@contextmanager
def composition_catalog(
    catalog: Catalog | LiteCatalog | None,
) -> Iterator[Catalog | LiteCatalog | DeferredCatalog | None]:
    """``catalog``, else the default catalog when it exists (a database URL, or a file that is
    there: none is created for a question), else None."""
    if catalog is not None:
        yield catalog
        return
    location = default_location()
    if "://" not in location and not Path(location).exists():
        yield None
        return
    deferred = DeferredCatalog(location)
    try:
        yield deferred
    finally:
        deferred.close()
