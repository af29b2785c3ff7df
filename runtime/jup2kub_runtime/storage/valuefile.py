"""The file format of a stored value (one step output variable, or a group of them), apart
from where it is stored.

Formats (the ``format`` of each entry in a step's ``values.json``):

``pickle5-oob``
    ``MAGIC``, then a cloudpickle stream (protocol 5) written straight to the file (large
    in-band bytes are not copied into an intermediate buffer), then every out-of-band buffer
    (numpy arrays, pandas blocks, ...) at 64-byte aligned offsets, then a JSON trailer
    ``{"pickle": [offset, length], "buffers": [[offset, length], ...]}`` and a footer (trailer
    length as 8 bytes little-endian, ``MAGIC_END``). Loading reads each buffer once into a
    bytearray and unpickles with ``buffers=``: no further copies, and the arrays are writable.
    Spans may overlap (numpy views of one array in a group file, below): an overlapping region
    is read once and its buffers are slices of it, so the arrays share memory again.
``pickle5-oob-group``
    a ``pickle5-oob`` file whose value is a dict ``{name: value}`` of several outputs that may
    be one object or share parts (the step's ``groups``): one pickle stream has one memo, so
    ``b is a`` and ``lst[0] is x`` hold again after loading; numpy arrays that are views of
    one another share memory again (not pandas objects: pickle does not keep what their
    copy-on-write tracks, so sharing would let a change show through that does not in the
    notebook; they load as copies, as apart they behave). Its own name, so that a runtime
    that predates groups refuses the file instead of handing out the dict as the value.
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
from collections.abc import Callable, Mapping
from typing import IO, TYPE_CHECKING, Any

import cloudpickle

if TYPE_CHECKING:  # cloudpickle ships no types: its Pickler is a pickle.Pickler
    from pickle import Pickler as CloudPickler
else:
    from cloudpickle import Pickler as CloudPickler

from ..contract.errors import OutputError

PICKLE_PROTOCOL = 5
VALUE_FORMAT = "pickle5-oob"
GROUP_FORMAT = "pickle5-oob-group"
OLD_VALUE_FORMAT = "cloudpickle"
#: the formats ``load`` reads
FORMATS = (VALUE_FORMAT, GROUP_FORMAT, OLD_VALUE_FORMAT)
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
    return _dump(fh, value, step, {name: value}, writeback=writeback)


def dump_group(
    fh: IO[bytes], values: Mapping[str, Any], step: str, *, writeback: bool = False
) -> tuple[int, int]:
    """Write several outputs as one ``pickle5-oob-group`` file (one pickle stream, so what
    they share is stored once and shared again when loaded; see ``_write_buffers`` for
    arrays that are views of one another); as ``dump_value`` otherwise."""
    return _dump(fh, dict(values), step, values, writeback=writeback, share_views=True)


class _GroupPickler(CloudPickler):
    """Notes whether a pandas object is pickled. pandas (copy-on-write) tracks which of its
    objects share memory, which pickle does not keep: a loaded DataFrame would not know that
    a Series shares its block, and an in-place change of one would show through the other,
    unlike in the notebook. Their buffers are then not shared again on loading."""

    saw_pandas = False

    def reducer_override(self, obj: Any) -> Any:
        if not self.saw_pandas and type(obj).__module__.startswith("pandas"):
            self.saw_pandas = True
        return super().reducer_override(obj)


def _dump(
    fh: IO[bytes],
    payload: Any,
    step: str,
    members: Mapping[str, Any],
    *,
    writeback: bool,
    share_views: bool = False,
) -> tuple[int, int]:
    """Write ``payload`` (one value, or the dict of a group's ``members``) to ``fh``."""
    sink = _Sink(fh, writeback=writeback)
    buffers: list[pickle.PickleBuffer] = []
    sink.write(MAGIC)
    kind = _GroupPickler if share_views else cloudpickle.CloudPickler
    pickler = kind(sink, protocol=PICKLE_PROTOCOL, buffer_callback=buffers.append)
    try:
        pickler.dump(payload)
    except Exception as exc:
        if sink.error is not None:
            raise sink.error from None
        raise _unpicklable(members, step, exc) from exc
    share = share_views and not getattr(pickler, "saw_pandas", True)
    trailer: dict[str, Any] = {"pickle": [len(MAGIC), sink.written - len(MAGIC)]}
    raws: list[memoryview] = []
    try:
        for buf in buffers:
            try:
                raws.append(buf.raw())
            except BufferError as exc:  # pickle refuses non-contiguous buffers in-band too
                name = ", ".join(members)
                raise OutputError(
                    f"variable {name!r} of step {step!r} cannot be stored: {exc}", variable=name
                ) from exc
        trailer["buffers"] = _write_buffers(sink, raws, share=share) if raws else []
    finally:
        for raw in raws:
            raw.release()
        for buf in buffers:
            buf.release()
    tail = json.dumps(trailer, separators=(",", ":")).encode()
    sink.write(tail)
    sink.write(_FOOTER.pack(len(tail), MAGIC_END))
    return sink.written, len(buffers)


def _write_buffers(sink: _Sink, raws: list[memoryview], *, share: bool) -> list[list[int]]:
    """Write the out-of-band buffers at aligned offsets; returns their ``[offset, length]``.
    With ``share``, buffers that overlap in memory (numpy views of one array) are written
    once, as one region, and their spans overlap in the file as in memory, so that loading
    shares the memory again (a runtime that predates this reads them as copies)."""
    leaders, bounds = _regions(raws) if share else (list(range(len(raws))), {})
    spans: list[list[int]] = [[0, raw.nbytes] for raw in raws]
    placed: dict[int, int] = {}  # leader -> file offset of its region's start
    pos = sink.written
    for i, raw in enumerate(raws):
        if leaders[i] != i:
            continue
        region: Any = raw
        if i in bounds:
            lo, hi = bounds[i]
            region = (ctypes.c_char * (hi - lo)).from_address(lo)  # covered by the buffers
        pad = -pos % ALIGN
        sink.write(b"\0" * pad)
        placed[i] = pos = pos + pad
        sink.write(region)
        pos = sink.written
    for i, leader in enumerate(leaders):
        shift = _address(raws[i]) - bounds[leader][0] if leader in bounds else 0
        spans[i][0] = placed[leader] + shift
    return spans


def _regions(raws: list[memoryview]) -> tuple[list[int], dict[int, tuple[int, int]]]:
    """Which buffers overlap in memory: per buffer the index of its region's leader (itself
    when alone), and per leader of a shared region its memory bounds ``(lo, hi)``."""
    leaders = list(range(len(raws)))
    bounds: dict[int, tuple[int, int]] = {}
    if len(raws) < 2:
        return leaders, bounds
    lead, lo, hi = -1, 0, 0
    for addr, nbytes, i in sorted(
        (_address(r), r.nbytes, i) for i, r in enumerate(raws) if r.nbytes
    ):
        if lead >= 0 and addr < hi:
            leaders[i] = lead
            hi = max(hi, addr + nbytes)
            bounds[lead] = (lo, hi)
        else:
            lead, lo, hi = i, addr, addr + nbytes
    return leaders, bounds


class _PyBuffer(ctypes.Structure):
    """CPython's ``Py_buffer`` (stable ABI), to read the address of a buffer's memory."""

    _fields_ = [
        ("buf", ctypes.c_void_p),
        ("obj", ctypes.c_void_p),
        ("len", ctypes.c_ssize_t),
        ("itemsize", ctypes.c_ssize_t),
        ("readonly", ctypes.c_int),
        ("ndim", ctypes.c_int),
        ("format", ctypes.c_char_p),
        ("shape", ctypes.c_void_p),
        ("strides", ctypes.c_void_p),
        ("suboffsets", ctypes.c_void_p),
        ("internal", ctypes.c_void_p),
    ]


_get_buffer = ctypes.pythonapi.PyObject_GetBuffer
_get_buffer.argtypes = [ctypes.py_object, ctypes.POINTER(_PyBuffer), ctypes.c_int]
_get_buffer.restype = ctypes.c_int
_release_buffer = ctypes.pythonapi.PyBuffer_Release
_release_buffer.argtypes = [ctypes.POINTER(_PyBuffer)]
_release_buffer.restype = None


def _address(raw: memoryview) -> int:
    """The address of the first byte of ``raw`` (a contiguous, non-empty buffer)."""
    view = _PyBuffer()
    _get_buffer(raw, ctypes.byref(view), 0)  # PyBUF_SIMPLE; a failure raises
    try:
        return int(view.buf or 0)
    finally:
        _release_buffer(ctypes.byref(view))


class _NullSink:
    """Discards what is written (to find which member of a group cannot be pickled)."""

    def write(self, data: Any) -> int:
        return memoryview(data).nbytes


def _unpicklable(members: Mapping[str, Any], step: str, exc: Exception) -> OutputError:
    """The explained OutputError for the member that cannot be pickled (for a group, the
    first one that fails alone; only on this failure path are members pickled one by one)."""
    name, value = next(iter(members.items()))
    if len(members) > 1:
        for member, candidate in members.items():
            try:
                cloudpickle.CloudPickler(
                    _NullSink(), protocol=PICKLE_PROTOCOL, buffer_callback=lambda b: False
                ).dump(candidate)
            except Exception as member_exc:  # its reason is the one reported
                name, value, exc = member, candidate, member_exc
                break
        else:
            name, value = ", ".join(members), dict(members)
    return OutputError(
        f"variable {name!r} of step {step!r} ({type(value).__qualname__}) cannot be stored "
        f"for the next steps: {type(exc).__name__}: {exc}; move the code that uses it "
        "into the step that creates it",
        variable=name,
    )


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
    buffers: list[bytearray | memoryview] = [bytearray()] * len(spans)
    for lo, hi, members in _file_regions(spans):
        data = _read_span(fh, lo, hi - lo)
        if len(members) == 1:  # alone: the bytearray itself, as always
            buffers[members[0]] = data
            continue
        view = memoryview(data)  # views of one array: slices of one region, shared again
        for i in members:
            buffers[i] = view[spans[i][0] - lo : spans[i][0] - lo + spans[i][1]]
    fh.seek(start)
    return pickle.Unpickler(fh, buffers=buffers).load()


def loads_own(data: bytes, references: Callable[[Any], Any] | None = None) -> Any:
    """Unpickle bytes a process of this pipeline wrote itself (a map's chunk files on the
    state volume, a forked chunk process's pipe), never a message's; ``references`` resolves
    the persistent ids of objects sent by reference (a map's items and shared values)."""
    if references is None:
        return pickle.Unpickler(io.BytesIO(data)).load()
    return _ByReference(io.BytesIO(data), references).load()


class _ByReference(pickle.Unpickler):
    """Resolves persistent ids (objects sent by reference) with ``references``."""

    def __init__(self, fh: io.BytesIO, references: Callable[[Any], Any]) -> None:
        super().__init__(fh)
        self._references = references

    def persistent_load(self, pid: Any) -> Any:
        return self._references(pid)


def _file_regions(spans: list[tuple[int, int]]) -> list[tuple[int, int, list[int]]]:
    """The spans of a value file's buffers merged where they overlap: ``(lo, hi, indexes)``."""
    regions: list[tuple[int, int, list[int]]] = []
    for offset, nbytes, i in sorted((o, n, i) for i, (o, n) in enumerate(spans)):
        if regions and nbytes and offset < regions[-1][1]:
            lo, hi, members = regions[-1]
            regions[-1] = (lo, max(hi, offset + nbytes), [*members, i])
        else:
            regions.append((offset, offset + nbytes, [i]))
    return regions


def _read_span(fh: IO[bytes], offset: int, nbytes: int) -> bytearray:
    """``nbytes`` at ``offset`` of ``fh``, read straight into a new bytearray."""
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
    return data


def dumps_value(name: str, value: Any, step: str) -> bytes:
    """One output in the ``pickle5-oob`` format, in memory (tests, tools)."""
    buf = io.BytesIO()
    dump_value(buf, name, value, step)
    return buf.getvalue()


def load(fh: IO[bytes], fmt: str) -> Any:
    """Read one value in format ``fmt`` (one of ``FORMATS``) from the open file ``fh``; for
    ``GROUP_FORMAT``, the dict of the group's members."""
    if fmt == VALUE_FORMAT:
        return load_value_file(fh)
    if fmt == GROUP_FORMAT:
        members = load_value_file(fh)
        if not isinstance(members, dict):
            raise ValueFormatError(f"a value group holds a {type(members).__qualname__}")
        return members
    if fmt == OLD_VALUE_FORMAT:
        return pickle.load(fh)
    raise ValueFormatError(f"unknown value format {fmt!r}")
