"""Kafka topic names of a pipeline (shared with the generator and the chart)."""

from __future__ import annotations

from collections.abc import Sequence


def runs_topic(pipeline: str) -> str:
    """Entry topic: one message per run, consumed by every root step (each in its own group)."""
    return f"{pipeline}.runs"


def edge_topic(pipeline: str, upstream: str, downstream: str) -> str:
    """One topic per DAG edge: ``upstream`` announces a completed run to ``downstream``."""
    return f"{pipeline}.edge.{upstream}.{downstream}"


def status_topic(pipeline: str) -> str:
    return f"{pipeline}.status"


def dead_letter_topic(pipeline: str) -> str:
    return f"{pipeline}.dead-letter"


def consumer_group(pipeline: str, step: str) -> str:
    return f"{pipeline}.{step}"


def input_topics(pipeline: str, step: str, upstream: Sequence[str]) -> list[str]:
    """What a step consumes: one edge per upstream step, or the runs topic for a root step."""
    return [edge_topic(pipeline, u, step) for u in upstream] or [runs_topic(pipeline)]


def output_topics(pipeline: str, step: str, downstream: Sequence[str]) -> list[str]:
    """What a step produces to: one edge per downstream step (none for a leaf)."""
    return [edge_topic(pipeline, step, d) for d in downstream]


def elements_topic(pipeline: str, step: str) -> str:
    """A map step's chunks (one message per chunk, ``serving.map_distribution``), consumed by
    every replica."""
    return f"{pipeline}.map.{step}"
