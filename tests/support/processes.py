"""Processes as the tests see them through /proc: alive or not, children, where they run."""

from __future__ import annotations

import os
import subprocess
import time
from pathlib import Path


def workers_env(mode: str, **extra: str) -> dict[str, str]:
    """This environment with ``J2K_LOCAL_WORKERS=mode`` (spawn or fork) and ``extra``."""
    return {**os.environ, "J2K_LOCAL_WORKERS": mode, **extra}


def wait_for_file(path: Path, proc: subprocess.Popen[str]) -> int:
    """The pid a step wrote into ``path`` (waits while the run goes on)."""
    while not (path.exists() and path.read_text().strip()):
        assert proc.poll() is None, proc.communicate()
        time.sleep(0.05)
    return int(path.read_text())


def alive(pid: int) -> bool:
    """Whether ``pid`` is a live (not zombie) process."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return False
    return stat.rpartition(")")[2].split()[0] != "Z"


def wait_gone(pids: list[int]) -> list[int]:
    """The pids still alive after waiting for them to end (generously: the machine is shared)."""
    for _ in range(600):
        left = [p for p in pids if alive(p)]
        if not left:
            return []
        time.sleep(0.05)
    return left


def children(pid: int) -> list[int]:
    """The direct children of ``pid`` (every thread's)."""
    found: list[int] = []
    for task in Path(f"/proc/{pid}/task").iterdir():
        found += [int(c) for c in (task / "children").read_text().split()]
    return found


def processes_in(cwd: Path) -> list[int]:
    """Processes whose working directory is ``cwd``."""
    pids = []
    for proc in Path("/proc").iterdir():
        try:
            if proc.name.isdigit() and (proc / "cwd").resolve() == cwd.resolve():
                pids.append(int(proc.name))
        except OSError:
            continue
    return pids
