"""A node's cgroup subtree (``/<node>`` in every cgroup v1 hierarchy): its daemons join it at
start, the kubelet nests its pods under it (``cgroupRoot``), the container shims inherit it, so
a power loss is "freeze the subtree, SIGKILL every process in it", with no fork racing the kill.

Only cgroup v1 (this machine's layout, which the single node relies on too); only paths under
the names this harness gives (``/j2k-...``) are ever created, written or removed."""

from __future__ import annotations

import contextlib
import os
import time
from pathlib import Path


def hierarchies() -> dict[str, Path]:
    """Mounted v1 hierarchies: controller (or ``name=``) -> mount point."""
    found: dict[str, Path] = {}
    for line in Path("/proc/self/mountinfo").read_text().splitlines():
        left, _, right = line.partition(" - ")
        fields = right.split()
        if not fields or fields[0] != "cgroup":
            continue
        point = Path(left.split()[4])
        for option in fields[2].split(","):
            if option in ("rw", "ro") or option.startswith(("relatime", "nosuid", "nodev")):
                continue
            found.setdefault(option, point)
    return found


#: the single node's pods (its kubelet's default cgroup root): killed on its power loss
SINGLE_NODE_PODS = "/kubepods"


def _ours(path: str) -> str:
    if not (path.startswith("/j2k-") or path == SINGLE_NODE_PODS) or ".." in path:
        raise ValueError(f"not a cgroup of this harness: {path}")
    return path.lstrip("/")


def _dirs(path: str) -> list[Path]:
    return sorted({point / _ours(path) for point in hierarchies().values()})


def require_freezer() -> None:
    if "freezer" not in hierarchies():
        raise SystemExit(
            "several nodes need the cgroup v1 freezer hierarchy (/sys/fs/cgroup/freezer): "
            "a node's power loss freezes and kills its whole subtree"
        )


def create(path: str) -> None:
    """``path`` in every hierarchy; cpuset children start empty, so they get the parent's."""
    parts = _ours(path).split("/")
    for controller, point in hierarchies().items():
        for depth in range(1, len(parts) + 1):
            d = point.joinpath(*parts[:depth])
            d.mkdir(exist_ok=True)
            if controller == "cpuset":
                for key in ("cpuset.cpus", "cpuset.mems"):
                    if not (d / key).read_text().strip():
                        (d / key).write_text((d.parent / key).read_text())


def join_self(path: str) -> None:
    """Moves the calling process into ``path`` everywhere (a child's ``preexec_fn``)."""
    for d in _dirs(path):
        (d / "cgroup.procs").write_text("0\n")


def pids(path: str) -> set[int]:
    """Every process in ``path`` or below, in any hierarchy."""
    found: set[int] = set()
    for d in _dirs(path):
        if not d.is_dir():
            continue
        for procs in d.rglob("cgroup.procs"):
            with contextlib.suppress(OSError):
                found.update(int(p) for p in procs.read_text().split())
    return found


def _freeze(path: str, state: str) -> None:
    f = hierarchies()["freezer"] / _ours(path) / "freezer.state"
    if f.is_file():
        f.write_text(state + "\n")


def kill_all(path: str, timeout: float = 30.0) -> None:
    """Power loss: freeze (no process forks or reacts), SIGKILL each, thaw, wait until empty."""
    _freeze(path, "FROZEN")
    try:
        for pid in pids(path):
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, 9)
    finally:
        _freeze(path, "THAWED")
    deadline = time.monotonic() + timeout
    while pids(path):
        if time.monotonic() > deadline:
            raise SystemExit(f"processes of {path} survived SIGKILL: {sorted(pids(path))}")
        for pid in pids(path):
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, 9)
        time.sleep(0.1)


def remove(path: str) -> None:
    """The subtree, deepest first, in every hierarchy (only empty cgroups can go)."""
    for d in _dirs(path):
        if not d.is_dir():
            continue
        for sub in sorted((p for p in d.rglob("*") if p.is_dir()), key=lambda p: -len(p.parts)):
            with contextlib.suppress(OSError):
                sub.rmdir()
        with contextlib.suppress(OSError):
            d.rmdir()
