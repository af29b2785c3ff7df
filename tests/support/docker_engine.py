"""The tests' Docker engine and base image (tests/setup.d/40-docker.sh sets both up)."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

import docker

SETUP = Path(__file__).resolve().parents[2] / "tests" / "setup.d" / "40-docker.sh"


def base_image() -> str:
    """The test base image (and a running engine): from the setup script when the environment
    does not already name one that exists."""
    name = os.environ.get("J2K_BASE_IMAGE")
    try:
        if name:
            docker.from_env().images.get(name)
            return name
    except docker.errors.DockerException:
        pass
    out = subprocess.run(
        ["bash", "-c", f'set -euo pipefail; source "{SETUP}"; echo "$J2K_BASE_IMAGE"'],
        check=True,
        capture_output=True,
        text=True,
        timeout=1800,
    )
    name = out.stdout.strip().splitlines()[-1]
    os.environ["J2K_BASE_IMAGE"] = name
    return name
