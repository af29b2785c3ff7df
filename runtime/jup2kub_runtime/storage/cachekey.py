"""A step's cache key: a hash of everything that determines its result.

Shared by the local runner and the runtime (which must not import the generator). The key
hashes *components*, kept apart so that a miss can say what changed:

- ``code``: the step's cells (with their indices: the stored outputs are placed by index),
  the replayed imports/definitions and the rest of the step's spec, each source normalised
  through ``ast`` so comment and whitespace edits do not count;
- ``parameters``: per parameter the step reads, its run value (or, when the run does not set
  it, the normalised parameters cell that computes it);
- ``upstream``: per upstream step, its key (chain keys: an upstream change invalidates every
  step downstream) or, for a step whose key cannot be trusted, a hash of its stored outputs;
- ``files``: per file the step names, a hash of its content (absent files count too);
- ``environment``: the locked dependency set: the Python, its installed distributions and
  this runtime's own code (the image digest on a cluster).
"""

from __future__ import annotations

import ast
import hashlib
import json
import os
import platform
import re
import sys
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ..contract.spec import StepSpec

#: bumped when what goes into a key changes: older entries then never match
KEY_VERSION = 1
#: the spec fields that do not change what a step computes (``downstream``: who reads it)
_NOT_IN_CODE = ("downstream", "pipeline", "version")
#: reasons a step re-ran, in the order ``why_changed`` reports them
CODE, PARAMETER, ENVIRONMENT, FILE, INPUT = (
    "code changed",
    "parameter changed",
    "environment changed",
    "file changed",
    "input changed",
)
#: files hashed at most this big (a larger one makes the step's key unknown: not reused)
MAX_FILE_BYTES = 1 << 30
#: directories hashed with at most this many files (a larger one: not reused either)
MAX_DIR_FILES = 2000


#: a string literal that may name a file (or a directory): path characters only
PATHLIKE = re.compile(r"^[\w./\\~ +-]{1,255}$")
#: an ``open`` mode (``"w"``, ``"rb"``): not a file name
MODE = re.compile(r"^[rwxabt+]{1,4}$")


def pathlike(text: str) -> bool:
    """Whether a string may name a file: path characters only, not ``.``/``..``/``/``/a mode."""
    stripped = text.strip()
    if stripped in ("", ".", "..", "/", "./", "~") or stripped != text:
        return False
    return bool(PATHLIKE.match(text)) and not MODE.match(text)


def digest(data: bytes | str) -> str:
    return hashlib.sha256(data.encode() if isinstance(data, str) else data).hexdigest()


def canonical(value: Any) -> str:
    """One JSON text per value (sorted keys, no spaces): what is hashed."""
    return json.dumps(value, sort_keys=True, separators=(",", ":"), default=repr)


def normalise(source: str) -> str:
    """The code as ``ast`` sees it: comments, blank lines and layout do not count (a source
    Python cannot parse is taken as written)."""
    try:
        return ast.dump(ast.parse(source), annotate_fields=False, include_attributes=False)
    except (SyntaxError, ValueError, RecursionError, MemoryError):
        return source


def code_digest(spec: StepSpec) -> str:
    """The hash of what the step executes and how its results are stored."""
    doc = spec.to_dict()
    for key in _NOT_IN_CODE:
        doc.pop(key, None)
    doc["random_seeded"] = spec.random_seeded
    doc.pop("parameters_source", None)  # counted per parameter read (``parameter_digests``)
    doc["cells"] = [[c.index, normalise(c.source)] for c in spec.cells]
    doc["replay"] = [normalise(r.source) for r in spec.replay]
    return digest(canonical(doc))


def parameter_digests(spec: StepSpec, run_parameters: Mapping[str, Any]) -> dict[str, str]:
    """Per parameter the step reads: its run value's hash, else the parameters cell's."""
    cell = digest(normalise(spec.parameters_source))
    return {
        name: digest(canonical(["value", run_parameters[name]]))
        if name in run_parameters
        else digest(canonical(["default", cell]))
        for name in sorted(spec.parameters)
    }


def file_digest(path: Path) -> str:
    """The content hash of a file or (recursively) a directory; ``absent`` if neither."""
    try:
        if path.is_dir():
            h = hashlib.sha256()
            found: list[Path] = []
            total = 0
            for p in path.rglob("*"):  # stops early: a literal may name a huge directory
                if p.is_file():
                    found.append(p)
                    total += p.stat().st_size
                    if len(found) > MAX_DIR_FILES or total > MAX_FILE_BYTES:
                        return "too-large"
            for sub in sorted(found):
                h.update(str(sub.relative_to(path)).encode() + b"\0")
                h.update(file_digest(sub).encode())
            return "dir:" + h.hexdigest()
        if not path.is_file():
            return "absent"
        if path.stat().st_size > MAX_FILE_BYTES:
            return "too-large"
        h = hashlib.sha256()
        with open(path, "rb") as fh:
            for block in iter(lambda: fh.read(1 << 20), b""):
                h.update(block)
        return h.hexdigest()
    except OSError:
        return "unreadable"


def files_digests(names: Iterable[str], base: Path) -> dict[str, str]:
    """The digest of each name (relative to ``base``) that exists as a file or directory, and of
    every other name as ``absent``: a file created later changes the key too."""
    return {name: file_digest(base / name) for name in sorted(set(names))}


_ENVIRONMENT: dict[str, str] = {}


def environment_digest() -> str:
    """This interpreter's environment: ``J2K_IMAGE_DIGEST`` when set (an image), else the
    Python version, the installed distributions (name and version from their metadata
    directories) and the runtime's own source. Computed once per process."""
    image = os.environ.get("J2K_IMAGE_DIGEST", "").strip()
    if image:
        return digest("image:" + image)
    if "local" not in _ENVIRONMENT:
        parts = [sys.version, platform.machine(), sys.executable]
        for entry in sys.path:
            try:
                names = sorted(os.listdir(entry or "."))
            except OSError:
                continue
            parts += [n for n in names if n.endswith((".dist-info", ".egg-info", ".egg-link"))]
        runtime = Path(__file__).parents[1]  # the whole package, not only this one
        parts += [file_digest(p) for p in sorted(runtime.rglob("*.py"))]
        _ENVIRONMENT["local"] = digest("\n".join(parts))
    return _ENVIRONMENT["local"]


@dataclass(frozen=True)
class KeyParts:
    """What a step's key hashes, by component (see the module docstring)."""

    code: str
    environment: str
    parameters: dict[str, str] = field(default_factory=dict)
    upstream: dict[str, str] = field(default_factory=dict)
    files: dict[str, str] = field(default_factory=dict)

    @property
    def key(self) -> str:
        return digest(canonical([KEY_VERSION, self.to_json()]))

    def to_json(self) -> dict[str, Any]:
        return {
            "code": self.code,
            "environment": self.environment,
            "parameters": dict(self.parameters),
            "upstream": dict(self.upstream),
            "files": dict(self.files),
        }

    @classmethod
    def from_json(cls, data: object) -> KeyParts | None:
        """The parts recorded by ``to_json``; None if ``data`` is not such a record."""
        if not isinstance(data, dict):
            return None
        try:
            return cls(
                code=str(data["code"]),
                environment=str(data["environment"]),
                parameters=dict(data.get("parameters") or {}),
                upstream=dict(data.get("upstream") or {}),
                files=dict(data.get("files") or {}),
            )
        except (KeyError, TypeError, ValueError):
            return None


def step_key_parts(
    spec: StepSpec,
    run_parameters: Mapping[str, Any],
    upstream: Mapping[str, str],
    files: Mapping[str, str] | None = None,
    environment: str | None = None,
) -> KeyParts:
    """The parts of ``spec``'s key for a run with ``run_parameters``; ``upstream`` maps each
    upstream step to its key (or its outputs' hash), ``files`` each named file to its digest."""
    return KeyParts(
        code=code_digest(spec),
        environment=environment if environment is not None else environment_digest(),
        parameters=parameter_digests(spec, run_parameters),
        upstream=dict(sorted(upstream.items())),
        files=dict(sorted((files or {}).items())),
    )


def why_changed(before: KeyParts | None, now: KeyParts) -> list[str]:
    """Why ``now`` differs from ``before`` (the step's parts last time), most telling first;
    each reason names what changed (``parameter changed: n_rows``). Empty if nothing did."""
    if before is None:
        return []
    reasons: list[str] = []
    if before.code != now.code:
        reasons.append(CODE)
    changed = _changed(before.parameters, now.parameters)
    if changed:
        reasons.append(f"{PARAMETER}: {', '.join(changed)}")
    if before.environment != now.environment:
        reasons.append(ENVIRONMENT)
    changed = _changed(before.files, now.files, missing="absent")
    if changed:
        reasons.append(f"{FILE}: {', '.join(changed)}")
    changed = _changed(before.upstream, now.upstream)
    if changed:
        reasons.append(f"{INPUT}: {', '.join(changed)}")
    return reasons


def _changed(
    before: Mapping[str, str], now: Mapping[str, str], missing: str | None = None
) -> list[str]:
    """The names whose value differs (a name on one side only counts as ``missing``)."""
    names = set(before) | set(now)
    return sorted(k for k in names if before.get(k, missing) != now.get(k, missing))


def outputs_digest(step_dir: Path) -> str:
    """A hash of a completed step's stored values (manifest and files): the upstream part of a
    downstream key when the upstream's own key cannot be trusted (it is not cacheable)."""
    h = hashlib.sha256()
    manifest = step_dir / "values.json"
    h.update(file_digest(manifest).encode())
    try:
        entries = json.loads(manifest.read_bytes())
    except (OSError, ValueError):
        entries = {}
    files = {
        e["file"] for e in (entries.values() if isinstance(entries, dict) else []) if "file" in e
    }
    for rel in sorted(str(f) for f in files):
        h.update(rel.encode() + b"\0" + file_digest(step_dir / rel).encode())
    return "outputs:" + h.hexdigest()
