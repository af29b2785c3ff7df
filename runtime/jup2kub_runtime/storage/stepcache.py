"""The step cache: entries keyed by a step's cache key (``cachekey``), shared by the local runner
(``jup2kub run``: ``--cache-dir``, default ``WORKDIR/cache``) and the runtime on a cluster
(``cache/`` on the state volume, ``run_step(..., cache=...)``).

Layout under ``root``::

    entries/<key[:2]>/<key>/entry.json   what the entry holds, every file's sha256, and its own
                                         digest (a damaged entry.json is detected too)
    entries/<key[:2]>/<key>/step/...     the step's stored results (values/, values.json,
                                         outputs.json, timing.json)
    entries/<key[:2]>/<key>/work/<n>     the files the step wrote (restored on reuse)
    last/<pipeline>/<step>.json          the step's key parts last time (why it re-ran)
    tmp/                                 entries being written

An entry is written under ``tmp/`` and renamed into place in one step, so a reader sees a whole
entry or none; two runs storing the same key race harmlessly (the loser drops its copy).
Entries are never changed once in place. Loading checks every file against its sha256 while
copying it to a temporary name, and only a fully verified entry is moved into the run: a
damaged entry is removed and the step executes instead. Nothing unverified is ever loaded.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import secrets
import shutil
import time
from collections.abc import Collection, Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ..contract.spec import StepSpec
from ..contract.states import StepState
from .cachekey import (
    KeyParts,
    canonical,
    digest,
    file_digest,
    files_digests,
    outputs_digest,
    pathlike,
    step_key_parts,
)
from .state_store import StateStore, fsync_dir

ENTRY_VERSION = 1
ENTRY_FILE = "entry.json"
#: the files of a step's results an entry keeps (the rest is per execution: locks, attempts)
STEP_FILES = ("values.json", "outputs.json", "timing.json")
#: the cache's directory under a workdir (local) or the state volume (cluster)
DEFAULT_DIRNAME = "cache"
#: a step's key in its state directory: the key its downstream steps chain on
KEY_FILE = "cachekey.json"


def atomic_write_text(path: Path, text: str) -> None:
    """Write under a temporary name, then rename: readers see the old file or the new one."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}-{secrets.token_hex(4)}")
    try:
        tmp.write_text(text)
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            tmp.unlink()
        raise


class CorruptEntry(Exception):
    """An entry whose files do not match their recorded hashes (never loaded)."""


@dataclass(frozen=True)
class Entry:
    key: str
    path: Path
    doc: dict[str, Any]

    @property
    def run_id(self) -> str | None:
        value = self.doc.get("run_id")
        return value if isinstance(value, str) else None


def _hash_copy(src: Path, dst: Path, *, sync: bool = False) -> str:
    """Copy ``src`` to ``dst`` (new file, fsynced if ``sync``), returning the sha256 of what
    was copied."""
    h = hashlib.sha256()
    with open(src, "rb") as fin, open(dst, "xb") as fout:
        for block in iter(lambda: fin.read(1 << 20), b""):
            h.update(block)
            fout.write(block)
        if sync:
            fout.flush()
            os.fsync(fout.fileno())
    return h.hexdigest()


def _link_or_copy(src: Path, dst: Path) -> str:
    """Hard-link ``src`` (never changed in place: the store writes by rename) or copy it;
    the sha256 of its content."""
    try:
        os.link(src, dst)
    except OSError:
        return _hash_copy(src, dst)
    return file_digest(dst)


def _sealed(doc: dict[str, Any]) -> dict[str, Any]:
    body = {k: v for k, v in doc.items() if k != "digest"}
    return {**body, "digest": digest(canonical(body))}


class CacheStore:
    """The entries under one cache directory, shared by runs and processes."""

    def __init__(self, root: Path) -> None:
        self.root = Path(root).absolute()

    def entry_dir(self, key: str) -> Path:
        return self.root / "entries" / key[:2] / key

    # ---- lookup and load -----------------------------------------------------------------
    def lookup(self, key: str) -> Entry | None:
        """The entry for ``key`` if one is in place (its files are checked by ``load``)."""
        path = self.entry_dir(key)
        try:
            doc = json.loads((path / ENTRY_FILE).read_bytes())
        except FileNotFoundError:
            return None
        except (OSError, ValueError):
            self.discard(key)
            return None
        if not isinstance(doc, dict) or _sealed(doc) != doc or doc.get("key") != key:
            self.discard(key)
            return None
        return Entry(key, path, doc)

    def load(
        self,
        entry: Entry,
        target: Path,
        cwd: Path,
        *,
        extra: Mapping[str, str] | None = None,
        durable: bool = True,
    ) -> None:
        """Put ``entry``'s results in the new directory ``target`` (with ``extra`` files:
        name -> text) and restore the files it wrote under ``cwd``; the caller then makes
        ``target`` the step's result (``StateStore.commit``, the marker). Every file is copied
        and checked against its hash before anything is changed: on a mismatch CorruptEntry is
        raised, the entry removed and ``target`` too. ``durable``: the results are fsynced, as
        the state store does for an executed step."""
        restored: list[tuple[Path | None, Path]] = []
        try:
            target.mkdir(parents=True)
            files = entry.doc.get("files")
            if not isinstance(files, dict):
                raise CorruptEntry("no file list")
            (target / "values").mkdir()
            for rel, sha in files.items():
                (target / rel).parent.mkdir(parents=True, exist_ok=True)
                self._verified_copy(entry, f"step/{rel}", target / rel, sha, sync=durable)
            restored = self._stage_work(entry, cwd)
            for name, text in (extra or {}).items():
                (target / name).write_text(text)
            for tmp, dest in restored:
                if tmp is None:
                    dest.unlink(missing_ok=True)
                else:
                    os.replace(tmp, dest)
            restored = []
            if durable:
                for d in (target / "values", target, target.parent):
                    fsync_dir(d)
        except BaseException as exc:
            shutil.rmtree(target, ignore_errors=True)
            if isinstance(exc, CorruptEntry):
                self.discard(entry.key)
                raise
            if isinstance(exc, OSError):
                raise CorruptEntry(f"cannot load: {exc}") from exc
            raise
        finally:
            for tmp, _ in restored:
                with contextlib.suppress(OSError):
                    if tmp is not None:
                        tmp.unlink()
        with contextlib.suppress(OSError):  # when it was last used (``runs gc``)
            os.utime(entry.path)

    def _verified_copy(
        self, entry: Entry, rel: str, target: Path, sha: object, *, sync: bool = False
    ) -> None:
        try:
            got = _hash_copy(entry.path / rel, target, sync=sync)
        except FileNotFoundError as exc:
            raise CorruptEntry(f"{rel} is missing") from exc
        if got != sha:
            raise CorruptEntry(f"{rel} does not match its hash")

    def _stage_work(self, entry: Entry, cwd: Path) -> list[tuple[Path | None, Path]]:
        """The written files that differ from the entry's, copied (verified) next to their
        place under temporary names: ``(temporary, target)`` pairs, renamed by the caller
        (``(None, target)``: a file the step removed, removed by the caller)."""
        staged: list[tuple[Path | None, Path]] = []
        work = entry.doc.get("work")
        if not isinstance(work, list):
            raise CorruptEntry("no list of written files")
        try:
            for item in work:
                target = cwd / str(item["path"])
                if item.get("sha256") is None:
                    # gone after the step, though there before it (in its key): it removed it
                    if item.get("keyed") and target.is_file():
                        staged.append((None, target))
                    continue
                if file_digest(target) == item["sha256"]:
                    continue
                target.parent.mkdir(parents=True, exist_ok=True)
                tmp = target.parent / f".{target.name}.j2k-{os.getpid()}-{secrets.token_hex(4)}"
                staged.append((tmp, target))
                self._verified_copy(entry, str(item["file"]), tmp, item["sha256"])
        except BaseException:
            for leftover, _ in staged:
                with contextlib.suppress(OSError):
                    if leftover is not None:
                        leftover.unlink()
            raise
        return staged

    # ---- store -----------------------------------------------------------------------------
    def store(
        self,
        key: str,
        parts: KeyParts,
        step_dir: Path,
        *,
        pipeline: str,
        step: str,
        run_id: str,
        writes: Sequence[str],
        cwd: Path,
        seconds: float | None,
        keyed: Collection[str] = (),
    ) -> bool:
        """Keep a completed step's results under ``key``; False if an entry was already there
        (another run stored it first) or the results could not be read."""
        if (self.entry_dir(key) / ENTRY_FILE).exists():
            return False
        tmp = self.root / "tmp" / f"{key}-{os.getpid()}-{secrets.token_hex(4)}"
        try:
            files = self._copy_step(step_dir, tmp / "step")
            work = self._copy_work(writes, cwd, tmp / "work", set(keyed))
            doc = _sealed(
                {
                    "version": ENTRY_VERSION,
                    "key": key,
                    "parts": parts.to_json(),
                    "pipeline": pipeline,
                    "step": step,
                    "run_id": run_id,
                    "created": time.time(),
                    "seconds": seconds,
                    "files": files,
                    "work": work,
                }
            )
            (tmp / ENTRY_FILE).write_text(json.dumps(doc))
            final = self.entry_dir(key)
            final.parent.mkdir(parents=True, exist_ok=True)
            try:
                os.rename(tmp, final)
            except OSError:  # another run put the same entry in place first
                return False
            return True
        except OSError:
            return False
        finally:
            shutil.rmtree(tmp, ignore_errors=True)

    @staticmethod
    def _copy_step(step_dir: Path, dest: Path) -> dict[str, str]:
        files: dict[str, str] = {}
        names = [*STEP_FILES]
        values = step_dir / "values"
        if values.is_dir():
            names += [
                f"values/{p.name}" for p in sorted(values.iterdir()) if not p.name.startswith(".")
            ]
        (dest / "values").mkdir(parents=True)
        for rel in names:
            if (step_dir / rel).is_file():
                files[rel] = _link_or_copy(step_dir / rel, dest / rel)
        return files

    @staticmethod
    def _copy_work(
        writes: Sequence[str], cwd: Path, dest: Path, keyed: set[str]
    ) -> list[dict[str, Any]]:
        """The files the step wrote; ``keyed``: those whose content before the step is in its
        key (one it removed is removed on reuse; any other absent one is left as it is)."""
        work: list[dict[str, Any]] = []
        dest.mkdir(parents=True)
        for n, path in enumerate(sorted(set(writes))):
            source = cwd / path
            if not source.is_file():  # not written (or a directory)
                work.append({"path": path, "file": None, "sha256": None, "keyed": path in keyed})
                continue
            sha = _hash_copy(source, dest / str(n))
            work.append({"path": path, "file": f"work/{n}", "sha256": sha})
        return work

    def discard(self, key: str) -> None:
        """Remove an entry (damaged, or collected): renamed away first, so no reader sees it
        half removed."""
        path = self.entry_dir(key)
        gone = self.root / "tmp" / f"gone-{key}-{os.getpid()}-{secrets.token_hex(4)}"
        try:
            gone.parent.mkdir(parents=True, exist_ok=True)
            os.rename(path, gone)
        except OSError:
            return
        shutil.rmtree(gone, ignore_errors=True)

    # ---- the parts each step had last time -------------------------------------------------
    def last_parts(self, pipeline: str, step: str) -> KeyParts | None:
        try:
            data = json.loads((self.root / "last" / pipeline / f"{step}.json").read_bytes())
        except (OSError, ValueError):
            return None
        return KeyParts.from_json(data)

    def remember(self, pipeline: str, step: str, parts: KeyParts) -> None:
        path = self.root / "last" / pipeline / f"{step}.json"
        with contextlib.suppress(OSError):
            atomic_write_text(path, json.dumps(parts.to_json()))

    # ---- housekeeping ----------------------------------------------------------------------
    def entries(self) -> Iterator[Path]:
        base = self.root / "entries"
        if not base.is_dir():
            return
        for shard in sorted(base.iterdir()):
            if shard.is_dir():
                yield from (p for p in sorted(shard.iterdir()) if (p / ENTRY_FILE).is_file())


#: ``J2K_CACHE``: ``off`` turns the step cache off for a step's runtime (the chart's
#: ``steps.<name>.cache: false``); anything else leaves it on
CACHE_ENV = "J2K_CACHE"


def cache_enabled(env: Mapping[str, str] | None = None) -> bool:
    e = os.environ if env is None else env
    return e.get(CACHE_ENV, "on").strip().lower() not in ("off", "false", "0", "no")


def upstream_part(step_dir: Path) -> str:
    """What a downstream key chains on: the step's recorded key if it was cacheable, else a
    hash of its stored outputs."""
    try:
        doc = json.loads((step_dir / KEY_FILE).read_bytes())
    except (OSError, ValueError):
        doc = None
    if isinstance(doc, dict) and doc.get("cacheable") is True and isinstance(doc.get("key"), str):
        return str(doc["key"])
    return outputs_digest(step_dir)


class StepReuse:
    """One step of one run on the runtime's side: its key from what the state volume holds,
    reuse of a verified entry, and keeping the result once it executed."""

    def __init__(
        self,
        spec: StepSpec,
        state: StateStore,
        run_id: str,
        parameters: Mapping[str, Any],
        cache: CacheStore,
        cwd: Path,
    ) -> None:
        self.spec, self.state, self.run_id, self.cache, self.cwd = spec, state, run_id, cache, cwd
        upstream = {u: upstream_part(state.result_dir(run_id, u)) for u in spec.upstream}
        values = [parameters.get(p) for p in spec.parameters]
        names = [*spec.cache_reads, *(v for v in values if isinstance(v, str) and pathlike(v))]
        files = files_digests(names, cwd)
        self.trusted = not any(v in ("too-large", "unreadable") for v in files.values())
        self.parts = step_key_parts(spec, parameters, upstream, files)
        self.key = self.parts.key

    def reuse(self) -> StepState | None:
        """Load the entry for this key into a new attempt directory and make it the step's
        result: SUCCEEDED, or SKIPPED if another execution completed the step meanwhile. None
        if there is no entry (or it was damaged: then it is removed, and the step executes)."""
        if not self.trusted:
            return None
        entry = self.cache.lookup(self.key)
        if entry is None:
            return None
        marker = {
            "run_id": self.run_id,
            "step": self.spec.step,
            "attempt": 0,
            "at": time.time(),
            "seconds": entry.doc.get("seconds"),
            "reused": self.key,
            "from_run": entry.run_id,
            "upstream": list(self.spec.upstream),
        }
        target = self.state.new_attempt_dir(self.run_id, self.spec.step, 0)
        try:
            self.cache.load(
                entry,
                target,
                self.cwd,
                extra={KEY_FILE: self._key_doc()},
                durable=self.state.fsync,
            )
        except CorruptEntry:
            return None
        if not self.state.commit(self.run_id, self.spec.step, target, marker):
            return StepState.SKIPPED
        return StepState.SUCCEEDED

    def keep(self, seconds: float) -> None:
        """The step executed and its results are stored: record its key, keep an entry."""
        result_dir = self.state.result_dir(self.run_id, self.spec.step)
        with contextlib.suppress(OSError):
            atomic_write_text(result_dir / KEY_FILE, self._key_doc())
        if self.trusted:
            self.cache.store(
                self.key,
                self.parts,
                result_dir,
                pipeline=self.spec.pipeline,
                step=self.spec.step,
                run_id=self.run_id,
                writes=self.spec.cache_writes,
                cwd=self.cwd,
                seconds=seconds,
                keyed=self.parts.files,
            )

    def _key_doc(self) -> str:
        return json.dumps({"key": self.key, "cacheable": self.trusted})
