"""Deciding, when a step is ready, whether it executes or is reused, and saying why.

A step is reused when its key (``jup2kub_runtime.storage.cachekey``) is unchanged:

- on ``--resume RUN_ID``, a step that completed in that run with the same key is kept where it
  is (any step, cacheable or not: its results are that run's own);
- else a cacheable step whose key has a verified entry in the cache is loaded from it.

Otherwise it executes, and the reason is recorded: what changed since the step's key was last
seen (code, a parameter, an input, a file, the environment), that it is not cacheable and why,
or that the cache holds no result for it. Keys are computed when the step is ready, so the key
of a step downstream of one that is not cacheable hashes that step's stored outputs instead of
its key. Each step's decision is recorded in ``runs/RUN_ID/cache/STEP.json``.
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import shutil
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from jup2kub.files import atomic_write_text
from jup2kub.model.cacheability import StepCache, parameter_reads
from jup2kub.run.executor import Run
from jup2kub_runtime.storage.cachekey import (
    FILE,
    KeyParts,
    environment_digest,
    files_digests,
    outputs_digest,
    step_key_parts,
    why_changed,
)
from jup2kub_runtime.storage.stepcache import CacheStore, CorruptEntry

#: file digests that do not identify a content: the key cannot be trusted
UNKNOWN_FILES = ("too-large", "unreadable")
EXECUTED, REUSED, KEPT = "executed", "reused", "kept"


@dataclass
class Decision:
    """What the cache decided for one step of a run, and why."""

    key: str
    parts: KeyParts
    cacheable: bool
    outcome: str = EXECUTED  # EXECUTED | REUSED (from the cache) | KEPT (resumed run's own)
    reason: str = ""
    from_run: str | None = None
    #: the digests of the files it names once it executed: a resumed run finds them so
    files_after: dict[str, str] | None = None
    #: the digests of the files it writes once it executed: kept on resume only if still so
    writes_after: dict[str, str] | None = None

    def matching_keys(self) -> set[str]:
        """Its key, and the key it has with the files as its execution left them."""
        found = {self.key}
        if self.files_after is not None:
            found.add(dataclasses.replace(self.parts, files=self.files_after).key)
        return found

    def to_json(self) -> dict[str, Any]:
        return {
            "key": self.key,
            "outcome": self.outcome,
            "reason": self.reason,
            "cacheable": self.cacheable,
            **({"from_run": self.from_run} if self.from_run else {}),
            "parts": self.parts.to_json(),
            **({"files_after": self.files_after} if self.files_after is not None else {}),
            **({"writes_after": self.writes_after} if self.writes_after is not None else {}),
        }


class RunCache:
    """The reuse decisions of one run (``store`` None: ``--no-cache``)."""

    def __init__(
        self, store: CacheStore | None, *, resumed: bool = False, cwd: Path | None = None
    ) -> None:
        self.store = store
        self.resumed = resumed
        self.cwd = (cwd or Path.cwd()).absolute()
        self.decisions: dict[str, Decision] = {}

    def reuse(self, run: Run, name: str) -> bool:
        """Called when ``name`` is ready to execute: True if its results are in place now."""
        info = _info(run, name)
        parts, trusted = self._parts(run, name, info)
        d = Decision(parts.key, parts, info.cacheable and trusted)
        self.decisions[name] = d
        recorded = self._recorded(run, name)
        changed: list[str] = []
        if self.resumed and run.store.is_complete(run.run_id, name):
            touched = self._touched(recorded) if recorded is not None else []
            if recorded is not None and d.key in recorded.matching_keys() and not touched:
                self.decisions[name] = recorded  # the key its downstream steps saw
                return self._reused(run, name, KEPT, f"unchanged since run {run.run_id}", None)
            shutil.rmtree(run.store.step_dir(run.run_id, name), ignore_errors=True)  # stale
            changed += [f"{FILE}: {', '.join(touched)} (since it wrote it)"] if touched else []
        before = recorded.parts if recorded is not None and self.resumed else None
        if before is None and self.store is not None:
            before = self.store.last_parts(run.pipeline.name, name)
        changed[:0] = why_changed(before, d.parts)
        if not info.cacheable:
            d.reason = "; ".join([*changed, info.describe()])
        elif not trusted:
            d.reason = "; ".join([*changed, "not cacheable: a file it names cannot be hashed"])
        elif self.store is None:
            d.reason = "; ".join([*changed, "cache off (--no-cache)"])
        elif self._load(run, name, self.store):
            return True
        elif not d.reason:
            d.reason = "; ".join(changed) or "not in the cache"
        self._record(run, name)
        return False

    def _load(self, run: Run, name: str, store: CacheStore) -> bool:
        """Load the entry of ``name``'s key into the run, if there is one and it is whole."""
        d = self.decisions[name]
        entry = store.lookup(d.key)
        if entry is None:
            return False
        marker = _marker(run, name, d.key, entry.run_id, entry.doc.get("seconds"))
        target = run.store.new_attempt_dir(run.run_id, name, 0)
        try:
            store.load(entry, target, self.cwd, durable=run.store.fsync)
        except CorruptEntry as exc:
            d.reason = f"cache entry damaged ({exc}): executed again"
            return False
        # False: another process completed the step meanwhile; its equal results stand
        run.store.commit(run.run_id, name, target, marker)
        store.remember(run.pipeline.name, name, d.parts)
        why = "unchanged" + (f" (cached by run {entry.run_id})" if entry.run_id else "")
        return self._reused(run, name, REUSED, why, entry.run_id)

    def executed(self, run: Run, name: str, seconds: float | None) -> None:
        """``name`` completed by executing: keep its results in the cache if cacheable."""
        d = self.decisions.get(name)
        if d is None:
            return
        d.files_after = files_digests(d.parts.files, self.cwd)
        d.writes_after = files_digests(_info(run, name).writes, self.cwd)
        if self.store is not None and d.cacheable:
            self.store.store(
                d.key,
                d.parts,
                run.store.result_dir(run.run_id, name),
                pipeline=run.pipeline.name,
                step=name,
                run_id=run.run_id,
                writes=_info(run, name).writes,
                cwd=self.cwd,
                seconds=seconds,
                keyed=d.parts.files,
            )
        if self.store is not None:
            self.store.remember(run.pipeline.name, name, d.parts)
        self._record(run, name)

    def summary(self, name: str) -> dict[str, Any]:
        d = self.decisions.get(name)
        if d is None:
            return {}
        doc = d.to_json()
        del doc["parts"]
        return doc

    # ---- helpers -----------------------------------------------------------------------------
    def _parts(self, run: Run, name: str, info: StepCache) -> tuple[KeyParts, bool]:
        spec = run.plan.step(name).spec
        upstream = {u: self._upstream_part(run, u) for u in run.plan.step(name).after}
        defaults = run.pipeline.parameters
        read_params = {p: run.parameters.get(p, defaults.get(p)) for p in spec.parameters}
        names = [*info.reads, *parameter_reads(read_params)]
        files = files_digests([n for n in names if not self._ours(run, n)], self.cwd)
        trusted = not any(v in UNKNOWN_FILES for v in files.values())
        parts = step_key_parts(spec, run.parameters, upstream, files, environment_digest())
        return parts, trusted

    def _touched(self, recorded: Decision) -> list[str]:
        """The files a step the resumed run completed wrote that are no longer as it left
        them (it is kept only if there are none)."""
        written = recorded.writes_after or {}
        now = files_digests(written, self.cwd)
        return sorted(n for n in written if now[n] != written[n])

    def _ours(self, run: Run, name: str) -> bool:
        """Whether ``name`` is (in, or holds) jup2kub's own files: the workdir, the cache."""
        path = (self.cwd / name).resolve()
        mine = [run.workdir.resolve(), *([self.store.root.resolve()] if self.store else [])]
        return any(path == m or m in path.parents or path in m.parents for m in mine)

    def _upstream_part(self, run: Run, name: str) -> str:
        d = self.decisions.get(name)
        if d is not None and d.cacheable:
            return d.key
        return outputs_digest(run.store.result_dir(run.run_id, name))

    def _reused(self, run: Run, name: str, outcome: str, why: str, origin: str | None) -> bool:
        d = self.decisions[name]
        d.outcome, d.reason, d.from_run = outcome, why, origin
        self._record(run, name)
        return True

    @staticmethod
    def _path(run: Run, name: str) -> Path:
        return run.store.run_dir(run.run_id) / "cache" / f"{name}.json"

    def _recorded(self, run: Run, name: str) -> Decision | None:
        try:
            data = json.loads(self._path(run, name).read_bytes())
            parts = KeyParts.from_json(data.get("parts"))
        except (OSError, ValueError, AttributeError):
            return None
        if parts is None or not isinstance(data.get("key"), str):
            return None
        after, writes = data.get("files_after"), data.get("writes_after")
        return Decision(
            data["key"],
            parts,
            bool(data.get("cacheable")),
            files_after=dict(after) if isinstance(after, dict) else None,
            writes_after=dict(writes) if isinstance(writes, dict) else None,
        )

    def _record(self, run: Run, name: str) -> None:
        run.steps[name].why = self.decisions[name].reason
        with contextlib.suppress(OSError):
            doc = self.decisions[name].to_json()
            atomic_write_text(self._path(run, name), json.dumps(doc, indent=1) + "\n")


def _info(run: Run, name: str) -> StepCache:
    info = run.pipeline.cache.get(name)
    if isinstance(info, StepCache):
        return info
    return StepCache(False, ("its cacheability is unknown",))


def _marker(run: Run, name: str, key: str, origin: str | None, seconds: object) -> dict[str, Any]:
    return {
        "run_id": run.run_id,
        "step": name,
        "attempt": 0,
        "at": time.time(),
        "seconds": seconds,
        "reused": key,
        "from_run": origin,
        "upstream": list(run.plan.step(name).spec.upstream),
    }
