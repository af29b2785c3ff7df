"""A CycloneDX SBOM per step image: what is in it, for scanners and auditors who get the image.

The Python distributions come from the step's lock (the exact wheels the image installed, with
their sha256), not from scanning the image: the lock is what the build installed, byte for byte.
The OS packages are the base image's, read from its dpkg database (``/var/lib/dpkg/status``) in
a container that is created and never started, so nothing of the base image runs. Steps that
share one image (the same content hash) share one SBOM. The BOM is built with the CycloneDX
project's own library (``cyclonedx-python-lib``) and is deterministic (no timestamp, a serial
number derived from the image): a rebuild of the same image gives the same bytes, so a push
attaches it once (``attach_all``).
"""

from __future__ import annotations

import contextlib
import dataclasses
import hashlib
import io
import json
import tarfile
import tempfile
import uuid
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import docker
import docker.errors
from cyclonedx.model import HashAlgorithm, HashType
from cyclonedx.model.bom import Bom
from cyclonedx.model.component import Component, ComponentType
from cyclonedx.output import make_outputter
from cyclonedx.schema import OutputFormat, SchemaVersion
from packageurl import PackageURL
from packaging.utils import canonicalize_name

from jup2kub.build.deps import Locks, cache_root
from jup2kub.build.images import BuildResult, BuiltImage
from jup2kub.errors import ImageBuildError
from jup2kub.files import atomic_write_text
from jup2kub.oci import references, tools
from jup2kub.oci.references import Reference
from jup2kub.programs import find
from jup2kub.version import __version__

#: 1.6, not the library's newest (1.7): what scanners and Dependency-Track read today
SCHEMA_VERSION = SchemaVersion.V1_6
#: the OCI artifactType (and layer media type) of a CycloneDX JSON SBOM, as CycloneDX registers it
MEDIA_TYPE = "application/vnd.cyclonedx+json"
#: where ``build`` writes each step's SBOM, relative to OUT
SBOM_DIR = "sbom"
#: the referrer's annotation with the SBOM's sha256: a later push of the same image finds the
#: SBOM attached already and attaches no second copy (ORAS stamps each referrer with its time)
SHA256_ANNOTATION = "io.jup2kub.sbom.sha256"
#: the file name the referrer's layer carries (``org.opencontainers.image.title``)
_FILE_NAME = "sbom.cdx.json"
_SERIALS = uuid.UUID("6a326b63-0000-4000-8000-0000000000c1")  # jup2kub's uuid5 namespace
_DPKG_STATUS = "/var/lib/dpkg/status"
_OS_RELEASE = ("/usr/lib/os-release", "/etc/os-release")


@dataclass(frozen=True)
class DebPackage:
    """An installed Debian package (a ``dpkg-query -W`` row)."""

    name: str
    version: str
    architecture: str


@dataclass(frozen=True)
class OsPackages:
    """The base image's distribution (os-release ``ID``, ``VERSION_ID``) and its packages."""

    distro: str = ""
    distro_version: str = ""
    packages: tuple[DebPackage, ...] = ()


@dataclass
class Sbom:
    """One image's SBOM: its image (``REPOSITORY:TAG``, with the digest once pushed), the JSON
    bytes, the steps whose image it is and, after ``attach``, the referrer it was attached as
    (``REPOSITORY@sha256:...``)."""

    repository: str
    tag: str
    digest: str | None
    data: bytes
    steps: list[str] = field(default_factory=list)
    attached: str = ""

    @property
    def sha256(self) -> str:
        return hashlib.sha256(self.data).hexdigest()


# --------------------------------------------------------------------------- OS packages


def parse_dpkg_status(text: str) -> list[DebPackage]:
    """The installed packages of a dpkg status file (deb822 stanzas; only Package, Version,
    Architecture and Status matter here, so a few lines rather than a dependency)."""
    found = []
    for stanza in text.split("\n\n"):
        fields: dict[str, str] = {}
        for line in stanza.splitlines():
            if line[:1] not in (" ", "\t") and ":" in line:
                key, _, value = line.partition(":")
                fields[key.strip().lower()] = value.strip()
        status = fields.get("status", "").split()
        if fields.get("package") and len(status) == 3 and status[2] == "installed":
            found.append(
                DebPackage(
                    fields["package"], fields.get("version", ""), fields.get("architecture", "")
                )
            )
    return sorted(found, key=lambda p: (p.name, p.architecture))


def _os_release(text: str) -> dict[str, str]:
    out = {}
    for line in text.splitlines():
        key, sep, value = line.partition("=")
        if sep:
            out[key.strip()] = value.strip().strip("\"'")
    return out


def _read_file(container: Any, path: str) -> str | None:
    """A regular file of a (stopped) container, or None when it has none there."""
    try:
        stream, _stat = container.get_archive(path)
    except docker.errors.NotFound:
        return None
    with tarfile.open(fileobj=io.BytesIO(b"".join(stream))) as tar:
        member = next((m for m in tar.getmembers() if m.isfile()), None)
        handle = tar.extractfile(member) if member is not None else None
        return handle.read().decode("utf-8", "replace") if handle is not None else None


def cached_os_packages(client: docker.DockerClient, image_id: str) -> OsPackages:
    """``os_packages`` of the image with id ``image_id`` (``sha256:...``), kept in the build
    cache: an image id names its content, so its packages never change (reading them costs
    a container's create and removal, ~0.2-0.3 s, on every build otherwise)."""
    path = cache_root() / "os-packages" / f"{image_id.replace(':', '-')}.json"
    with contextlib.suppress(OSError, ValueError, KeyError, TypeError):
        data = json.loads(path.read_text(encoding="utf-8"))
        packages = tuple(DebPackage(**p) for p in data["packages"])
        return OsPackages(data["distro"], data["distro_version"], packages)
    found = os_packages(client, image_id)
    with contextlib.suppress(OSError):
        atomic_write_text(path, json.dumps(dataclasses.asdict(found), sort_keys=True))
    return found


def os_packages(client: docker.DockerClient, image: str) -> OsPackages:
    """The Debian packages of ``image`` (none for an image without dpkg), read from a created,
    never started container: no code of the image runs."""
    try:
        container = client.containers.create(image, command=["true"], network_mode="none")
    except docker.errors.APIError as exc:
        raise ImageBuildError(
            f"cannot read the OS packages of {image}: {exc.explanation or exc}", where=image
        ) from exc
    try:
        status = _read_file(container, _DPKG_STATUS)
        release = next(filter(None, (_read_file(container, p) for p in _OS_RELEASE)), "")
    finally:
        container.remove(force=True)
    info = _os_release(release)
    return OsPackages(
        info.get("ID", ""),
        info.get("VERSION_ID", ""),
        tuple(parse_dpkg_status(status)) if status else (),
    )


# --------------------------------------------------------------------------- the BOM


def _python_component(name: str, version: str, sha256: str) -> Component:
    purl = PackageURL(type="pypi", name=canonicalize_name(name), version=version)
    return Component(
        type=ComponentType.LIBRARY,
        name=name,
        version=version,
        purl=purl,
        bom_ref=purl.to_string(),
        hashes=[HashType(alg=HashAlgorithm.SHA_256, content=sha256)],
    )


def _deb_component(pkg: DebPackage, system: OsPackages) -> Component:
    qualifiers = {"arch": pkg.architecture}
    if system.distro_version:
        qualifiers["distro"] = f"{system.distro}-{system.distro_version}"
    purl = PackageURL(
        type="deb",
        namespace=system.distro or None,
        name=pkg.name,
        version=pkg.version,
        qualifiers=qualifiers,
    )
    return Component(
        type=ComponentType.LIBRARY,
        name=pkg.name,
        version=pkg.version,
        purl=purl,
        bom_ref=purl.to_string(),
    )


def _image_component(repository: str, tag: str, digest: str | None) -> Component:
    """The step image: with its registry digest as a ``pkg:oci`` purl once it is pushed."""
    purl = None
    if digest:
        purl = PackageURL(
            type="oci",
            name=repository.rsplit("/", 1)[-1].lower(),
            version=digest,
            qualifiers={"repository_url": repository, "tag": tag},
        )
    return Component(
        type=ComponentType.CONTAINER,
        name=repository,
        version=tag,
        purl=purl,
        bom_ref=f"image:{repository}:{tag}",
    )


def image_bom(
    repository: str,
    tag: str,
    digest: str | None,
    python: Mapping[str, tuple[str, str]],
    system: OsPackages,
) -> Bom:
    """The BOM of one image: ``python`` is name -> (version, wheel sha256) of its lock."""
    root = _image_component(repository, tag, digest)
    bom = Bom(serial_number=uuid.uuid5(_SERIALS, f"{repository}:{tag}@{digest or ''}"))
    bom.metadata.timestamp = None  # type: ignore[assignment]  # deterministic bytes
    bom.metadata.component = root
    bom.metadata.tools.components.add(
        Component(type=ComponentType.APPLICATION, name="jup2kub", version=__version__)
    )
    parts = [_python_component(n, v, h) for n, (v, h) in sorted(python.items())]
    parts += [_deb_component(p, system) for p in system.packages]
    for part in parts:
        bom.components.add(part)
    bom.register_dependency(root, parts)
    return bom


def to_json(bom: Bom) -> bytes:
    """The BOM as CycloneDX JSON (``SCHEMA_VERSION``), keys sorted: the same BOM, the same
    bytes."""
    text = make_outputter(bom, OutputFormat.JSON, SCHEMA_VERSION).output_as_string()
    return (json.dumps(json.loads(text), indent=2, sort_keys=True) + "\n").encode()


def step_sboms(built: Iterable[BuiltImage], locks: Locks, system: OsPackages) -> dict[str, Sbom]:
    """step -> its image's SBOM; steps sharing an image (repository and tag) share one
    ``Sbom`` object, so it is made and attached once."""
    by_image: dict[str, Sbom] = {}
    out: dict[str, Sbom] = {}
    for img in built:
        if img.reference not in by_image:
            python = {
                n: (v, locks.wheels[n].sha256) for n, v in locks.step_packages[img.step].items()
            }
            bom = image_bom(img.repository, img.tag, img.digest, python, system)
            by_image[img.reference] = Sbom(img.repository, img.tag, img.digest, to_json(bom))
        by_image[img.reference].steps.append(img.step)
        out[img.step] = by_image[img.reference]
    return out


def for_build(
    client: docker.DockerClient,
    result: BuildResult,
    locks: Locks,
    *,
    attach: bool = False,
    log: Callable[[str], None] | None = None,
) -> dict[str, Sbom]:
    """The SBOMs of a build's step images (after their push, so they name the digests); with
    ``attach``, attached to the pushed images, each image's referrer recorded in ``result``."""
    system = cached_os_packages(client, result.base_image_id)
    sboms = step_sboms(result.images.values(), locks, system)
    if attach:
        attach_all(sboms, log or (lambda _msg: None))
        for step, bom in sboms.items():
            result.images[step].sbom = bom.attached
    return sboms


def sbom_files(sboms: Mapping[str, Sbom]) -> dict[str, bytes]:
    """``sbom/<step>.cdx.json`` for every step, relative to OUT (the build's audit files)."""
    return {f"{SBOM_DIR}/{step}.cdx.json": s.data for step, s in sorted(sboms.items())}


# --------------------------------------------------------------------------- attach


def check_attach() -> None:
    """A UsageError now, before any image is pushed, when ORAS (which attaches the SBOMs) is
    missing: a push that cannot attach them would leave images without their SBOM."""
    find(tools.ORAS)


def attach_all(sboms: Mapping[str, Sbom], log: Callable[[str], None]) -> None:
    """Attach each pushed image's SBOM to the image by digest, as an OCI 1.1 referrer
    (artifactType ``MEDIA_TYPE``), with ORAS; sets ``Sbom.attached``. Once per image: steps
    sharing an image share its ``Sbom``, and the SBOM an earlier push attached (same sha256) is
    found (``oras discover``) and not attached again."""
    for bom in {id(b): b for b in sboms.values()}.values():
        if not bom.digest:
            continue
        subject = references.parse(f"{bom.repository}@{bom.digest}")
        found = _attached(subject, bom.sha256)
        bom.attached = found or _attach(subject, bom)
        how = "already attached as" if found else "attached as"
        log(f"step {', '.join(bom.steps)}: SBOM {how} {bom.attached}")


def _oras(subject: Reference, args: list[str], cwd: Path | None = None) -> str:
    plain = ["--plain-http"] if subject.plain_http else []
    return tools.run(tools.ORAS, [args[0], *plain, *args[1:]], registry=subject.registry, cwd=cwd)


def _attached(subject: Reference, sha256: str) -> str:
    """The referrer of ``subject`` that is this SBOM, or ""."""
    out = _oras(
        subject, ["discover", "--format", "json", "--artifact-type", MEDIA_TYPE, str(subject)]
    )
    for referrer in json.loads(out).get("referrers") or []:
        if (referrer.get("annotations") or {}).get(SHA256_ANNOTATION) == sha256:
            return str(subject.by_digest(str(referrer["digest"])))
    return ""


def _attach(subject: Reference, bom: Sbom) -> str:
    with tempfile.TemporaryDirectory(prefix="jup2kub-sbom-") as tmp:
        (Path(tmp) / _FILE_NAME).write_bytes(bom.data)
        out = _oras(
            subject,
            [
                "attach",
                "--format",
                "json",
                "--artifact-type",
                MEDIA_TYPE,
                "--annotation",
                f"{SHA256_ANNOTATION}={bom.sha256}",
                str(subject),
                f"{_FILE_NAME}:{MEDIA_TYPE}",
            ],
            cwd=Path(tmp),
        )
    return str(subject.by_digest(str(json.loads(out)["digest"])))
