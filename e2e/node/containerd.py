"""The node's containerd: its own instance (state/containerd: config, socket, root), separate
from any Docker engine's; stopped pod by pod through CRI so CNI cleans up."""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
from pathlib import Path

from e2e.host import cgroups
from e2e.host.commands import log, run, wait_for
from e2e.host.layout import BIN
from e2e.host.processes import pid_of, start, write_config
from e2e.network.addresses import Node
from e2e.network.cni import cni_bin_dir, cni_config, conf_dir


def hosts_dir(node: Node) -> Path:
    """Where the node's containerd looks for ``<host:port>/hosts.toml`` (how to reach a
    registry: plain HTTP, which capabilities) before each pull."""
    return node.state / "containerd" / "certs.d"


def containerd_config(node: Node, sandbox_image: str) -> str:
    root = node.state / "containerd"
    return f"""version = 2
root = "{root}/root"
state = "{root}/run"
oom_score = 0

[grpc]
  address = "{node.socket}"

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
    conf_dir = "{conf_dir(node)}"
  # registries' hosts.toml (e2e/cluster registry add HOST:PORT), read at every pull
  [plugins."io.containerd.grpc.v1.cri".registry]
    config_path = "{hosts_dir(node)}"

[plugins."io.containerd.internal.v1.opt"]
  path = "{root}/opt"
"""


def ctr(
    node: Node, *args: str, check: bool = True, timeout: float = 900
) -> subprocess.CompletedProcess[str]:
    return run(
        ["ctr", "--address", str(node.socket), "--namespace", "k8s.io", *args],
        check=check,
        capture=True,
        timeout=timeout,
    )


def start_containerd(node: Node, sandbox_image: str) -> None:
    """Its configuration and the CNI's written (when changed), started (in the node's network
    namespace and cgroup), answering."""
    for sub in ("containerd/certs.d", "cni/net.d", "cni/ipam"):
        (node.state / sub).mkdir(parents=True, exist_ok=True)
    if node.daemons_cgroup:
        cgroups.create(node.daemons_cgroup)
    config = node.state / "containerd" / "config.toml"
    write_config(config, containerd_config(node, sandbox_image))
    write_config(conf_dir(node) / "10-j2k.conflist", cni_config(node))
    start(
        node.daemon("containerd"),
        ["containerd", "--config", str(config)],
        netns=node.netns,
        cgroup=node.daemons_cgroup,
    )
    wait_for(
        node.daemon("containerd"),
        lambda: ctr(node, "version", check=False, timeout=10).returncode == 0,
        60,
        0.5,
    )


def stop_pod_sandboxes(node: Node) -> None:
    """Every pod sandbox stopped through CRI: CNI DEL runs, network namespaces go away."""
    if pid_of(node.daemon("containerd")) and (BIN / "cri-cleanup").is_file():
        r = run(
            [str(BIN / "cri-cleanup"), str(node.socket)], check=False, capture=True, timeout=330
        )
        log((r.stdout + r.stderr).strip())


def _our_shims(node: Node) -> list[int]:
    """containerd shims started by the node's containerd (their -address is its socket)."""
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
            and str(node.socket).encode() in argv
        ):
            pids.append(int(proc.name))
    return pids


def kill_shims(node: Node) -> None:
    for pid in _our_shims(node):
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGKILL)
