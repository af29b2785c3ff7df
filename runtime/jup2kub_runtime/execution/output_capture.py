"""What the cells show, recorded as nbclient records a kernel's messages: streams buffered and
flushed as ipykernel does, ``clear_output`` (also ``wait=True``), display ids rewriting earlier
outputs; sys.stdout/err routed into the running cell's record meanwhile."""

from __future__ import annotations

import contextlib
import io
import sys
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any, TextIO

Output = dict[str, Any]


@dataclass
class CellRecord:
    """What one cell produced."""

    index: int
    outputs: list[Output] = field(default_factory=list)
    seconds: float = 0.0
    execution_count: int | None = None
    #: wall-clock start (epoch seconds): the results notebook's per-cell timings
    started_at: float | None = None
    #: every display/update with a display id, in order: it rewrites earlier outputs
    #: with that id, also other steps' (the results notebook applies those)
    display_events: list[Output] = field(default_factory=list)
    display_ids: dict[str, str] = field(default_factory=dict)  # output position -> id

    def to_dict(self) -> dict[str, Any]:
        doc: dict[str, Any] = {
            "index": self.index,
            "execution_count": self.execution_count,
            "seconds": round(self.seconds, 6),
            "outputs": self.outputs,
        }
        if self.started_at is not None:
            doc["started_at"] = round(self.started_at, 6)
        if self.display_events:
            doc["display_events"] = self.display_events
        if self.display_ids:
            doc["display_ids"] = self.display_ids
        return doc


class _Router(io.TextIOBase):
    """Stands in for sys.stdout/err: appends text to the current cell's stream output."""

    def __init__(
        self,
        name: str,
        sink: Callable[[str, str], None],
        flush: Callable[[str], None],
        echo: TextIO | None,
    ) -> None:
        self.name = name
        self._sink = sink
        self._flush = flush
        self._echo = echo

    def writable(self) -> bool:
        return True

    def write(self, text: str) -> int:
        if not isinstance(text, str):
            raise TypeError(f"write() argument must be str, not {type(text).__name__}")
        if text:
            self._sink(self.name, text)
            if self._echo is not None:
                self._echo.write(text)
        return len(text)

    def flush(self) -> None:
        self._flush(self.name)
        if self._echo is not None:
            self._echo.flush()

    def isatty(self) -> bool:
        return False


#: ipykernel's OutStream flushes a stream this long after its first unflushed write
FLUSH_INTERVAL = 0.2


class Capture:
    """Collects outputs for the cell being executed, as nbclient records a kernel's messages.

    Streams are buffered per stream like ipykernel's OutStream and flushed on ``flush()``,
    before any display, clear or error, when FLUSH_INTERVAL has passed since the first
    unflushed write (the kernel's timer, checked at the next event) and at the end of the
    cell (stdout first). ``clear_output(wait=True)`` clears when the next output arrives;
    outputs published with a display id are rewritten in place by later displays/updates
    with that id, as nbclient does (events also kept per cell for other steps' outputs)."""

    def __init__(self) -> None:
        self.current: list[Output] = []
        self.record: CellRecord | None = None
        self._lock = threading.RLock()
        self._pending: dict[str, list[Any]] = {}  # stream -> [text, first write time]
        self._clear_before_next = False
        self._by_id: dict[str, list[Output]] = {}

    def stream(self, name: str, text: str) -> None:
        with self._lock:
            self._timed_flush()
            pending = self._pending.setdefault(name, ["", 0.0])
            if not pending[0]:
                pending[1] = time.monotonic()
            pending[0] += text

    def _timed_flush(self) -> None:
        now = time.monotonic()
        due = [
            (t, n) for n, (text, t) in self._pending.items() if text and now - t >= FLUSH_INTERVAL
        ]
        for _, name in sorted(due):
            self.flush(name)

    def flush(self, name: str) -> None:
        with self._lock:
            pending = self._pending.get(name)
            if pending and pending[0]:
                text, pending[0] = pending[0], ""
                self._append({"output_type": "stream", "name": name, "text": text})

    def flush_all(self) -> None:
        """What ipykernel does before publishing anything and at the end of a cell."""
        with self._lock:
            self._timed_flush()
            self.flush("stdout")
            self.flush("stderr")

    def _append(self, output: Output) -> None:
        self.clear_if_pending()
        last = self.current[-1] if self.current else None
        if (
            output["output_type"] == "stream"
            and last
            and last["output_type"] == "stream"
            and last["name"] == output["name"]
        ):
            last["text"] += output["text"]
        else:
            self.current.append(output)

    def clear_if_pending(self) -> None:
        with self._lock:
            if self._clear_before_next:
                self._clear_before_next = False
                self._clear_now()

    def _clear_now(self) -> None:
        gone = {id(o) for o in self.current}
        self.current[:] = []
        for outputs in self._by_id.values():
            outputs[:] = [o for o in outputs if id(o) not in gone]

    def add(self, output: Output) -> None:
        with self._lock:
            self.flush_all()
            self._append(output)

    def clear(self, wait: bool = False) -> None:
        with self._lock:
            self.flush_all()
            if wait:
                self._clear_before_next = True
            else:
                self._clear_now()

    def publish(
        self, data: dict[str, Any], metadata: dict[str, Any], display_id: str | None, update: bool
    ) -> None:
        """A display_data (or update_display_data) message as nbclient applies it."""
        with self._lock:
            self.flush_all()
            if display_id:
                for earlier in self._by_id.get(display_id, []):
                    earlier["data"], earlier["metadata"] = dict(data), dict(metadata)
                if self.record is not None:
                    self.record.display_events.append(
                        {"display_id": display_id, "data": data, "metadata": metadata}
                    )
            if update:
                return
            output = {"output_type": "display_data", "data": data, "metadata": metadata}
            self._append(output)
            if display_id:
                self._by_id.setdefault(display_id, []).append(output)

    def display_ids(self, outputs: list[Output]) -> dict[str, str]:
        """Position (as a string, for JSON) -> display id of the outputs that have one."""
        ids = {id(o): d for d, outs in self._by_id.items() for o in outs}
        return {str(i): ids[id(o)] for i, o in enumerate(outputs) if id(o) in ids}


_active: Capture | None = None  # the running execution's (``patched_io``), for plt.show()


def active_capture() -> Capture | None:
    """The capture of the execution running now, if any."""
    return _active


class patched_io:
    """sys.stdout/err routed into ``capture`` meanwhile (``echo``: also to the real ones)."""

    def __init__(self, capture: Capture, echo: bool) -> None:
        self.capture = capture
        self.echo = echo

    def __enter__(self) -> None:
        global _active
        _active = self.capture
        self.saved = (sys.stdout, sys.stderr)
        out, err = self.saved if self.echo else (None, None)
        sys.stdout = _Router("stdout", self.capture.stream, self.capture.flush, out)
        sys.stderr = _Router("stderr", self.capture.stream, self.capture.flush, err)

    def __exit__(self, *exc: object) -> None:
        global _active
        _active = None
        sys.stdout, sys.stderr = self.saved


@contextlib.contextmanager
def echoed_into(path: str | None) -> Iterator[bool]:
    """With ``path``: sys.stdout/err are that file (appended, line-buffered) meanwhile, so an
    execution echoing its cells' output (``patched_io``) writes it there, apart from the
    process' own log; yields whether to echo."""
    if not path:
        yield False
        return
    with open(path, "a", buffering=1, encoding="utf-8", errors="replace") as file:
        saved = sys.stdout, sys.stderr
        sys.stdout = sys.stderr = file
        try:
            yield True
        finally:
            sys.stdout, sys.stderr = saved
