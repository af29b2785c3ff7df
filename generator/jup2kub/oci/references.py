"""OCI references, parsed and checked once: ``HOST/REPOSITORY[:TAG][@DIGEST]`` for images and
artifacts, ``oci://HOST/PATH`` for Helm charts; and which registries speak plain HTTP.

The grammar is the OCI distribution spec's (the one Docker, ORAS, cosign and helm share), so a
reference refused here would have been refused by them too, only later and less clearly.
"""

from __future__ import annotations

import ipaddress
import os
import re
from dataclasses import dataclass

from jup2kub.errors import UsageError

#: registries (``host[:port]``, comma-separated) reached over plain HTTP besides loopback ones
PLAIN_HTTP_ENV = "J2K_PLAIN_HTTP_REGISTRIES"

OCI_SCHEME = "oci://"

_COMPONENT = r"[a-z0-9]+(?:(?:[._]|__|-+)[a-z0-9]+)*"
_REPOSITORY = re.compile(rf"{_COMPONENT}(?:/{_COMPONENT})*")
_HOST = re.compile(r"(?:[A-Za-z0-9.-]+|\[[0-9A-Fa-f:]+\])(?::[0-9]+)?")
_TAG = re.compile(r"[A-Za-z0-9_][A-Za-z0-9_.-]{0,127}")
_DIGEST = re.compile(r"sha256:[0-9a-f]{64}")


@dataclass(frozen=True)
class Reference:
    """An artifact in a registry: ``registry`` (host[:port]), ``repository``, and a tag and/or
    a digest."""

    registry: str
    repository: str
    tag: str | None = None
    digest: str | None = None

    @property
    def name(self) -> str:
        """``HOST/REPOSITORY``."""
        return f"{self.registry}/{self.repository}"

    def __str__(self) -> str:
        text = self.name
        if self.tag:
            text += f":{self.tag}"
        if self.digest:
            text += f"@{self.digest}"
        return text

    def by_digest(self, digest: str | None = None) -> Reference:
        """The same artifact pinned by ``digest`` (its own when not given), without a tag."""
        pinned = digest or self.digest
        if not pinned:
            raise ValueError(f"{self} has no digest")
        return Reference(self.registry, self.repository, None, pinned)

    @property
    def plain_http(self) -> bool:
        return plain_http(self.registry)


def parse(text: str, *, what: str = "image reference") -> Reference:
    """``HOST/REPO[:TAG][@DIGEST]``; a UsageError names what is wrong with it."""
    rest, _, digest = text.partition("@")
    host, slash, path = rest.partition("/")
    tag = None
    if ":" in path.rsplit("/", 1)[-1]:
        path, _, tag = path.rpartition(":")
    problem = _problem(host, slash, path, tag, digest or None)
    if problem:
        raise UsageError(
            f"{text!r} is not a valid {what}: {problem}",
            hint="write it as HOST[:PORT]/REPOSITORY[:TAG][@sha256:DIGEST], "
            "e.g. registry.example.org/team/step:1.0",
        )
    return Reference(host, path, tag, digest or None)


def _problem(host: str, slash: str, path: str, tag: str | None, digest: str | None) -> str:
    if not slash or not host or not path:
        return "it names no registry host and repository"
    if not _HOST.fullmatch(host) or ("." not in host and ":" not in host and host != "localhost"):
        return f"{host!r} is not a registry host (it needs a dot, a port, or to be localhost)"
    if not _REPOSITORY.fullmatch(path):
        return f"{path!r} is not a repository (lower-case letters, digits, . _ - and /)"
    if tag is not None and not _TAG.fullmatch(tag):
        return f"{tag!r} is not a tag"
    if digest is not None and not _DIGEST.fullmatch(digest):
        return f"{digest!r} is not a sha256 digest"
    return ""


def parse_oci_url(text: str, *, what: str = "chart location") -> Reference:
    """``oci://HOST/PATH[:TAG][@DIGEST]`` (Helm's form for charts in a registry)."""
    if not text.startswith(OCI_SCHEME):
        raise UsageError(
            f"{text!r} is not an oci:// URL",
            hint="write it as oci://HOST[:PORT]/PATH, e.g. oci://registry.example.org/charts",
        )
    return parse(text.removeprefix(OCI_SCHEME), what=what)


def plain_http(registry: str) -> bool:
    """Whether ``registry`` is reached over plain HTTP: loopback and ``localhost`` (as Docker,
    containerd and cosign treat them), and the hosts named in $J2K_PLAIN_HTTP_REGISTRIES."""
    host = registry.rsplit(":", 1)[0] if not registry.endswith("]") else registry
    host = host.strip("[]")
    if host == "localhost":
        return True
    try:
        if ipaddress.ip_address(host).is_loopback:
            return True
    except ValueError:
        pass
    named = {h.strip() for h in os.environ.get(PLAIN_HTTP_ENV, "").split(",") if h.strip()}
    return registry in named
