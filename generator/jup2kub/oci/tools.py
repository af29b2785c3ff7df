"""The OCI command-line tools Jup2Kub drives: ORAS (artifacts, referrers, OCI image layouts)
and cosign (signatures). Finding them, running them, and turning their failures into errors
that say what to do.

Why shell out rather than a Python library: no maintained Python library writes cosign's
signature format with a key, attaches OCI 1.1 referrers and copies image layouts with their
referrers; these two CLIs are what the ecosystem (Flux, Argo CD, Kyverno) itself uses, and like
helm they read the user's registry credentials (``docker login``) without Jup2Kub seeing them.
"""

from __future__ import annotations

import os
import subprocess
from collections.abc import Mapping, Sequence
from pathlib import Path

from jup2kub.errors import InputError, RegistryError
from jup2kub.programs import Program, find

SHARING_NEEDS = " (sharing and signing need it)"
ORAS = Program(
    "oras",
    "J2K_ORAS",
    "it (go install oras.land/oras/cmd/oras@v1.3.6, or your package manager)",
    SHARING_NEEDS,
)
COSIGN = Program(
    "cosign",
    "J2K_COSIGN",
    "it (go install github.com/sigstore/cosign/v2/cmd/cosign@v2.6.5, or your package manager)",
    SHARING_NEEDS,
)


def run(
    tool: Program,
    args: Sequence[str],
    *,
    registry: str | None = None,
    env: Mapping[str, str] | None = None,
    stdin: str | None = None,
    timeout: float = 900.0,
    cwd: Path | None = None,
) -> str:
    """Run the tool (in ``cwd``: ORAS names a pushed file by the path it is given, so files are
    given relative to their directory); returns its stdout. A failure becomes a RegistryError
    when it is about ``registry`` (unreachable, credentials, no such artifact), else an
    InputError carrying the tool's own message."""
    command = [find(tool), *args]
    try:
        result = subprocess.run(
            command,
            capture_output=True,
            text=True,
            check=False,
            input=stdin,
            stdin=None if stdin is not None else subprocess.DEVNULL,
            env={**os.environ, **(env or {})},
            timeout=timeout,
            cwd=cwd,
        )
    except subprocess.TimeoutExpired as exc:
        raise InputError(
            f"{tool.name} {args[0]} took longer than {timeout:.0f} s",
            where=registry,
            hint="check that the registry is reachable and responsive",
        ) from exc
    if result.returncode != 0:
        message = _without_warnings(result.stderr or result.stdout)
        raise failure(f"{tool.name} {args[0]}", message, registry)
    return result.stdout


def _without_warnings(output: str) -> str:
    """The tool's error without its warnings: cosign verify warns that it could not reach the
    public Sigstore TUF mirror ("no such host") even when the registry answered, and that must
    not read as the registry being unreachable."""
    lines = [line for line in output.strip().splitlines() if not line.startswith("WARNING:")]
    return "\n".join(lines).strip() or output.strip()


_UNREACHABLE = (
    "connection refused",
    "no such host",
    "i/o timeout",
    "server misbehaving",
    "network is unreachable",
    "no route to host",
    "connection reset",
    "http response to https client",
)
_UNAUTHENTICATED = ("401", "unauthorized", "authentication required", "credential")
_DENIED = ("403", "denied", "forbidden")
_MISSING = ("manifest_unknown", "name_unknown", "not found", "404")


def failure(what: str, message: str, registry: str | None) -> InputError:
    """The error for a registry tool's failure ``message``: said in terms of the registry when
    it is about the registry (the same words for oras, cosign and helm)."""
    text = message.lower()
    if registry:
        if any(word in text for word in _UNREACHABLE):
            return RegistryError(
                registry,
                f"the registry is unreachable ({what}: {_last_line(message)})",
                hint="check its address and that it is up; a registry over plain HTTP that is "
                "not on loopback must be named in J2K_PLAIN_HTTP_REGISTRIES",
            )
        if any(word in text for word in _UNAUTHENTICATED):
            return RegistryError(
                registry,
                f"the registry asks for credentials ({what}: {_last_line(message)})",
                hint=f"log in first: docker login {registry} (oras, cosign and helm read the "
                "same credentials)",
            )
        if any(word in text for word in _DENIED):
            return RegistryError(
                registry,
                f"the registry refused access ({what}: {_last_line(message)})",
                hint="check that your account may push to (or pull from) that repository",
            )
        if any(word in text for word in _MISSING):
            return RegistryError(
                registry,
                f"no such artifact in the registry ({what}: {_last_line(message)})",
                hint="check the repository, tag or digest",
            )
    return InputError(f"{what} failed: {message}", where=registry)


def _last_line(message: str) -> str:
    lines = [line.strip() for line in message.splitlines() if line.strip()]
    return lines[-1].removeprefix("Error: ") if lines else "no message"
