"""The mounts under the cluster's state directory (the kubelet's volumes, containerd's
snapshots), removed by ``down`` before the directory is."""

from __future__ import annotations

from pathlib import Path

from e2e.host.commands import run
from e2e.host.layout import STATE


def ours() -> list[str]:
    prefix = str(STATE) + "/"
    mounts = []
    for line in Path("/proc/self/mountinfo").read_text().splitlines():
        point = line.split()[4].replace("\\040", " ")
        if point.startswith(prefix) or point == str(STATE):
            mounts.append(point)
    return mounts


def unmount_ours() -> None:
    """Deepest first; a busy mount lazily."""
    for point in sorted(ours(), key=len, reverse=True):
        if run(["umount", point], check=False, capture=True).returncode != 0:
            run(["umount", "-l", point], check=False, capture=True)
