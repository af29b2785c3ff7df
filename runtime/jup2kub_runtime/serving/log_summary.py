"""Repeated library log lines summarised: kafka-python logs an ERROR for every failed connect
attempt (every ~60 ms while a broker is away), which buries the runtime's own lines."""

from __future__ import annotations

import logging
import time

#: loggers whose repeated lines are summarised
LIBRARIES = ("kafka",)
#: a line repeated within this many seconds is counted, not written
WINDOW_SECONDS = 60.0


class RepeatSummary(logging.Filter):
    """Passes the first of a library's identical lines (same logger, level and format) per
    window; the next one after the window says how many were left out."""

    def __init__(self, window: float = WINDOW_SECONDS, libraries: tuple[str, ...] = LIBRARIES):
        super().__init__()
        self.window = window
        self.libraries = libraries
        self._seen: dict[tuple[str, int, str], tuple[float, int]] = {}

    def filter(self, record: logging.LogRecord) -> bool:
        if not record.name.startswith(self.libraries):
            return True
        key = (record.name, record.levelno, str(record.msg))
        now = time.monotonic()
        since, skipped = self._seen.get(key, (0.0, 0))
        if since and now - since < self.window:
            self._seen[key] = (since, skipped + 1)
            return False
        self._seen[key] = (now, 0)
        if skipped:
            record.msg = (
                f"{record.msg} (and {skipped} more like it in the last {self.window:.0f} s)"
            )
        return True


def install(window: float = WINDOW_SECONDS) -> None:
    """Summarise repeated library lines on every handler of the root logger."""
    for handler in logging.getLogger().handlers:
        handler.addFilter(RepeatSummary(window))
