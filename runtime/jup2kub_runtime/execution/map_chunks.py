"""Runs a map cell (``mapspec.MapSpec``): its elements in parallel chunks, results in order.

Each chunk runs in a process forked from the step's process (up to ``J2K_MAP_JOBS`` at a time,
default: the CPU count), so it sees the step's namespace as it is when the loop starts. In a
chunk every accumulator is a ``_Recorder`` that records ``append``/``extend``/``add``/item
assignment; the step's process then replays the chunks' operations on the real objects in
chunk order, which is the order the notebook's loop performs them in. What an element shows
(prints, displays) is replayed in the same order. An element that draws from the global random
generators, changes a value the elements share, or leaves a figure open fails the step,
naming the element's index: the analysis (``jup2kub.model.mapping``) refuses what it can see,
these checks catch what it cannot.
"""

from __future__ import annotations

import contextlib
import io
import linecache
import math
import os
import pickle
import selectors
import signal
import struct
import sys
import threading
import time
import traceback
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any, NoReturn, Protocol

from ..contract.config import MAP_JOBS_ENV
from ..contract.mapspec import ACC, ITEM, MapSpec
from ..storage.state_store import loads_own
from . import randomness
from .guards import fingerprint
from .lifetime import die_with_parent

#: elements per worker aimed at by the automatic chunk size (load balance vs overhead)
CHUNKS_PER_WORKER = 4
_UNSET = object()


class Distributor(Protocol):
    """Runs a map cell's chunks elsewhere (on a Kafka pipeline: every replica of the step,
    ``serving.map_distribution``); returns their results in chunk order."""

    def run(
        self, spec: MapSpec, chunks: list[tuple[int, list[Any]]], shared: dict[str, Any]
    ) -> list[ChunkResult]: ...

    def parallelism(self) -> int:
        """Workers to size the automatic chunks for."""


_current = threading.local()


@contextlib.contextmanager
def distributing(distributor: Distributor | None) -> Iterator[None]:
    """Map cells executed by this thread meanwhile run their chunks through ``distributor``."""
    _current.distributor = distributor
    try:
        yield
    finally:
        _current.distributor = None


@dataclass(frozen=True)
class RetryPolicy:
    """How often a failing element is tried again, and after how long: the step's policy
    (``Config.max_retries`` / ``retry_delay`` on Kafka, ``local_policy`` in a local run)."""

    retries: int = 0
    backoff: float = 1.0
    backoff_max: float = 60.0

    def delay(self, attempt: int) -> float:
        """Seconds before retry number ``attempt`` (1-based): doubled each time, capped."""
        return float(min(self.backoff * 2.0 ** (attempt - 1), self.backoff_max))


def local_policy() -> RetryPolicy:
    """A local run's element retries: J2K_MAX_RETRIES and J2K_RETRY_BACKOFF_SECONDS, the
    variables a Kafka runtime reads its policy from; none unless set (a local run fails fast)."""
    try:
        retries = max(0, int(os.environ.get("J2K_MAX_RETRIES", "") or 0))
        backoff = max(0.0, float(os.environ.get("J2K_RETRY_BACKOFF_SECONDS", "") or 1.0))
    except ValueError:
        return RetryPolicy()
    return RetryPolicy(retries, backoff)


class MapElementError(Exception):
    """An element of a map cell failed: its index, the exception and the element's traceback."""


@dataclass
class ChunkResult:
    """What one chunk did: accumulator operations, the loop's last bindings, what it showed,
    and the first failure (index, text) if any."""

    ops: list[tuple[str, str, tuple[Any, ...]]] = field(default_factory=list)
    carry: dict[str, Any] = field(default_factory=dict)
    outputs: list[dict[str, Any]] = field(default_factory=list)
    error: tuple[int, str, str] | None = None  # (index, "Type: message", traceback text)


class _Recorder:
    """Stands for an accumulator inside a chunk: records what the loop body does to it."""

    def __init__(self, name: str, ops: list[tuple[str, str, tuple[Any, ...]]]) -> None:
        self._name = name
        self._ops = ops

    def append(self, item: Any) -> None:
        self._ops.append((self._name, "append", (item,)))

    def add(self, item: Any) -> None:
        self._ops.append((self._name, "add", (item,)))

    def extend(self, items: Any) -> None:
        self._ops.append((self._name, "extend", (list(items),)))

    def __setitem__(self, key: Any, value: Any) -> None:
        self._ops.append((self._name, "__setitem__", (key, value)))


def map_jobs() -> int:
    """How many chunks run at once (J2K_MAP_JOBS, default the CPU count)."""
    try:
        return max(1, int(os.environ.get(MAP_JOBS_ENV, "") or (os.cpu_count() or 1)))
    except ValueError:
        return max(1, os.cpu_count() or 1)


def chunk_size(n: int, jobs: int, override: int | None) -> int:
    """Elements per chunk: the override, else about CHUNKS_PER_WORKER chunks per worker."""
    if override is not None:
        return max(1, override)
    return max(1, math.ceil(n / (jobs * CHUNKS_PER_WORKER)))


def run_map(
    spec: MapSpec,
    ns: dict[str, Any],
    filename: str,
    cell_source: str,
    run_source: Callable[[str, str, dict[str, Any]], tuple[bool, Any]],
    capture: Any,
) -> tuple[bool, Any]:
    """Run the map cell in ``ns`` as the notebook would; returns ``run_source``'s (shown,
    value) of the cell's last statement. ``capture`` is the execution's output capture."""
    lines = (len(cell_source), None, cell_source.splitlines(True), filename)
    try:
        run_source(spec.before, filename, ns)
        linecache.cache[filename] = lines  # an element's traceback shows the cell's lines
        items = list(eval(compile(spec.iterable, filename, "eval", dont_inherit=True), ns))
        distributor: Distributor | None = getattr(_current, "distributor", None)
        jobs = map_jobs() if distributor is None else distributor.parallelism()
        size = chunk_size(len(items), jobs, spec.chunk)
        chunks = [(i, items[i : i + size]) for i in range(0, len(items), size)]
        code = compile(spec.element, filename, "exec", dont_inherit=True)
        watched = _watched(spec, ns)
        policy = local_policy()
        work = functools_partial(_run_chunk, spec, ns, code, watched, capture, policy)
        shared = {name: ns[name] for name in spec.reads if name in ns}
        if distributor is not None and chunks:
            capture.flush_all()
            results = distributor.run(spec, chunks, shared)
        elif jobs > 1 and len(chunks) > 1 and hasattr(os, "fork"):
            results = _in_processes(chunks, work, jobs, capture, shared, policy.retries)
        else:
            results = [work(start, chunk, forked=False) for start, chunk in chunks]
        _assemble(spec, ns, items, results, capture)
        run_source(spec.finish, filename, ns)
        return run_source(spec.after, filename, ns) if spec.after.strip() else (False, None)
    finally:
        ns.pop(ITEM, None)
        linecache.cache[filename] = lines


def functools_partial(fn: Callable[..., Any], *args: Any) -> Callable[..., ChunkResult]:
    """``functools.partial`` with the keyword ``forked`` passed through (typed for mypy)."""

    def call(start: int, chunk: list[Any], *, forked: bool) -> ChunkResult:
        result: ChunkResult = fn(*args, start, chunk, forked=forked)
        return result

    return call


def _watched(spec: MapSpec, ns: dict[str, Any]) -> dict[str, bytes]:
    """Fingerprints of the shared values the elements read (those pickle can digest)."""
    found: dict[str, bytes] = {}
    for name in spec.reads:
        if name in ns and name not in spec.accumulators and _is_data(ns[name]):
            digest = fingerprint(ns[name])
            if digest is not None:
                found[name] = digest
    return found


def _is_data(value: Any) -> bool:
    return not callable(value) and type(value).__name__ != "module"


def _run_chunk(
    spec: MapSpec,
    ns: dict[str, Any],
    code: Any,
    watched: dict[str, bytes],
    capture: Any,
    policy: RetryPolicy,
    start: int,
    chunk: list[Any],
    *,
    forked: bool,
) -> ChunkResult:
    """Run the elements ``chunk`` (the first has index ``start``) in ``ns``, each tried again
    on failure as ``policy`` says; the chunk stops at an element that still fails."""
    result = ChunkResult()
    saved = {name: ns.get(name, _UNSET) for name in [*spec.accumulators, *spec.carry]}
    for name in spec.accumulators:
        ns[name] = _Recorder(name, result.ops)
    random_before = randomness.fingerprint()
    if forked:
        capture.flush_all()
        capture.current = []
    index = start
    try:
        for offset, item in enumerate(chunk):
            index = start + offset
            result.error = _element(spec, ns, code, capture, policy, result, index, item)
            if result.error is not None:
                break
        if result.error is None:
            result.error = _checks(spec, ns, watched, random_before, index)
    finally:
        for name, value in saved.items():
            if value is _UNSET:
                ns.pop(name, None)
            else:
                ns[name] = value
    if forked:
        capture.flush_all()
        result.outputs = list(capture.current)
    return result


def _element(
    spec: MapSpec,
    ns: dict[str, Any],
    code: Any,
    capture: Any,
    policy: RetryPolicy,
    result: ChunkResult,
    index: int,
    item: Any,
) -> tuple[int, str, str] | None:
    """Run one element, trying it again while it raises and ``policy`` allows; a failed
    try leaves nothing behind (its accumulator operations, outputs and bindings are
    dropped). Returns the last try's failure, or None."""
    for attempt in range(1, policy.retries + 2):
        for name in spec.carry:
            ns[name] = _UNSET
        ns[ITEM] = item
        mark = len(result.ops)
        failure: tuple[int, str, str] | None = None
        with _attempt_outputs(capture) as shown:
            try:
                exec(code, ns)
            except Exception as exc:  # the element's code may raise anything
                failure = (index, _describe(exc), _traceback(exc))
            except BaseException as exc:  # an interrupt: no retry
                failure, attempt = (index, _describe(exc), _traceback(exc)), policy.retries + 1
        if failure is None or attempt > policy.retries:
            _show(capture, shown)  # the notebook shows what the failing element printed too
            break
        del result.ops[mark:]
        time.sleep(policy.delay(attempt))
    if failure is None:
        for name in spec.carry:
            if ns.get(name, _UNSET) is not _UNSET:
                result.carry[name] = ns[name]
    return failure


@contextlib.contextmanager
def _attempt_outputs(capture: Any) -> Iterator[list[dict[str, Any]]]:
    """What one try of an element shows, kept apart from the cell's outputs (``_show``
    adds it once the try is known good): a fresh output list and stream buffer meanwhile."""
    shown: list[dict[str, Any]] = []
    saved = capture.current, capture._pending
    capture.current, capture._pending = [], {}
    try:
        yield shown
    finally:
        capture.flush_all()
        shown.extend(capture.current)
        capture.current, capture._pending = saved


def _show(capture: Any, outputs: list[dict[str, Any]]) -> None:
    for output in outputs:
        if output.get("output_type") == "stream":
            capture.stream(output["name"], output["text"])
        else:
            capture.add(output)


def _checks(
    spec: MapSpec, ns: dict[str, Any], watched: dict[str, bytes], random_before: Any, index: int
) -> tuple[int, str, str] | None:
    """What the analysis could not see: a draw, a change to a shared value, an open figure."""
    drawn = randomness.changed(random_before, randomness.fingerprint())
    if drawn:
        return (
            index,
            f"RuntimeError: the element drew from {randomness.GENERATORS[drawn[0]]}; elements "
            "run apart, so they cannot continue the notebook's random stream",
            "",
        )
    for name, digest in watched.items():
        if name in ns and fingerprint(ns[name]) != digest:
            return (
                index,
                f"RuntimeError: the element changed {name!r}, which all elements share; elements "
                "run apart, so the change would be lost",
                "",
            )
    pyplot = sys.modules.get("matplotlib.pyplot")
    if pyplot is not None and pyplot.get_fignums():
        return (
            index,
            "RuntimeError: the element left a matplotlib figure open; a map cell's elements "
            "cannot draw (draw in a later cell)",
            "",
        )
    return None


def _describe(exc: BaseException) -> str:
    return f"{type(exc).__name__}: {exc}"


def _traceback(exc: BaseException) -> str:
    here = os.path.abspath(__file__)
    te = traceback.TracebackException.from_exception(exc)
    te.stack = traceback.StackSummary.from_list(
        [f for f in te.stack if os.path.abspath(f.filename) != here]
    )
    return "".join(te.format()).rstrip("\n")


def _assemble(
    spec: MapSpec,
    ns: dict[str, Any],
    items: list[Any],
    results: list[ChunkResult],
    capture: Any,
) -> None:
    """Replay the chunks in order: outputs, accumulator operations, the loop's last bindings;
    the first failed element raises MapElementError (the chunks before it are replayed)."""
    for result in results:
        _show(capture, result.outputs)
        for name, method, args in result.ops:
            getattr(ns[name], method)(*args)
        ns.update(result.carry)
        if result.error is not None:
            index, what, trace = result.error
            raise MapElementError(
                f"element {index} of {len(items)} (cell {spec.cell}, line {spec.line}) failed: "
                f"{what}" + (f"\n{trace}" if trace else "")
            )
    if spec.target and items:
        ns[ITEM] = items[-1]
        exec(
            compile(f"for {spec.target} in [{ITEM}]: pass", "<map>", "exec", dont_inherit=True), ns
        )


# ---- processes -----------------------------------------------------------------------------


def _in_processes(
    chunks: list[tuple[int, list[Any]]],
    work: Callable[..., ChunkResult],
    jobs: int,
    capture: Any,
    shared: dict[str, Any],
    retries: int = 0,
) -> list[ChunkResult]:
    """Run each chunk in a forked process, at most ``jobs`` at once; results in chunk order.
    A process that dies is started again, up to ``retries`` times (its partial work is
    lost with it, so the chunk runs whole). Every child is killed and reaped before this
    returns, whatever happens."""
    capture.flush_all()
    results: dict[int, ChunkResult] = {}
    running: dict[int, tuple[int, int, bytearray]] = {}  # fd -> (chunk number, pid, data)
    pending = list(range(len(chunks)))
    deaths = dict.fromkeys(pending, 0)
    selector = selectors.DefaultSelector()
    try:
        while pending or running:
            while pending and len(running) < jobs:
                number = pending.pop(0)
                fd, pid = _fork_chunk(work, *chunks[number], shared)
                running[fd] = (number, pid, bytearray())
                selector.register(fd, selectors.EVENT_READ)
            for key, _ in selector.select():
                fd = int(key.fd)
                data = os.read(fd, 1 << 20)
                if data:
                    running[fd][2].extend(data)
                    continue
                number, pid, payload = running.pop(fd)
                selector.unregister(fd)
                os.close(fd)
                _, status = os.waitpid(pid, 0)
                start, items = chunks[number]
                result = _decode(payload, status, start, items, shared)
                if result is None and deaths[number] < retries:
                    deaths[number] += 1
                    pending.insert(0, number)
                    continue
                results[number] = result or died(status, start)
    finally:
        for fd, (_, pid, _) in running.items():
            with contextlib.suppress(OSError):
                os.kill(pid, signal.SIGKILL)
            with contextlib.suppress(OSError):
                os.waitpid(pid, 0)
            with contextlib.suppress(OSError):
                os.close(fd)
        selector.close()
    return [results[i] for i in range(len(chunks))]


def _fork_chunk(
    work: Callable[..., ChunkResult], start: int, chunk: list[Any], shared: dict[str, Any]
) -> tuple[int, int]:
    read, write = os.pipe()
    parent = os.getpid()
    pid = os.fork()
    if pid == 0:  # the child: never returns
        os.close(read)
        send_from_child(
            write, parent, lambda: (work(start, chunk, forked=True), start, chunk, shared)
        )
    os.close(write)
    return read, pid


#: what a chunk's process computes: its result, the chunk's first index, its items and the
#: shared values (both sent by reference, ``_Pickler``)
ChunkRun = tuple[ChunkResult, int, list[Any], dict[str, Any]]


def send_from_child(fd: int, parent: int, run: Callable[[], ChunkRun]) -> NoReturn:
    """In a chunk's forked process (local or Kafka): die with ``parent``, ``run`` the chunk
    and send its result on ``fd``, length first (``framed``: a whole result, or none); a
    result that cannot be pickled is sent as the chunk's error. Never returns."""
    code = 1
    try:
        die_with_parent(parent)
        signal.signal(signal.SIGINT, signal.SIG_DFL)
        signal.signal(signal.SIGTERM, signal.SIG_DFL)
        result, start, chunk, shared = run()
        try:
            payload = _dumps(result, chunk, shared)
        except Exception as exc:
            failed = ChunkResult(outputs=result.outputs)
            failed.error = (
                start,
                f"{type(exc).__name__}: the chunk's results cannot be sent back ({exc})",
                "",
            )
            payload = pickle.dumps(failed, protocol=pickle.HIGHEST_PROTOCOL)
        with os.fdopen(fd, "wb") as out:
            out.write(struct.pack("!Q", len(payload)))
            out.write(payload)
        code = 0
    finally:
        os._exit(code)


class _Pickler(pickle.Pickler):
    """Sends the collection's items and the shared values the elements read as references,
    so that a result holding one of them (``out.append(x)``) is that very object again."""

    def __init__(self, file: io.BytesIO, chunk: list[Any], shared: dict[str, Any]) -> None:
        super().__init__(file, protocol=pickle.HIGHEST_PROTOCOL)
        self.known: dict[int, tuple[str, Any]] = {}
        for name, value in shared.items():
            self.known.setdefault(id(value), ("shared", name))
        for i, item in enumerate(chunk):
            self.known.setdefault(id(item), ("item", i))

    def persistent_id(self, obj: Any) -> tuple[str, Any] | None:
        if isinstance(obj, (int, float, str, bool, type(None))):
            return None
        return self.known.get(id(obj))


def _references(chunk: list[Any], shared: dict[str, Any]) -> Callable[[Any], Any]:
    """What ``_Pickler`` sent by reference, resolved to the very objects again."""

    def resolve(pid: Any) -> Any:
        kind, key = pid
        return chunk[key] if kind == "item" else shared[key]

    return resolve


def _dumps(result: ChunkResult, chunk: list[Any], shared: dict[str, Any]) -> bytes:
    buffer = io.BytesIO()
    _Pickler(buffer, chunk, shared).dump(result)
    return buffer.getvalue()


def _decode(
    payload: bytearray, status: int, start: int, chunk: list[Any], shared: dict[str, Any]
) -> ChunkResult | None:
    """The chunk's result, or None if its process died before sending it whole."""
    body = framed(payload)
    if body is None:
        return None
    result: ChunkResult = loads_own(body, _references(chunk, shared))
    return result


def framed(payload: bytes | bytearray) -> bytes | None:
    """What ``send_from_child`` sent, if it arrived whole (None: the process died first)."""
    if len(payload) >= 8:
        (size,) = struct.unpack("!Q", payload[:8])
        if len(payload) == 8 + size:
            return bytes(payload[8:])
    return None


def died(status: int, start: int) -> ChunkResult:
    """The error of a chunk whose process ended (``status`` from waitpid) without its result."""
    why = (
        f"killed by signal {os.WTERMSIG(status)}"
        if os.WIFSIGNALED(status)
        else f"exit code {os.waitstatus_to_exitcode(status)}"
    )
    failed = ChunkResult()
    failed.error = (start, f"ChildProcessError: the process running the chunk ended ({why})", "")
    return failed


__all__ = [
    "ACC",
    "ITEM",
    "MapElementError",
    "MapSpec",
    "RetryPolicy",
    "chunk_size",
    "local_policy",
    "map_jobs",
    "run_map",
]
