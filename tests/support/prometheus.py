"""A step's ``/metrics`` read as a scraper reads it: through prometheus_client's own parser."""

from __future__ import annotations

from prometheus_client.parser import text_string_to_metric_families
from prometheus_client.samples import Sample


def families(text: str) -> dict[str, tuple[str, list[Sample]]]:
    """Family name -> (type, samples); raises ValueError where the text is not the format."""
    return {f.name: (f.type, list(f.samples)) for f in text_string_to_metric_families(text)}


def value(text: str, sample: str, **labels: str) -> float:
    """The value of the one sample named ``sample`` whose labels include ``labels``."""
    found = [
        s.value
        for _, samples in families(text).values()
        for s in samples
        if s.name == sample and labels.items() <= s.labels.items()
    ]
    assert len(found) == 1, f"{len(found)} samples {sample}{labels} in:\n{text}"
    return float(found[0])
