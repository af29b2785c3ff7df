"""What the test command's setup scripts (tests/setup.d/*.sh) export, for a test run outside
`bash tests/run.sh`: the variable from the environment when it names something that exists,
else the script sourced once (it installs or builds what is missing) and its value kept."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

SETUP_DIR = Path(__file__).resolve().parents[2] / "tests" / "setup.d"


def exported(script: str, variable: str, *, timeout: float = 1800) -> str:
    """``$variable`` as ``tests/setup.d/<script>`` exports it ("" when the script leaves it
    empty); a failing script raises with its stderr."""
    configured = os.environ.get(variable)
    if configured and Path(configured).exists():
        return configured
    proc = subprocess.run(
        ["bash", "-c", f'set -euo pipefail; source "{SETUP_DIR / script}"; echo "${variable}"'],
        capture_output=True,
        text=True,
        check=False,
        timeout=timeout,
        cwd=SETUP_DIR.parents[1],
    )
    if proc.returncode != 0:
        raise RuntimeError(f"{script} failed:\n{proc.stderr[-3000:]}")
    lines = proc.stdout.strip().splitlines()
    value = lines[-1] if lines else ""
    if value:
        os.environ[variable] = value
    return value
