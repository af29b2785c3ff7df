"""``jup2kub runs export``: a run's crate as one RO-Crate zip (``ro-crate-metadata.json`` at the
zip's root, beside every file it lists: the notebook, the results notebook, the summary, the
environment's lock, the steps' values), for sharing or depositing the run as a whole."""

from __future__ import annotations

import json
import os
import tempfile
import zipfile
from pathlib import Path
from typing import Any

from jup2kub.errors import InputError, UsageError
from jup2kub.files import writable
from jup2kub.provenance.crate import METADATA

#: the comment every zip this writes carries: an existing file without it is not replaced
ZIP_COMMENT = b"jup2kub runs export: RO-Crate of one run"


def export_crate(root: Path, target: Path) -> tuple[Path, int]:
    """Pack the crate at ``root`` into ``target`` (atomically); returns it and how many files
    (besides the metadata) it holds. An existing ``target`` is replaced only if this wrote it."""
    metadata = root / METADATA
    if not metadata.is_file():
        raise InputError(
            "this run has no RO-Crate (it ran before runs recorded one, or was interrupted)",
            where=str(root),
            hint="`jup2kub run NOTEBOOK --resume RUN_ID` completes it and writes its crate",
        )
    _check_target(target)
    members = _data_files(root, json.loads(metadata.read_bytes()))
    hint = "name a file in a writable directory"
    with writable("the crate's zip", target, hint):
        _write_zip(root, members, target)
    return target, len(members)


def _check_target(target: Path) -> None:
    if target.is_dir():
        raise UsageError("the zip's path is a directory", where=str(target), hint="name a file")
    if target.exists() and not _ours(target):
        raise UsageError(
            "the file exists and is not a crate `jup2kub runs export` wrote: not replaced",
            where=str(target),
            hint="remove it first, or name another file",
        )


def _ours(path: Path) -> bool:
    try:
        with zipfile.ZipFile(path) as zf:
            return zf.comment == ZIP_COMMENT
    except (OSError, zipfile.BadZipFile):
        return False


def _data_files(root: Path, doc: dict[str, Any]) -> list[str]:
    """The files the crate lists (relative ``@id``s of File entities), each inside ``root``."""
    found = []
    top = root.resolve()
    for entity in doc.get("@graph", []):
        kind, ident = entity.get("@type"), str(entity.get("@id", ""))
        kinds = kind if isinstance(kind, list) else [kind]
        if "File" not in kinds or ident == METADATA or ":" in ident or ident.startswith("#"):
            continue
        path = (root / ident).resolve()
        if top not in path.parents or not path.is_file():
            raise InputError(
                f"the crate lists {ident!r}, which is not a file inside it",
                where=str(root),
                hint="the run's directory was changed after the run; re-run it",
            )
        found.append(ident)
    return found


def _write_zip(root: Path, members: list[str], target: Path) -> None:
    target.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{target.name}.", suffix=".tmp", dir=target.parent)
    os.close(fd)
    try:
        with zipfile.ZipFile(tmp, "w", compression=zipfile.ZIP_DEFLATED) as zf:
            zf.write(root / METADATA, METADATA)
            for member in members:
                zf.write(root / member, member)
            zf.comment = ZIP_COMMENT
        os.chmod(tmp, 0o644)
        os.replace(tmp, target)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
