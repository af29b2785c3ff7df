"""Fixtures for the runtime tests: a real Kafka broker and real step processes."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.support.kafka_broker import KafkaBroker


@pytest.fixture(scope="session")
def broker(tmp_path_factory: pytest.TempPathFactory) -> Iterator[KafkaBroker]:
    """A broker shared by the tests that do not stop it (each uses its own pipeline name)."""
    b = KafkaBroker(tmp_path_factory.mktemp("kafka"))
    b.start()
    try:
        yield b
    finally:
        b.stop()


@pytest.fixture
def own_broker(tmp_path: Path) -> Iterator[KafkaBroker]:
    """A broker for one test that stops and restarts it."""
    b = KafkaBroker(tmp_path / "kafka")
    b.start()
    try:
        yield b
    finally:
        b.stop()
