"""A real OCI registry for a test: the CNCF distribution registry (built from its Go module by
tests/setup.d/35-oci-tools.sh) on a free loopback port, with its own storage, optionally behind
htpasswd authentication; stopped by its pid."""

from __future__ import annotations

import json
import signal
import subprocess
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import bcrypt

from tests.support.prometheus_server import free_port
from tests.support.setup_scripts import exported

#: what OCI clients ask a registry's manifests for (image manifests and indexes, OCI and Docker)
MANIFEST_TYPES = ", ".join(
    [
        "application/vnd.oci.image.manifest.v1+json",
        "application/vnd.oci.image.index.v1+json",
        "application/vnd.docker.distribution.manifest.v2+json",
        "application/vnd.docker.distribution.manifest.list.v2+json",
    ]
)


def tool(variable: str) -> str:
    """``J2K_REGISTRY``, ``J2K_ORAS`` or ``J2K_COSIGN``: from the environment, else what the
    setup script builds (cached after the first time)."""
    found = exported("35-oci-tools.sh", variable)
    if not found:
        raise RuntimeError(f"35-oci-tools.sh exported no {variable}")
    return found


@dataclass(frozen=True)
class Registry:
    """A running registry: ``host`` is ``127.0.0.1:PORT``; ``user``/``password`` when it asks."""

    host: str
    root: Path
    user: str | None = None
    password: str | None = None

    def request(self, path: str, *, method: str = "GET", accept: str = MANIFEST_TYPES) -> Any:
        """An HTTP response from the registry's API (``/v2/...``), authenticated if it asks."""
        req = urllib.request.Request(f"http://{self.host}{path}", method=method)
        req.add_header("Accept", accept)
        if self.user is not None:
            import base64

            token = base64.b64encode(f"{self.user}:{self.password}".encode()).decode()
            req.add_header("Authorization", f"Basic {token}")
        return urllib.request.urlopen(req, timeout=10)

    def manifest_digest(self, repository: str, reference: str) -> str:
        """The registry's own digest of ``repository:reference`` (its Docker-Content-Digest)."""
        with self.request(f"/v2/{repository}/manifests/{reference}", method="HEAD") as resp:
            return str(resp.headers["Docker-Content-Digest"])

    def manifest(self, repository: str, reference: str) -> dict[str, Any]:
        with self.request(f"/v2/{repository}/manifests/{reference}") as resp:
            loaded: dict[str, Any] = json.load(resp)
            return loaded

    def tags(self, repository: str) -> list[str]:
        try:
            with self.request(f"/v2/{repository}/tags/list", accept="application/json") as resp:
                return list(json.load(resp).get("tags") or [])
        except urllib.error.HTTPError as exc:
            if exc.code == 404:
                return []
            raise

    def repositories(self) -> list[str]:
        with self.request("/v2/_catalog", accept="application/json") as resp:
            return list(json.load(resp).get("repositories") or [])


def _config(root: Path, port: int, htpasswd: Path | None) -> str:
    auth = (
        f"auth:\n  htpasswd:\n    realm: jup2kub-tests\n    path: {htpasswd}\n" if htpasswd else ""
    )
    return (
        "version: 0.1\n"
        f"storage:\n  filesystem:\n    rootdirectory: {root / 'data'}\n  delete:\n"
        "    enabled: true\n"
        f"http:\n  addr: 127.0.0.1:{port}\n"
        "log:\n  level: warn\n  accesslog:\n    disabled: true\n" + auth
    )


def _wait_up(host: str, proc: subprocess.Popen[bytes], log: Path) -> None:
    deadline = time.monotonic() + 30
    while True:
        try:
            with urllib.request.urlopen(f"http://{host}/v2/", timeout=2):
                return
        except urllib.error.HTTPError as exc:
            if exc.code == 401:  # up, and asking for credentials
                return
        except OSError:
            pass
        assert proc.poll() is None, log.read_text()
        assert time.monotonic() < deadline, f"registry did not start:\n{log.read_text()}"
        time.sleep(0.1)


def _untag(host: str) -> None:
    """Remove the Docker engine's tags into this (ephemeral) registry that the test made by
    pushing (``build --push`` tags each image as HOST/REPO:TAG): tags only, never an image
    another name still holds."""
    try:
        import docker

        client = docker.from_env(timeout=30)
        for image in client.images.list():
            for tag in image.tags:
                if tag.startswith(host + "/"):
                    client.images.remove(tag, noprune=True)
    except Exception:  # no engine here (a test without Docker): nothing was tagged
        return


@contextmanager
def running_registry(root: Path, *, user: str | None = None) -> Iterator[Registry]:
    """A registry storing under ``root``; with ``user``, only that user (password ``user``
    reversed + ``-pw``) may pull or push."""
    root.mkdir(parents=True, exist_ok=True)
    port = free_port()
    password = None
    htpasswd = None
    if user is not None:
        password = user[::-1] + "-pw"
        htpasswd = root / "htpasswd"
        hashed = bcrypt.hashpw(password.encode(), bcrypt.gensalt(rounds=5)).decode()
        htpasswd.write_text(f"{user}:{hashed}\n")
    config = root / "config.yml"
    config.write_text(_config(root, port, htpasswd))
    log = root / "registry.log"
    with log.open("wb") as out:
        proc = subprocess.Popen(
            [tool("J2K_REGISTRY"), "serve", str(config)],
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    try:
        host = f"127.0.0.1:{port}"
        _wait_up(host, proc, log)
        yield Registry(host, root, user, password)
    finally:
        _untag(f"127.0.0.1:{port}")
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(10)
