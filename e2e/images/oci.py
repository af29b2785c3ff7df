"""Writes container images as `docker save` archives, without Docker or a registry.

The archive holds manifest.json, the image config and one uncompressed layer tar; this is the
format `docker load` and `ctr images import` read. Layers are built from a list of entries
(files, directories, symlinks) or from a whole root filesystem directory.
"""

from __future__ import annotations

import hashlib
import io
import json
import os
import stat
import tarfile
import tempfile
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path

DEFAULT_PATH = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"


@dataclass
class Entry:
    """One path in a layer: a regular file (from ``source`` or ``data``), a dir or a symlink."""

    path: str
    source: Path | None = None
    data: bytes | None = None
    mode: int = 0o644
    kind: str = "file"  # file | dir | symlink
    target: str = ""
    uid: int = 0
    gid: int = 0


@dataclass
class ImageConfig:
    entrypoint: list[str] | None = None
    cmd: list[str] | None = None
    env: list[str] = field(default_factory=lambda: [f"PATH={DEFAULT_PATH}"])
    user: str = ""
    workdir: str = ""
    labels: dict[str, str] = field(default_factory=dict)


def _add_entries(tar: tarfile.TarFile, entries: Iterable[Entry]) -> None:
    for e in entries:
        info = tarfile.TarInfo(e.path.lstrip("/"))
        info.uid, info.gid, info.mode, info.mtime = e.uid, e.gid, e.mode, 0
        if e.kind == "dir":
            info.type = tarfile.DIRTYPE
            tar.addfile(info)
        elif e.kind == "symlink":
            info.type, info.linkname = tarfile.SYMTYPE, e.target
            tar.addfile(info)
        else:
            data = e.data if e.data is not None else Path(e.source or "").read_bytes()
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))


def _add_rootfs(tar: tarfile.TarFile, root: Path, skip: tuple[str, ...]) -> None:
    """Adds a whole directory tree as the layer (ownership and modes kept, devices skipped)."""
    for dirpath, dirnames, filenames in os.walk(root):
        rel_dir = os.path.relpath(dirpath, root)
        dirnames.sort()
        keep = []
        for d in dirnames:
            rel = os.path.normpath(os.path.join(rel_dir, d))
            if rel in skip:
                # keep the (empty) directory itself as a mount point
                tar.add(os.path.join(dirpath, d), arcname=rel, recursive=False)
            else:
                keep.append(d)
        dirnames[:] = keep
        for name in sorted(dirnames + filenames):
            full = os.path.join(dirpath, name)
            rel = os.path.normpath(os.path.join(rel_dir, name))
            st = os.lstat(full)
            if stat.S_ISCHR(st.st_mode) or stat.S_ISBLK(st.st_mode) or stat.S_ISFIFO(st.st_mode):
                continue
            if stat.S_ISSOCK(st.st_mode):
                continue
            tar.add(full, arcname=rel, recursive=False)


def write_docker_archive(
    out: Path,
    repo_tag: str,
    config: ImageConfig,
    entries: Iterable[Entry] = (),
    rootfs: Path | None = None,
    skip: tuple[str, ...] = ("dev", "proc", "sys", "run", "tmp"),
) -> None:
    """Writes a single-layer image named ``repo_tag`` to ``out`` (atomically)."""
    out.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=out.parent) as tmp:
        layer = Path(tmp) / "layer.tar"
        with tarfile.open(layer, "w", format=tarfile.PAX_FORMAT) as tar:
            if rootfs is not None:
                _add_rootfs(tar, rootfs, skip)
            _add_entries(tar, entries)
        h = hashlib.sha256()
        with layer.open("rb") as f:
            for chunk in iter(lambda: f.read(1 << 20), b""):
                h.update(chunk)
        diff_id = "sha256:" + h.hexdigest()
        container_config: dict[str, object] = {"Env": config.env}
        if config.entrypoint is not None:
            container_config["Entrypoint"] = config.entrypoint
        if config.cmd is not None:
            container_config["Cmd"] = config.cmd
        if config.user:
            container_config["User"] = config.user
        if config.workdir:
            container_config["WorkingDir"] = config.workdir
        if config.labels:
            container_config["Labels"] = config.labels
        cfg = {
            "architecture": "amd64",
            "os": "linux",
            "created": "1970-01-01T00:00:00Z",
            "config": container_config,
            "rootfs": {"type": "layers", "diff_ids": [diff_id]},
            "history": [{"created": "1970-01-01T00:00:00Z", "created_by": "jup2kub e2e/oci.py"}],
        }
        cfg_bytes = json.dumps(cfg, sort_keys=True).encode()
        cfg_name = hashlib.sha256(cfg_bytes).hexdigest() + ".json"
        layer_name = diff_id.removeprefix("sha256:") + "/layer.tar"
        manifest = [{"Config": cfg_name, "RepoTags": [repo_tag], "Layers": [layer_name]}]
        part = out.with_suffix(out.suffix + ".part")
        with tarfile.open(part, "w") as tar:
            meta = ((cfg_name, cfg_bytes), ("manifest.json", json.dumps(manifest).encode()))
            for name, data in meta:
                info = tarfile.TarInfo(name)
                info.size, info.mode = len(data), 0o644
                tar.addfile(info, io.BytesIO(data))
            tar.add(layer, arcname=layer_name)
        part.replace(out)
