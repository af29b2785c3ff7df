"""Running commands and waiting for conditions, with the harness's progress log on stderr."""

from __future__ import annotations

import subprocess
import sys
import time
from collections.abc import Callable, Sequence

from e2e.host.layout import LOGS


def log(msg: str) -> None:
    print(f"[e2e/cluster] {msg}", file=sys.stderr, flush=True)


def run(
    args: Sequence[str],
    check: bool = True,
    capture: bool = False,
    timeout: float | None = 300,
    env: dict[str, str] | None = None,
    input_text: str | None = None,
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        list(args),
        check=check,
        text=True,
        timeout=timeout,
        input=input_text,
        stdout=subprocess.PIPE if capture else None,
        stderr=subprocess.PIPE if capture else None,
        env=env,
    )


def wait_for(what: str, probe: Callable[[], bool], timeout: float, interval: float = 1.0) -> None:
    deadline = time.monotonic() + timeout
    while True:
        try:
            if probe():
                return
        except (OSError, subprocess.SubprocessError):
            pass
        if time.monotonic() > deadline:
            raise SystemExit(f"timed out after {timeout:.0f} s waiting for {what} (logs: {LOGS})")
        time.sleep(interval)


def http_ok(url: str) -> bool:
    r = run(
        ["curl", "-sf", "-o", "/dev/null", "--max-time", "2", url],
        check=False,
        capture=True,
        timeout=10,
    )
    return r.returncode == 0
