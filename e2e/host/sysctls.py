"""The host settings the cluster changes (bridge netfilter, and what the kubelet always sets):
saved before the first ``up``, restored by ``down``."""

from __future__ import annotations

import contextlib
import json
from pathlib import Path

from e2e.host.commands import log
from e2e.host.layout import STATE

SYSCTLS = (
    "net/bridge/bridge-nf-call-iptables",
    "vm/overcommit_memory",
    "vm/panic_on_oom",
    "kernel/panic",
    "kernel/panic_on_oops",
    "kernel/keys/root_maxkeys",
    "kernel/keys/root_maxbytes",
)
SAVED = STATE / "sysctl.json"


def sysctl_path(key: str) -> Path:
    return Path("/proc/sys") / key


def save() -> None:
    if SAVED.is_file():
        return
    values = {}
    for key in SYSCTLS:
        with contextlib.suppress(OSError):
            values[key] = sysctl_path(key).read_text().strip()
    SAVED.write_text(json.dumps(values, indent=2))


def restore() -> None:
    if not SAVED.is_file():
        return
    for key, value in json.loads(SAVED.read_text()).items():
        try:
            sysctl_path(key).write_text(value + "\n")
        except OSError as e:
            log(f"could not restore {key}={value}: {e}")
