"""The cluster-free part of the e2e harness, in the default suite so that it cannot rot between
full e2e runs (`bash e2e/run.sh`): the pod sandbox image the harness assembles by hand (no
registry to pull ``pause`` from) must load into and run on a real container engine."""

from __future__ import annotations

import json
import shutil
import subprocess
import time
from pathlib import Path

import pytest

from e2e.build.components import build_pause
from e2e.host.processes import write_config
from e2e.images import system as images


def _docker() -> str:
    docker = shutil.which("docker")
    if (
        docker is None
        or subprocess.run([docker, "version"], capture_output=True, timeout=60).returncode != 0
    ):
        pytest.skip("no Docker engine (tests/setup.d/40-docker.sh starts one)")
    return docker


def test_hand_assembled_pause_image_runs_on_a_real_engine(tmp_path: Path) -> None:
    if shutil.which("go") is None:
        pytest.skip("Go is needed to build the pause binary (as for helm)")
    docker = _docker()
    cache = tmp_path / "cache"
    (cache / "bin").mkdir(parents=True)
    build_pause(cache)
    tar = images.pause(cache / "bin", tmp_path / "images")
    loaded = subprocess.run(
        [docker, "load", "-i", str(tar)], capture_output=True, text=True, timeout=300
    )
    assert loaded.returncode == 0, loaded.stderr
    assert images.PAUSE_IMAGE in loaded.stdout
    name = f"j2k-pause-test-{tmp_path.name}"
    started = subprocess.run(
        [
            docker,
            "run",
            "-d",
            "--name",
            name,
            "--network",
            "none",
            "--read-only",
            images.PAUSE_IMAGE,
        ],
        capture_output=True,
        text=True,
        timeout=120,
    )
    try:
        assert started.returncode == 0, started.stderr
        info = json.loads(
            subprocess.run(
                [docker, "inspect", name], capture_output=True, text=True, timeout=60, check=True
            ).stdout
        )[0]
        assert info["State"]["Running"] is True
        assert info["Config"]["User"] == "65535:65535"  # non-root, as the kubelet expects
        # the sandbox exits cleanly on SIGTERM, so pod deletion is quick
        stopped = subprocess.run(
            [docker, "stop", "-t", "10", name], capture_output=True, text=True, timeout=60
        )
        assert stopped.returncode == 0, stopped.stderr
        state = json.loads(
            subprocess.run(
                [docker, "inspect", name], capture_output=True, text=True, timeout=60, check=True
            ).stdout
        )[0]["State"]
        assert state["ExitCode"] == 0, state
    finally:
        subprocess.run([docker, "rm", "-f", name], capture_output=True, timeout=60)
        subprocess.run([docker, "rmi", images.PAUSE_IMAGE], capture_output=True, timeout=60)


def test_daemon_configs_are_rewritten_only_when_they_change(tmp_path: Path) -> None:
    """kube-proxy exits when its configuration file is written at all: a second `cluster up`
    that rewrote it left new Services unreachable (the e2e flake of
    test_dns_and_clusterip_service). An unchanged configuration is not written again."""
    path = tmp_path / "kube-proxy-config.json"
    write_config(path, "{}")
    first = path.stat().st_mtime_ns
    time.sleep(0.05)  # more than the kernel's coarse clock tick: a write would move the mtime
    write_config(path, "{}")
    assert path.stat().st_mtime_ns == first
    write_config(path, '{"mode": "iptables"}')
    assert path.read_text() == '{"mode": "iptables"}'
