"""The file format of a stored value (one step output variable), apart from where it is stored.

Formats (the ``format`` of each entry in a step's ``values.json``):

``pickle5-oob``
    ``MAGIC``, then a cloudpickle stream (protocol 5) written straight to the file (large
    in-band bytes are not copied into an intermediate buffer), then every out-of-band buffer
    (numpy arrays, pandas blocks, ...) at 64-byte aligned offsets, then a JSON trailer
    ``{"pickle": [offset, length], "buffers": [[offset, length], ...]}`` and a footer (trailer
    length as 8 bytes little-endian, ``MAGIC_END``). Loading reads each buffer once into a
    bytearray and unpickles with ``buffers=``: no further copies, and the arrays are writable.
``cloudpickle``
    (older files) one cloudpickle stream; still read.

Only files are ever unpickled here, never anything that arrived in a Kafka message: the state
store opens the files named by the manifest of a completed step.
"""

from __future__ import annotations

import ctypes
import io
import json
import os
import pickle
import struct
from collections.abc import Callable
from typing import IO, Any

import cloudpickle

from .errors import OutputError

PICKLE_PROTOCOL = 5
VALUE_FORMAT = "pickle5-oob"
OLD_VALUE_FORMAT = "cloudpickle"
#: the formats ``load`` reads
FORMATS = (VALUE_FORMAT, OLD_VALUE_FORMAT)
MAGIC = b"J2KPKL5\n"
MAGIC_END = b"J2KEND5\n"
ALIGN = 64
_FOOTER = struct.Struct("<Q8s")


class ValueFormatError(ValueError):
    """A value file that is not in the format its manifest names (truncated, foreign)."""


def _libc_sync_file_range() -> Callable[[int, int, int], None] | None:
    """Linux's sync_file_range(SYNC_FILE_RANGE_WRITE): start writing a range back to disk
    without waiting, so that a large value's fsync finds little left to do."""
    try:
        fn = ctypes.CDLL(None, use_errno=True).sync_file_range
    except (OSError, AttributeError):  # not Linux
        return None
    fn.argtypes = [ctypes.c_int, ctypes.c_int64, ctypes.c_int64, ctypes.c_uint]
    fn.restype = ctypes.c_int

    def start_writeback(fd: int, offset: int, nbytes: int) -> None:
        fn(fd, offset, nbytes, 2)  # SYNC_FILE_RANGE_WRITE; a failure only loses the head start

    return start_writeback


_start_writeback = _libc_sync_file_range()


class _Sink:
    """The file a value is written to: tells the volume's errors (OSError, recorded) from the
    value's, and with ``writeback`` starts writing every ``CHUNK`` bytes back to disk while
    the rest is still being written (copying and disk I/O overlap)."""

    CHUNK = 8 << 20

    def __init__(self, fh: IO[bytes], *, writeback: bool) -> None:
        self.fh = fh
        self.error: OSError | None = None
        self.written = 0
        self.synced = 0
        self.writeback = writeback and _start_writeback is not None

    def write(self, data: Any) -> int:
        try:
            view = memoryview(data)
            if view.ndim != 1 or view.format != "B":
                view = view.cast("B")
            n = view.nbytes
            for off in range(0, n, self.CHUNK) if n > self.CHUNK else (0,):
                part = view[off : off + self.CHUNK] if n > self.CHUNK else view
                self.fh.write(part)
                self.written += part.nbytes
                if self.writeback and self.written - self.synced >= self.CHUNK:
                    self.fh.flush()
                    assert _start_writeback is not None
                    _start_writeback(self.fh.fileno(), self.synced, self.written - self.synced)
                    self.synced = self.written
            return n
        except OSError as exc:
            self.error = exc
            raise


def dump_value(
    fh: IO[bytes], name: str, value: Any, step: str, *, writeback: bool = False
) -> tuple[int, int]:
    """Write one output in the ``pickle5-oob`` format to ``fh`` (at its start); returns
    (bytes written, out-of-band buffers). An unpicklable value is a permanent, explained
    OutputError; a volume error is an OSError. ``writeback``: start writing large files back
    to disk early (the caller fsyncs them)."""
    sink = _Sink(fh, writeback=writeback)
    buffers: list[pickle.PickleBuffer] = []
    sink.write(MAGIC)
    try:
        cloudpickle.CloudPickler(
            sink, protocol=PICKLE_PROTOCOL, buffer_callback=buffers.append
        ).dump(value)
    except Exception as exc:
        if sink.error is not None:
            raise sink.error from None
        raise OutputError(
            f"variable {name!r} of step {step!r} ({type(value).__qualname__}) cannot be stored "
            f"for the next steps: {type(exc).__name__}: {exc}; move the code that uses it "
            "into the step that creates it",
            variable=name,
        ) from exc
    pos = sink.written
    trailer: dict[str, Any] = {"pickle": [len(MAGIC), pos - len(MAGIC)], "buffers": []}
    for buf in buffers:
        try:
            raw = buf.raw()
        except BufferError as exc:  # pickle refuses non-contiguous buffers in-band too
            raise OutputError(
                f"variable {name!r} of step {step!r} cannot be stored: {exc}", variable=name
            ) from exc
        with raw:
            pad = -pos % ALIGN
            sink.write(b"\0" * pad)
            pos += pad
            sink.write(raw)
            trailer["buffers"].append([pos, raw.nbytes])
            pos += raw.nbytes
        buf.release()
    tail = json.dumps(trailer, separators=(",", ":")).encode()
    sink.write(tail)
    sink.write(_FOOTER.pack(len(tail), MAGIC_END))
    return sink.written, len(buffers)


def load_value_file(fh: IO[bytes]) -> Any:
    """Read one value written by ``dump_value`` from the open file ``fh``."""
    size = os.fstat(fh.fileno()).st_size
    if size < len(MAGIC) + _FOOTER.size or fh.read(len(MAGIC)) != MAGIC:
        raise ValueFormatError("not a pickle5-oob value file")
    fh.seek(size - _FOOTER.size)
    tail_len, end = _FOOTER.unpack(fh.read(_FOOTER.size))
    if end != MAGIC_END or tail_len > size - len(MAGIC) - _FOOTER.size:
        raise ValueFormatError("truncated value file (no footer)")
    fh.seek(size - _FOOTER.size - tail_len)
    try:
        trailer = json.loads(fh.read(tail_len))
        start, length = (int(x) for x in trailer["pickle"])
        spans = [(int(o), int(n)) for o, n in trailer["buffers"]]
    except (ValueError, KeyError, TypeError) as exc:
        raise ValueFormatError(f"bad trailer: {exc}") from exc
    limit = size - _FOOTER.size - tail_len
    if any(o < 0 or n < 0 or o + n > limit for o, n in [(start, length), *spans]):
        raise ValueFormatError("trailer points outside the file")
    buffers: list[bytearray] = []
    for offset, nbytes in spans:
        data = bytearray(nbytes)
        view = memoryview(data)
        fh.seek(offset)
        got = 0
        while got < nbytes:
            n = fh.readinto(view[got:])  # type: ignore[attr-defined]
            if not n:
                raise ValueFormatError("truncated buffer")
            got += n
        view.release()
        buffers.append(data)
    fh.seek(start)
    return pickle.Unpickler(fh, buffers=buffers).load()


def dumps_value(name: str, value: Any, step: str) -> bytes:
    """One output in the ``pickle5-oob`` format, in memory (tests, tools)."""
    buf = io.BytesIO()
    dump_value(buf, name, value, step)
    return buf.getvalue()


def load(fh: IO[bytes], fmt: str) -> Any:
    """Read one value in format ``fmt`` (one of ``FORMATS``) from the open file ``fh``."""
    if fmt == VALUE_FORMAT:
        return load_value_file(fh)
    if fmt == OLD_VALUE_FORMAT:
        return pickle.load(fh)
    raise ValueFormatError(f"unknown value format {fmt!r}")
