"""What the catalog records about a step, taken from the in-memory pipeline (and, when there are
any, the build's locks and images and the types observed by local runs). Secret parameters are
recorded by name only: their values never reach the catalog."""

from __future__ import annotations

import ast
import getpass
import hashlib
import json
import os
import re
import socket
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from jup2kub.model.compose import UNKNOWN
from jup2kub.model.notebook import Notebook
from jup2kub.model.pipeline import Pipeline, code_hash, step_code
from jup2kub.version import __version__
from jup2kub_runtime.contract.errors import StepRuntimeError
from jup2kub_runtime.storage.state_store import MARKER, StateStore

_WORD = re.compile(r"[A-Za-z0-9]+(?:[_.-][A-Za-z0-9]+)*")
_MAX_TOKEN = 100


@dataclass
class StepRecord:
    """One catalogued step, as stored and as ``catalog show --json`` prints it."""

    pipeline: str
    step: str
    notebook: str
    notebook_sha256: str
    cells: list[int]
    code_sha256: str
    code: str
    markdown: str
    #: variable -> {"from": upstream step, "type": observed type or "unknown"}
    inputs: dict[str, dict[str, str]]
    outputs: dict[str, str]  # variable -> observed type or "unknown"
    #: name -> {"default": literal or None, "secret": bool}
    parameters: dict[str, dict[str, Any]]
    imports: list[str]
    lock: str = ""
    image: str = ""
    digest: str = ""
    #: the image's SBOM (``sbom_summary``): its sha256, where it is attached, its packages
    sbom: dict[str, Any] = field(default_factory=dict)
    recorded_at: datetime = field(default_factory=lambda: datetime.now(timezone.utc))
    recorded_by: str = ""
    origin: str = "notebook"
    generator: str = f"jup2kub {__version__}"

    @property
    def key(self) -> str:
        return f"{self.pipeline}/{self.step}"

    def to_json(self) -> dict[str, Any]:
        data = {k: getattr(self, k) for k in self.__dataclass_fields__}
        data["recorded_at"] = self.recorded_at.isoformat()
        return data

    def tokens(self) -> set[tuple[str, str]]:
        """The (token, field) pairs a search matches against."""
        found: set[tuple[str, str]] = set()
        for text in (self.pipeline, self.step):
            found |= {(t, "name") for t in words(text)}
        for kind, names in (
            ("reads", self.inputs),
            ("writes", self.outputs),
            ("parameter", self.parameters),
        ):
            found |= {(t, kind) for name in names for t in words(name)}
        for package in self.imports:
            found |= {(t, "package") for t in words(package)}
        found |= {(t, "markdown") for t in words(self.markdown)}
        return found


def words(text: str) -> set[str]:
    """Lowercase search words of ``text``: each identifier-like run whole and in its parts
    (``train_model`` gives ``train_model``, ``train`` and ``model``)."""
    out: set[str] = set()
    for match in _WORD.finditer(text):
        whole = match.group(0).lower()[:_MAX_TOKEN]
        out.add(whole)
        out.update(p for p in re.split(r"[_.-]", whole) if p)
    return out


def query_words(text: str) -> set[str]:
    """The words of a search: identifiers whole (``train_model`` matches that variable, not
    everything with ``train`` or ``model``)."""
    return {m.group(0).lower()[:_MAX_TOKEN] for m in _WORD.finditer(text)}


def who() -> str:
    """``user@host`` of whoever records the step (``JUP2KUB_USER`` overrides the user)."""
    try:
        user = os.environ.get("JUP2KUB_USER") or getpass.getuser()
    except (KeyError, OSError):
        user = str(os.getuid())
    return f"{user}@{socket.gethostname()}"


def imported_packages(code: str) -> list[str]:
    """Top-level packages the code imports (``from sklearn.linear_model import ..`` gives
    ``sklearn``)."""
    try:
        tree = ast.parse(code)
    except SyntaxError:
        return []
    found: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found.update(a.name.split(".")[0] for a in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and not node.level:
            found.add(node.module.split(".")[0])
    return sorted(found)


def step_markdown(nb: Notebook, pipeline: Pipeline) -> dict[str, str]:
    """Each markdown cell belongs to the step of the next code cell after it (or inside it)."""
    owner = {i: s.name for s in pipeline.steps for i in s.cells}
    texts: dict[str, list[str]] = {s.name: [] for s in pipeline.steps}
    for cell in nb.cells:
        if cell.cell_type != "markdown":
            continue
        following = [i for i in owner if i > cell.index]
        if following:
            texts[owner[min(following)]].append(cell.source)
    return {name: "\n\n".join(t) for name, t in texts.items()}


def observed_types(workdir: Path | None, steps: list[str]) -> dict[str, dict[str, str]]:
    """step -> variable -> type, from the newest completed local run under ``workdir`` (the
    state store's ``values.json`` manifests); empty when there has been no run."""
    if workdir is None or not (workdir / "runs").is_dir():
        return {}
    found: dict[str, dict[str, str]] = {}
    store = StateStore(workdir)
    for step in steps:
        markers = sorted(
            (workdir / "runs").glob(f"*/{step}/{MARKER}"),
            key=lambda p: p.stat().st_mtime,
            reverse=True,
        )
        for marker in markers:
            try:
                result = store.result_dir(marker.parent.parent.name, step)
                entries = json.loads((result / "values.json").read_text(encoding="utf-8"))
            except (OSError, ValueError, StepRuntimeError):
                continue
            found[step] = {k: str(v.get("type", UNKNOWN)) for k, v in entries.items()}
            break
    return found


def sbom_summary(data: bytes, attached: str = "") -> dict[str, Any]:
    """What the catalog keeps of a CycloneDX JSON SBOM: its sha256, the referrer it is attached
    as in the registry (``REPOSITORY@sha256:...``, "" when not pushed) and each component's
    name, version and purl (the document itself is in OUT and in the registry)."""
    doc = json.loads(data)
    packages = [
        {
            "name": str(c.get("name", "")),
            "version": str(c.get("version", "")),
            "purl": str(c.get("purl", "")),
        }
        for c in doc.get("components") or []
    ]
    return {"sha256": hashlib.sha256(data).hexdigest(), "attached": attached, "packages": packages}


@dataclass(frozen=True)
class BuildFacts:
    """What a build adds: per step, the dependency lock, the image reference and its digest,
    and its image's SBOM (``sbom_summary``)."""

    locks: Mapping[str, str] = field(default_factory=dict)
    images: Mapping[str, str] = field(default_factory=dict)
    digests: Mapping[str, str] = field(default_factory=dict)
    sboms: Mapping[str, Mapping[str, Any]] = field(default_factory=dict)


def step_records(
    nb: Notebook | None,
    pipeline: Pipeline,
    *,
    origin: str,
    build: BuildFacts = BuildFacts(),
    types: Mapping[str, Mapping[str, str]] | None = None,
) -> list[StepRecord]:
    """The records of every step of ``pipeline``."""
    types = types or {}
    markdown = step_markdown(nb, pipeline) if nb is not None else {}
    secret = {s.name for s in pipeline.secret_parameters}
    by = who()
    records = []
    for s in pipeline.steps:
        code = step_code(pipeline, s)
        records.append(
            StepRecord(
                pipeline=pipeline.name,
                step=s.name,
                notebook=str(Path(pipeline.notebook).resolve()),
                notebook_sha256=pipeline.notebook_sha256,
                cells=list(s.cells),
                code_sha256=code_hash(code),
                code=code,
                markdown=markdown.get(s.name, ""),
                inputs={
                    v: {"from": up, "type": types.get(up, {}).get(v, UNKNOWN)}
                    for v, up in sorted(s.inputs.items())
                },
                outputs={v: types.get(s.name, {}).get(v, UNKNOWN) for v in sorted(s.outputs)},
                parameters={
                    p: {
                        "default": None if p in secret else pipeline.parameters.get(p),
                        "secret": p in secret,
                    }
                    for p in sorted(s.parameters)
                },
                imports=imported_packages(code),
                lock=build.locks.get(s.name, ""),
                image=build.images.get(s.name, ""),
                digest=build.digests.get(s.name, ""),
                sbom=dict(build.sboms.get(s.name, {})),
                recorded_by=by,
                origin=origin,
            )
        )
    return records
