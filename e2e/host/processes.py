"""The cluster's daemons: started detached, each one's pid and start time recorded in
``state/pids``; only a process matching both is ever signalled."""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import time
from collections.abc import Sequence
from pathlib import Path

from e2e.host import cgroups
from e2e.host.layout import BIN, LOGS, PIDS, STATE


def _proc_start(pid: int) -> str | None:
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    return stat.rsplit(")", 1)[1].split()[19]


def pid_of(name: str) -> int | None:
    """The pid of the daemon ``name`` started, while that very process runs."""
    f = PIDS / f"{name}.pid"
    try:
        pid_s, start = f.read_text().split()
    except (OSError, ValueError):
        return None
    pid = int(pid_s)
    return pid if _proc_start(pid) == start else None


def write_config(path: Path, text: str) -> None:
    """Write a daemon's configuration only when it changes: kube-proxy exits when its
    configuration file is written at all ("content ... was updated"), and `cluster up` on a
    running cluster rewrote every file, so kube-proxy died and new Services stayed unreachable
    (seen as test_dns_and_clusterip_service failing after a second `cluster up`)."""
    if path.is_file() and path.read_text() == text:
        return
    path.write_text(text)


def in_netns(netns: str | None, args: Sequence[str]) -> list[str]:
    """``args`` run in the network namespace ``netns`` (None: the host's). Only the network
    namespace is entered (``nsenter`` execs, so the pid stays the daemon's): ``ip netns exec``
    would also unshare the mount namespace, hiding the kubelet's mounts from containerd."""
    if netns is None:
        return list(args)
    return ["nsenter", f"--net=/run/netns/{netns}", "--", *args]


def start(
    name: str,
    args: Sequence[str],
    env: dict[str, str] | None = None,
    netns: str | None = None,
    cgroup: str | None = None,
) -> None:
    """``name`` started detached (once), in ``netns`` and the cgroup ``cgroup`` when given."""
    if pid_of(name):
        return
    LOGS.mkdir(parents=True, exist_ok=True)
    PIDS.mkdir(parents=True, exist_ok=True)
    full_env = dict(os.environ)
    full_env["PATH"] = f"{BIN}:/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"
    full_env.update(env or {})
    with (LOGS / f"{name}.log").open("ab") as out:
        proc = subprocess.Popen(
            in_netns(netns, args),
            preexec_fn=(lambda: cgroups.join_self(cgroup)) if cgroup else None,
            stdin=subprocess.DEVNULL,
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=True,
            env=full_env,
            cwd=STATE,
        )
    start_time = None
    for _ in range(50):
        start_time = _proc_start(proc.pid)
        if start_time:
            break
        time.sleep(0.01)
    (PIDS / f"{name}.pid").write_text(f"{proc.pid} {start_time}\n")
    time.sleep(0.3)
    if proc.poll() is not None:
        tail = (LOGS / f"{name}.log").read_text(errors="replace")[-3000:]
        raise SystemExit(f"{name} exited at once ({proc.returncode}):\n{tail}")


def stop(name: str, grace: float = 20.0) -> None:
    pid = pid_of(name)
    if pid is None:
        (PIDS / f"{name}.pid").unlink(missing_ok=True)
        return
    with contextlib.suppress(ProcessLookupError):
        os.kill(pid, signal.SIGTERM)
    deadline = time.monotonic() + grace
    while pid_of(name) and time.monotonic() < deadline:
        time.sleep(0.2)
    if pid_of(name):
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGKILL)
        time.sleep(0.5)
    (PIDS / f"{name}.pid").unlink(missing_ok=True)
