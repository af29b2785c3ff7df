"""The tests' Docker engine and base image (tests/setup.d/40-docker.sh sets both up)."""

from __future__ import annotations

import os

import docker

from tests.support.setup_scripts import exported


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
    os.environ.pop("J2K_BASE_IMAGE", None)
    return exported("40-docker.sh", "J2K_BASE_IMAGE")
