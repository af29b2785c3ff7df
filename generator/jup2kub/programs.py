"""The external programs Jup2Kub runs (helm, ORAS, cosign, gpg), found one way: the
environment variable naming the binary, else ``PATH``; a missing one is a usage error saying
how to install it."""

from __future__ import annotations

import os
import shutil
from dataclasses import dataclass

from jup2kub.errors import UsageError


@dataclass(frozen=True)
class Program:
    name: str
    variable: str  # the environment variable naming its binary
    install: str  # how to get it, as the hint says it
    needed_for: str = ""  # said after "is not installed", e.g. " (sharing and signing need it)"
    kind: str = ""  # what a binary it must be, when not just ``name`` (e.g. "helm 3")


HELM = Program("helm", "J2K_HELM", "Helm 3 (https://helm.sh/docs/intro/install/)", kind="helm 3")


def find(program: Program) -> str:
    """The program's binary: ``$VARIABLE``, else on PATH."""
    configured = os.environ.get(program.variable)
    if configured:
        if shutil.which(configured):
            return configured
        raise UsageError(
            f"{program.variable} points at {configured!r}, which is not an executable",
            hint=f"unset {program.variable} or point it at a {program.kind or program.name} binary",
        )
    found = shutil.which(program.name)
    if found:
        return found
    raise UsageError(
        f"{program.name} is not installed{program.needed_for}",
        hint=f"install {program.install} or set {program.variable}",
    )
