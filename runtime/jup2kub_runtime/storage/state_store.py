"""The state store on the shared volume: step outputs, captured cell outputs, completion markers.

Layout (``root`` is ``$J2K_STATE_PATH``; ``<result>`` is ``<step>/attempt-<n>-<token>``)::

    runs/<run_id>/run.json                 the run's parameters (first writer wins)
    runs/<run_id>/<result>/values/<var>.pkl  each output variable (format in values.json)
    runs/<run_id>/<result>/values/group-<var>.pkl  outputs stored together (named by the first)
    runs/<run_id>/<result>/values.json     manifest of the stored variables (below)
    runs/<run_id>/<result>/outputs.json    captured cell outputs (nbformat-like)
    runs/<run_id>/<result>/timing.json     start/end/seconds per step and cell
    runs/<run_id>/<step>/outputs.json      the last failed attempt's captured outputs
    runs/<run_id>/<step>/timing.json       ... and its timing
    runs/<run_id>/<step>/error.json        the last failure (cell, ename, evalue, traceback)
    runs/<run_id>/<step>/attempts          how many executions started (survives crashes)
    runs/<run_id>/<step>/joined/<up>       fan-in receipts: which upstream announced completion
    runs/<run_id>/<step>/COMPLETE          completion marker naming its attempt ("dir"), LAST
    runs/<run_id>/<step>/FAILED            failed for good (no retry follows): its failing cell

Every file is written under a temporary name and renamed, so a reader (or a process killed
halfway) never sees a partial file; the marker is what makes a step's results exist. A step's
result is made durable in one batch: every file is written and fsynced, renamed, then each
directory touched is fsynced once, and only then is the marker written (and fsynced with its
directory). Files no result depends on until a marker covers them (fan-in receipts, the attempt
counter) are written without fsync: a killed process loses nothing of them (the page cache
survives it), a power loss at worst forgets a receipt or undercounts an attempt.

Fencing: the lock (``lock``) keeps a second process from executing a step, but a lock on a
network file system can be lost (an NFS lease expires during a partition) while its holder
still runs. So each execution writes its results into its own attempt directory, and the
marker is created exclusively (``os.link`` of a fsynced temp file: the first one wins, on NFS
too). The marker names the winning attempt and readers follow it (``result_dir``), so a late
duplicate execution never overwrites what downstream steps read: it finds the marker taken,
removes its own attempt directory, and reports the step as already complete (``save_step``
returns False). Markers of older runtimes name no attempt: their results are in the step
directory itself, and still load.

Values are stored in the formats of ``valuefile``. ``values.json`` maps each output name to
``{"file", "format", "type", "bytes", "buffers"}``: the file (relative to the result directory)
and its format, the value's type, and the file's size and out-of-band buffer count. Outputs
the step's spec puts in ``groups`` (they may be one object or share parts; overlapping groups
are merged) are stored in one file of format ``pickle5-oob-group`` holding ``{name: value}``;
each member's entry names that file, its ``bytes``/``buffers`` are the whole file's, and
``"group"`` lists the members. ``load_inputs`` unpickles such a file once per call, so the
members a step reads are the same objects again, as in the notebook. Older manifests (one file
per value, without ``format``, ``bytes`` or ``group``) still load.

Nothing that arrives in a Kafka message is ever unpickled: values are only read from the
files named by the manifest of a completed step. Works without Kafka: the local runner uses
the same store from separate processes.
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import functools
import json
import os
import secrets
import shutil
import socket
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from pathlib import Path
from typing import IO, Any, TypeVar

from ..contract.errors import ErrorRecord, MissingInputError, PermanentError, StateError
from ..contract.valid_names import NAME_RE, check_run_id
from . import valuefile

#: unpickling what this pipeline's own processes wrote (see ``valuefile.loads_own``)
loads_own = valuefile.loads_own

MARKER = "COMPLETE"
FAILED = "FAILED"
#: an execution's own results directory in its step directory: ``attempt-<n>-<token>``
ATTEMPT_PREFIX = "attempt-"
#: the marker's field naming the attempt directory that holds the step's results
MARKER_DIR = "dir"
T = TypeVar("T")


#: a step directory's record of the cells an execution got through (``record_progress``)
PROGRESS_DIR = "progress"
#: a temp file untouched this long belongs to a writer that died (a live one writes on)
TEMP_MAX_AGE_SECONDS = 3600.0


def _now() -> float:
    return time.time()


def fsync_dir(path: Path) -> None:
    """Make ``path``'s entries (files renamed into it) durable."""
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


class StateStore:
    """Durable per-run, per-step storage rooted at a (shared) directory."""

    def __init__(self, root: str | os.PathLike[str], *, fsync: bool = True) -> None:
        self.root = Path(root)
        self.fsync = fsync

    # ---- paths -------------------------------------------------------------------------------
    def run_dir(self, run_id: str) -> Path:
        return self.root / "runs" / check_run_id(run_id)

    def step_dir(self, run_id: str, step: str) -> Path:
        if not NAME_RE.match(step):
            raise PermanentError(f"step name {step!r} is invalid")
        return self.run_dir(run_id) / step

    def result_dir(self, run_id: str, step: str) -> Path:
        """Where a step's results are: the attempt directory its marker names; the step
        directory itself if the marker names none (older runtimes) or there is no marker."""
        d = self.step_dir(run_id, step)
        name = (self.completion(run_id, step) or {}).get(MARKER_DIR)
        if isinstance(name, str) and name.startswith(ATTEMPT_PREFIX) and "/" not in name:
            return d / name
        return d

    def new_attempt_dir(self, run_id: str, step: str, attempt: int) -> Path:
        """A fresh directory (not yet created) for one execution's results: unique even for
        two executions that counted the same attempt number."""
        return self.step_dir(run_id, step) / f"{ATTEMPT_PREFIX}{attempt}-{secrets.token_hex(6)}"

    # ---- low-level atomic writes -------------------------------------------------------------
    def write_bytes(self, path: Path, data: bytes, *, durable: bool = True) -> None:
        """Write ``data`` to ``path`` atomically (temp file in the same dir, then rename);
        ``durable``: fsync the file and its directory before returning."""
        self._write_file(path, _writer(data), durable=durable)
        if durable:
            self._sync_dirs({path.parent: None})

    def write_json(self, path: Path, data: Any, *, durable: bool = True) -> None:
        self.write_bytes(path, _json_bytes(data), durable=durable)

    def _write_file(self, path: Path, writer: Callable[[IO[bytes]], T], *, durable: bool) -> T:
        """Write through ``writer`` to a temp file, fsync it (``durable``), rename it to
        ``path``; returns what ``writer`` returned. The directory is not fsynced here.
        Exceptions other than OSError from ``writer`` propagate (the temp file is removed)."""
        tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}-{time.monotonic_ns()}")
        try:
            try:
                fh = open(tmp, "wb")  # noqa: SIM115 - closed below
            except FileNotFoundError:  # first file of its directory
                path.parent.mkdir(parents=True, exist_ok=True)
                fh = open(tmp, "wb")  # noqa: SIM115
            with fh:
                result = writer(fh)
                if durable and self.fsync:
                    fh.flush()
                    os.fsync(fh.fileno())
            os.replace(tmp, path)
            return result
        except BaseException as exc:
            with contextlib.suppress(OSError):  # a full disk must not keep the partial file
                tmp.unlink(missing_ok=True)
            if isinstance(exc, OSError):
                raise StateError(f"cannot write {path}: {exc.strerror or exc}") from exc
            raise

    @staticmethod
    def read_json(path: Path) -> Any:
        try:
            return json.loads(path.read_bytes())
        except FileNotFoundError:
            return None
        except (OSError, ValueError) as exc:
            raise StateError(f"cannot read {path}: {exc}") from exc

    # ---- health ------------------------------------------------------------------------------
    def writable(self) -> bool:
        """True if a file can be created and removed under the root (readiness probe)."""
        probe = self.root / f".probe-{socket.gethostname()}-{os.getpid()}"
        try:
            self.root.mkdir(parents=True, exist_ok=True)
            probe.write_bytes(b"ok")
            probe.unlink()
            return True
        except OSError:
            return False

    # ---- runs --------------------------------------------------------------------------------
    def record_run(self, run_id: str, parameters: Mapping[str, Any], **extra: Any) -> None:
        """Remember the run's parameters once (the first writer wins; later ones are dups)."""
        path = self.run_dir(run_id) / "run.json"
        if not path.exists():
            self.write_json(path, {"run_id": run_id, "parameters": dict(parameters), **extra})

    def run_info(self, run_id: str) -> dict[str, Any] | None:
        data = self.read_json(self.run_dir(run_id) / "run.json")
        return data if isinstance(data, dict) else None

    # ---- completion --------------------------------------------------------------------------
    def is_complete(self, run_id: str, step: str) -> bool:
        return (self.step_dir(run_id, step) / MARKER).exists()

    def completion(self, run_id: str, step: str) -> dict[str, Any] | None:
        data = self.read_json(self.step_dir(run_id, step) / MARKER)
        return data if isinstance(data, dict) else None

    def all_complete(self, run_id: str, steps: list[str]) -> bool:
        return all(self.is_complete(run_id, s) for s in steps)

    # ---- failures for good --------------------------------------------------------------------
    def record_failed(self, run_id: str, step: str, cell: int) -> None:
        """``step`` failed for good in ``cell``: no step of the run starting past that cell may
        start (nbclient stops at the first failing cell)."""
        self.write_json(self.step_dir(run_id, step) / FAILED, {"cell": cell, "at": _now()})

    def failed_at(self, run_id: str) -> int | None:
        """The first cell in which a step of the run failed for good (None: none did)."""
        found = [self.read_json(p) for p in self.run_dir(run_id).glob(f"*/{FAILED}")]
        cells = [d["cell"] for d in found if isinstance(d, dict) and isinstance(d.get("cell"), int)]
        return min(cells, default=None)

    # ---- fan-in receipts ---------------------------------------------------------------------
    def record_join(self, run_id: str, step: str, upstream: str) -> None:
        """Durably note that ``upstream`` announced completion of ``run_id`` to ``step``."""
        path = self.step_dir(run_id, step) / "joined" / upstream
        if not path.exists():  # informative only (fan-in waits for markers): no fsync
            self.write_bytes(path, str(_now()).encode(), durable=False)

    def joined(self, run_id: str, step: str) -> set[str]:
        d = self.step_dir(run_id, step) / "joined"
        try:
            return {p.name for p in d.iterdir() if not p.name.startswith(".")}
        except FileNotFoundError:
            return set()

    # ---- attempts and exclusivity ------------------------------------------------------------
    def next_attempt(self, run_id: str, step: str) -> int:
        """Count one more started execution. It survives a killed process (page cache), so
        crash loops are bounded; made durable by the step's next result or failure batch."""
        path = self.step_dir(run_id, step) / "attempts"
        try:
            current = int(path.read_text().strip() or 0)
        except FileNotFoundError:
            current = 0
        except (OSError, ValueError):
            current = 0
        self.write_bytes(path, str(current + 1).encode(), durable=False)
        return current + 1

    def attempts(self, run_id: str, step: str) -> int:
        try:
            return int((self.step_dir(run_id, step) / "attempts").read_text().strip() or 0)
        except (OSError, ValueError):
            return 0

    @contextlib.contextmanager
    def lock(self, run_id: str, step: str, *, blocking: bool = False) -> Iterator[bool]:
        """Exclusive lock on executing (run_id, step) across processes sharing the volume.

        Yields False when another live process holds it (``blocking=False``). flock is released
        by the kernel when the holder dies, so kill -9 never leaves a stale lock.
        """
        d = self.step_dir(run_id, step)
        try:
            d.mkdir(parents=True, exist_ok=True)
            fd = os.open(d / ".lock", os.O_RDWR | os.O_CREAT, 0o644)
        except OSError as exc:
            raise StateError(f"cannot lock {d}: {exc.strerror or exc}") from exc
        try:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | (0 if blocking else fcntl.LOCK_NB))
                got = True
            except OSError as exc:
                if exc.errno not in (errno.EAGAIN, errno.EACCES):
                    raise StateError(f"cannot lock {d}: {exc.strerror or exc}") from exc
                got = False
            try:
                yield got
            finally:
                if got:
                    fcntl.flock(fd, fcntl.LOCK_UN)
        finally:
            os.close(fd)

    # ---- values ------------------------------------------------------------------------------
    def save_step(
        self,
        run_id: str,
        step: str,
        values: Mapping[str, Any],
        *,
        outputs: Any,
        timing: Mapping[str, Any],
        upstream_steps: list[str] | None = None,
        attempt: int = 1,
        groups: Sequence[Sequence[str]] = (),
        replace: bool = False,
    ) -> bool:
        """Store a successful step in a new attempt directory (values, outputs, timing), then
        create the completion marker naming it. False: another execution's marker was there
        first (this attempt's results are removed; the step is complete all the same).

        ``groups``: output names stored together in one file (see the module docstring).
        ``replace``: take the marker even if there is one (a forced re-execution).
        Durability order: every file is fsynced and renamed, every directory touched is
        fsynced once, and only then is the marker written (file, then directory fsynced).
        """
        d = self.step_dir(run_id, step)
        a = self.new_attempt_dir(run_id, step, attempt)
        try:
            dirs: dict[Path, None] = {a / "values": None} if values else {}
            manifest: dict[str, Any] = {}
            for members in value_units(values, groups):
                manifest.update(self._write_values(a, step, {m: values[m] for m in members}))
            for fname, doc in (
                ("values.json", manifest),
                ("outputs.json", outputs),
                ("timing.json", dict(timing)),
            ):
                self._write_file(a / fname, _writer(_json_bytes(doc)), durable=True)
            dirs[a] = None
            dirs[d] = None  # the attempt directory's entry; the attempt counter's rename too
            self._sync_dirs(dirs)
        except BaseException:
            shutil.rmtree(a, ignore_errors=True)
            raise
        marker = {
            "run_id": run_id,
            "step": step,
            "attempt": attempt,
            "at": _now(),
            "host": socket.gethostname(),
            "pid": os.getpid(),
            "seconds": timing.get("seconds"),
            "upstream": upstream_steps or [],
        }
        return self.commit(run_id, step, a, marker, replace=replace)

    def commit(
        self,
        run_id: str,
        step: str,
        attempt_dir: Path,
        marker: Mapping[str, Any],
        *,
        replace: bool = False,
    ) -> bool:
        """Make ``attempt_dir`` (durable, in the step directory) the step's result: create
        the marker naming it, exclusively. False if another execution's marker is there
        first: then ``attempt_dir`` is removed. ``replace``: take the marker anyway and remove
        the results it named before."""
        d = self.step_dir(run_id, step)
        path = d / MARKER
        doc = {**marker, MARKER_DIR: attempt_dir.name}
        previous = self.result_dir(run_id, step) if replace else None
        tmp = d / f".{MARKER}.tmp-{os.getpid()}-{secrets.token_hex(6)}"
        try:
            self._write_file(tmp, _writer(_json_bytes(doc)), durable=True)
            if replace:
                os.replace(tmp, path)
            else:
                os.link(tmp, path)  # atomic and first-wins, on NFS too
        except FileExistsError:
            shutil.rmtree(attempt_dir, ignore_errors=True)
            return False
        except OSError as exc:
            raise StateError(f"cannot write {path}: {exc.strerror or exc}") from exc
        finally:
            with contextlib.suppress(OSError):
                tmp.unlink()
        self._sync_dirs({d: None})
        with contextlib.suppress(FileNotFoundError):  # an earlier attempt's failure
            (d / "error.json").unlink()
        if previous is not None and previous.name.startswith(ATTEMPT_PREFIX):
            shutil.rmtree(previous, ignore_errors=True)  # the result the forced one replaced
        return True

    def _write_values(self, d: Path, step: str, members: Mapping[str, Any]) -> dict[str, Any]:
        """Write one value (or one group of them) durably; returns their manifest entries."""
        first = next(iter(members))
        grouped = len(members) > 1
        rel = f"values/group-{first}.pkl" if grouped else f"values/{first}.pkl"
        dump = (
            functools.partial(valuefile.dump_group, values=members, step=step)
            if grouped
            else functools.partial(
                valuefile.dump_value, name=first, value=members[first], step=step
            )
        )
        nbytes, nbuffers = self._write_file(
            d / rel, functools.partial(dump, writeback=self.fsync), durable=True
        )
        entries: dict[str, Any] = {}
        for name, value in members.items():
            entries[name] = {
                "file": rel,
                "format": valuefile.GROUP_FORMAT if grouped else valuefile.VALUE_FORMAT,
                "type": f"{type(value).__module__}.{type(value).__qualname__}",
                "bytes": nbytes,
                "buffers": nbuffers,
            }
            if grouped:
                entries[name]["group"] = list(members)
        return entries

    # ---- progress of an execution (what a process killed by a signal leaves) -----------------
    def record_progress(self, run_id: str, step: str, cell: int, finished: Any | None) -> None:
        """Cell ``cell`` starts; ``finished`` is the record (``CellRecord.to_dict()``) of the
        cell before it. Not durable: it only explains a process that died."""
        d = self.step_dir(run_id, step) / PROGRESS_DIR
        if finished is not None:
            self.write_json(d / f"cell-{finished['index']}.json", finished, durable=False)
        self.write_json(d / "executing.json", {"cell": cell}, durable=False)

    def progress(self, run_id: str, step: str) -> tuple[int | None, list[dict[str, Any]]]:
        """The cell that was executing and the records of the cells that finished before it
        (in order), as ``record_progress`` left them."""
        d = self.step_dir(run_id, step) / PROGRESS_DIR
        executing = self.read_json(d / "executing.json")
        cell = executing.get("cell") if isinstance(executing, dict) else None
        records = [self.read_json(p) for p in d.glob("cell-*.json")]
        done = sorted(
            (r for r in records if isinstance(r, dict) and isinstance(r.get("index"), int)),
            key=lambda r: int(r["execution_count"] or 0),
        )
        return (cell if isinstance(cell, int) else None), done

    def clear_progress(self, run_id: str, step: str) -> None:
        shutil.rmtree(self.step_dir(run_id, step) / PROGRESS_DIR, ignore_errors=True)

    def save_failure(
        self, run_id: str, step: str, *, outputs: Any, error: ErrorRecord, timing: Mapping[str, Any]
    ) -> None:
        """Keep what a failed attempt printed and why it failed (no marker)."""
        d = self.step_dir(run_id, step)
        for fname, doc in (
            ("outputs.json", outputs),
            ("timing.json", dict(timing)),
            ("error.json", error.to_json()),
        ):
            self._write_file(d / fname, _writer(_json_bytes(doc)), durable=True)
        if self.fsync:
            attempts = d / "attempts"  # the retry bound must survive a power loss too
            with contextlib.suppress(OSError), open(attempts, "rb") as fh:
                os.fsync(fh.fileno())
        self._sync_dirs({d: None})

    def _sync_dirs(self, dirs: Mapping[Path, None]) -> None:
        if not self.fsync:
            return
        for path in dirs:
            try:
                fsync_dir(path)
            except OSError as exc:
                raise StateError(f"cannot sync {path}: {exc.strerror or exc}") from exc

    def error(self, run_id: str, step: str) -> dict[str, Any] | None:
        data = self.read_json(self.step_dir(run_id, step) / "error.json")
        return data if isinstance(data, dict) else None

    def outputs(self, run_id: str, step: str) -> Any:
        """The captured outputs of the step's result, or of its last failed attempt."""
        return self.read_json(self.result_dir(run_id, step) / "outputs.json")

    def manifest(self, run_id: str, step: str) -> dict[str, Any]:
        """The ``values.json`` of a completed step (MissingInputError if not completed)."""
        if not self.is_complete(run_id, step):
            raise MissingInputError(f"step {step!r} has not completed run {run_id!r}")
        path = self.result_dir(run_id, step) / "values.json"
        data = self.read_json(path)
        if data is not None and not isinstance(data, dict):
            raise StateError(f"{path}: not a JSON object")
        return data or {}

    def load_value(self, run_id: str, step: str, name: str) -> Any:
        """Unpickle one stored output of a completed step (files on the volume only). A
        member of a group comes alone: its identity with other members is lost (use
        ``load_inputs`` to load several)."""
        return self._load_member(run_id, step, name, self.manifest(run_id, step), {})

    def load_inputs(self, run_id: str, inputs: Mapping[str, str]) -> dict[str, Any]:
        """Load ``{variable: upstream_step}`` for a run. Each stored group file is unpickled
        at most once, so variables stored together are the same objects (or share parts);
        it is read whole even when only some of its members are wanted. Each step's
        manifest is read once."""
        manifests: dict[str, dict[str, Any]] = {}
        groups: dict[Path, dict[str, Any]] = {}
        loaded: dict[str, Any] = {}
        for var, step in inputs.items():
            if step not in manifests:
                manifests[step] = self.manifest(run_id, step)
            loaded[var] = self._load_member(run_id, step, var, manifests[step], groups)
        return loaded

    def stored_sizes(self, run_id: str, step: str) -> dict[str, int]:
        """``{name: bytes}`` of a completed step's stored outputs: the size of the file each
        is stored in (a group member gets its whole group file's size), e.g. to decide
        whether a value is cheap enough to fingerprint. Names whose file is gone are left
        out."""
        d = self.result_dir(run_id, step)
        sizes: dict[str, int] = {}
        for name, entry in self.manifest(run_id, step).items():
            size = entry.get("bytes") if isinstance(entry, dict) else None
            if not isinstance(size, int) or isinstance(size, bool):
                try:
                    size = (d / entry["file"]).stat().st_size
                except (OSError, KeyError, TypeError):
                    continue
            sizes[name] = size
        return sizes

    def _load_member(
        self,
        run_id: str,
        step: str,
        name: str,
        manifest: Mapping[str, Any],
        groups: dict[Path, dict[str, Any]],
    ) -> Any:
        """One stored output; a group file is read once into ``groups`` (keyed by path)."""
        entry = manifest.get(name)
        if not isinstance(entry, dict):
            raise MissingInputError(
                f"step {step!r} did not store variable {name!r} for run {run_id!r}"
            )
        path = self.result_dir(run_id, step) / entry["file"]
        fmt = entry.get("format", valuefile.OLD_VALUE_FORMAT)
        if fmt != valuefile.GROUP_FORMAT:
            return self._load_file(path, fmt)
        if path not in groups:
            groups[path] = self._load_file(path, fmt)
        if name not in groups[path]:
            raise StateError(f"{path}: the value group does not hold {name!r}")
        return groups[path][name]

    @staticmethod
    def _load_file(path: Path, fmt: str) -> Any:
        if fmt not in valuefile.FORMATS:
            raise StateError(f"{path}: unknown value format {fmt!r} (written by a newer runtime?)")
        try:
            with open(path, "rb") as fh:
                return valuefile.load(fh, fmt)
        except OSError as exc:
            raise StateError(f"cannot read {path}: {exc.strerror or exc}") from exc
        except valuefile.ValueFormatError as exc:
            raise StateError(f"cannot read {path}: {exc}") from exc

    def sweep_temporaries(self, older_than: float = TEMP_MAX_AGE_SECONDS) -> int:
        """Remove what writers that died left (``.NAME.tmp-PID-NS`` files, and attempt
        directories no marker names) untouched for ``older_than`` seconds, in every run and
        step directory; returns how many. A live writer keeps its file's mtime fresh, and
        another replica's writers are only ever as old as one write, so age alone tells."""
        removed = 0
        cutoff = _now() - older_than
        runs = self.root / "runs"
        for pattern in (
            "*/.*.tmp-*",
            "*/*/.*.tmp-*",
            "*/*/values/.*.tmp-*",
            f"*/*/{ATTEMPT_PREFIX}*/.*.tmp-*",
            f"*/*/{ATTEMPT_PREFIX}*/values/.*.tmp-*",
        ):
            for path in runs.glob(pattern):
                with contextlib.suppress(OSError):
                    if path.lstat().st_mtime < cutoff:
                        path.unlink()
                        removed += 1
        for attempt in runs.glob(f"*/*/{ATTEMPT_PREFIX}*"):
            with contextlib.suppress(OSError, StateError, PermanentError):
                step = attempt.parent
                if attempt.lstat().st_mtime >= cutoff:
                    continue
                if self.result_dir(step.parent.name, step.name) == attempt:
                    continue
                shutil.rmtree(attempt)
                removed += 1
        return removed


def value_units(values: Mapping[str, Any], groups: Sequence[Sequence[str]]) -> list[list[str]]:
    """The files a step's ``values`` are stored in, as lists of names in ``values`` order:
    ``groups`` restricted to the stored names, overlapping ones merged (sharing is
    transitive); every other name alone."""
    owner = {name: name for name in values}

    def root(name: str) -> str:
        while owner[name] != name:
            owner[name] = owner[owner[name]]
            name = owner[name]
        return name

    for group in groups:
        present = [name for name in group if name in owner]
        for name in present[1:]:
            owner[root(name)] = root(present[0])
    units: dict[str, list[str]] = {}
    for name in values:
        units.setdefault(root(name), []).append(name)
    return list(units.values())


def _writer(data: bytes) -> Callable[[IO[bytes]], int]:
    def write(fh: IO[bytes]) -> int:
        return fh.write(data)

    return write


def _json_bytes(data: Any) -> bytes:
    # no indent: json's C encoder (indented output goes through the pure-Python one)
    return json.dumps(data, default=str).encode()
