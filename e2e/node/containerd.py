"""The node's containerd: its own instance (state/containerd: config, socket, root), separate
from any Docker engine's; stopped pod by pod through CRI so CNI cleans up."""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
from pathlib import Path

from e2e.host.commands import log, run, wait_for
from e2e.host.layout import BIN, CTRD_SOCK, STATE
from e2e.host.processes import pid_of, start, write_config
from e2e.network.cni import CONF_DIR, cni_bin_dir, cni_config

CONFIG = STATE / "containerd" / "config.toml"


def containerd_config(sandbox_image: str) -> str:
    root = STATE / "containerd"
    return f"""version = 2
root = "{root}/root"
state = "{root}/run"
oom_score = 0

[grpc]
  address = "{CTRD_SOCK}"

[debug]
  level = "info"

[plugins."io.containerd.grpc.v1.cri"]
  sandbox_image = "{sandbox_image}"
  enable_selinux = false
  # root here lacks CAP_SYS_RESOURCE (not in the bounding set): runc cannot lower a process's
  # oom_score_adj (sandboxes ask for -998), so cap it at containerd's own score (0)
  restrict_oom_score_adj = true
  max_container_log_line_size = 16384
  [plugins."io.containerd.grpc.v1.cri".containerd]
    snapshotter = "overlayfs"
    default_runtime_name = "runc"
    [plugins."io.containerd.grpc.v1.cri".containerd.runtimes.runc]
      runtime_type = "io.containerd.runc.v2"
      [plugins."io.containerd.grpc.v1.cri".containerd.runtimes.runc.options]
        SystemdCgroup = false
  [plugins."io.containerd.grpc.v1.cri".cni]
    bin_dir = "{cni_bin_dir()}"
    conf_dir = "{CONF_DIR}"

[plugins."io.containerd.internal.v1.opt"]
  path = "{root}/opt"
"""


def ctr(*args: str, check: bool = True, timeout: float = 900) -> subprocess.CompletedProcess[str]:
    return run(
        ["ctr", "--address", str(CTRD_SOCK), "--namespace", "k8s.io", *args],
        check=check,
        capture=True,
        timeout=timeout,
    )


def start_containerd(sandbox_image: str) -> None:
    """Its configuration and the CNI's written (when changed), started, answering."""
    write_config(CONFIG, containerd_config(sandbox_image))
    write_config(CONF_DIR / "10-j2k.conflist", cni_config())
    start("containerd", ["containerd", "--config", str(CONFIG)])
    wait_for("containerd", lambda: ctr("version", check=False, timeout=10).returncode == 0, 60, 0.5)


def stop_pod_sandboxes() -> None:
    """Every pod sandbox stopped through CRI: CNI DEL runs, network namespaces go away."""
    if pid_of("containerd") and (BIN / "cri-cleanup").is_file():
        r = run([str(BIN / "cri-cleanup"), str(CTRD_SOCK)], check=False, capture=True, timeout=330)
        log((r.stdout + r.stderr).strip())


def _our_shims() -> list[int]:
    """containerd shims started by this cluster's containerd (their -address is our socket)."""
    pids = []
    for proc in Path("/proc").iterdir():
        if not proc.name.isdigit():
            continue
        try:
            argv = (proc / "cmdline").read_bytes().split(b"\0")
        except OSError:
            continue
        if (
            argv
            and argv[0].endswith(b"containerd-shim-runc-v2")
            and str(CTRD_SOCK).encode() in argv
        ):
            pids.append(int(proc.name))
    return pids


def kill_shims() -> None:
    for pid in _our_shims():
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGKILL)
