"""One Kafka producer per process and configuration, shared by every thread that submits.

Opening a ``KafkaProducer`` costs about 150 ms (connection, metadata, API version probe): a
producer per run capped the library's submit at ~26 runs/s from 8 threads. kafka-python's
producer is thread-safe, so one per (bootstrap, settings) serves them all, and concurrent
sends share its batches. It is closed (its pending messages flushed) at interpreter exit; a
forked child starts with none, as the parent's sockets and sender thread are not its own.
"""

from __future__ import annotations

import atexit
import contextlib
import os
import threading
from collections.abc import Callable, Hashable
from typing import Any


class SharedProducers:
    """Producers by key, made on first use under a lock and reused until discarded."""

    def __init__(
        self, close: Callable[[Any], None], abandon: Callable[[Any], None] = lambda _p: None
    ) -> None:
        self._close = close
        self._abandon = abandon
        self._lock = threading.Lock()
        self._producers: dict[Hashable, Any] = {}
        self.made = 0  # how many producers this process has made (what tests count)

    def get(self, key: Hashable, make: Callable[[], Any]) -> Any:
        """The producer for ``key``; ``make()`` one (once, whichever thread asks first) if
        there is none. ``make`` may raise: nothing is kept then, and the next call tries again."""
        with self._lock:
            producer = self._producers.get(key)
            if producer is None:
                producer = self._producers[key] = make()
                self.made += 1
            return producer

    def discard(self, key: Hashable, producer: Any) -> None:
        """Drop a producer that failed (its broker gone): the next ``get`` makes a new one.
        Only if it is still the one kept, so that threads failing together close it once."""
        with self._lock:
            if self._producers.get(key) is not producer:
                return
            del self._producers[key]
        self._close(producer)

    def close_all(self) -> None:
        """Flush and close every producer (at exit: messages sent are not left behind)."""
        with self._lock:
            producers = list(self._producers.values())
            self._producers.clear()
        for producer in producers:
            with contextlib.suppress(Exception):  # at exit: nobody is left to tell
                self._close(producer)

    def forget(self) -> None:
        """In a forked child: the parent's producers (and a lock another thread may have held
        at the fork) are not this process'; it makes its own. The parent's are abandoned
        first: closing one here (its finalizer, when dropped) would wait on locks its sender
        thread held at the fork, a thread the child does not have (a hang, seen in CI)."""
        for producer in self._producers.values():
            self._abandon(producer)
        self._lock = threading.Lock()
        self._producers = {}
        self.made = 0


def shared(
    close: Callable[[Any], None], abandon: Callable[[Any], None] = lambda _p: None
) -> SharedProducers:
    """A process-wide pool: closed at exit, emptied in a forked child (``abandon`` makes an
    inherited producer inert there: never flushed, never closed)."""
    pool = SharedProducers(close, abandon)
    atexit.register(pool.close_all)
    if hasattr(os, "register_at_fork"):
        os.register_at_fork(after_in_child=pool.forget)
    return pool
