"""The cluster's own kubectl, with the admin kubeconfig."""

from __future__ import annotations

import subprocess

from e2e.host.commands import run
from e2e.host.layout import BIN, KUBECONFIG


def kubectl(
    *args: str,
    check: bool = True,
    capture: bool = True,
    input_text: str | None = None,
    timeout: float = 120,
) -> subprocess.CompletedProcess[str]:
    return run(
        [str(BIN / "kubectl"), "--kubeconfig", str(KUBECONFIG), *args],
        check=check,
        capture=capture,
        input_text=input_text,
        timeout=timeout,
    )
