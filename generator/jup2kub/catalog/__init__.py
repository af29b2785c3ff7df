"""The step catalog: every built or added step, searchable, for reuse in compositions."""

from jup2kub.catalog.records import BuildFacts, StepRecord, observed_types, step_records
from jup2kub.catalog.store import ENV, Catalog, default_location

__all__ = [
    "ENV",
    "BuildFacts",
    "Catalog",
    "StepRecord",
    "default_location",
    "observed_types",
    "step_records",
]
