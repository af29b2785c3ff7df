"""Signing and verifying what a chart ships: its step images and the chart itself in a
registry (cosign's signature format, made with a key and no transparency log, so that it works
air-gapped), and the chart tarball (Helm's provenance file, checked by ``helm verify``).

Images are signed by digest, the reference the chart's templates deploy (``image.registry`` /
``steps.<name>.image.repository`` @ ``digest``): a tag can be moved, a digest cannot. Verifying
checks everything and reports every failure at once, so one run says all that is wrong.
"""

from __future__ import annotations

import json
import subprocess
import tempfile
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from jup2kub.errors import InputError, RegistryError, SignatureError, UsageError
from jup2kub.helm import find_helm
from jup2kub.oci import published, tools
from jup2kub.oci.chart_files import (
    StepImage,
    chart_values,
    require_digests,
    step_images,
    tarball_values,
)
from jup2kub.oci.charts import push_chart
from jup2kub.oci.keys import (
    PASSWORD_ENV,
    ProvenanceKey,
    beside,
    check_cosign_password,
    keyring_uid,
)
from jup2kub.oci.references import Reference, parse_oci_url

Log = Callable[[str], None]

_NOT_SIGNED = "no signatures found"
_OTHER_KEY = "no matching signatures"
_MISSING_ARTIFACT = "no such artifact"
_TRUSTED_ROOT_TYPE = "application/vnd.dev.sigstore.trustedroot+json;version=0.1"


@dataclass
class Failures:
    """What did not verify: one line per artifact."""

    lines: list[str] = field(default_factory=list)

    def add(self, subject: object, why: str) -> None:
        self.lines.append(f"{subject}: {why}")

    def raise_any(self, where: str) -> None:
        if self.lines:
            count = len(self.lines)
            raise SignatureError(
                where,
                f"{count} signature check{'s' if count > 1 else ''} failed:\n  "
                + "\n  ".join(self.lines),
                hint="sign again with the key you verify with (jup2kub sign), or find out who "
                "changed what is named above",
            )


# -- cosign ---------------------------------------------------------------------------------


def _http(ref: Reference) -> list[str]:
    return ["--allow-http-registry"] if ref.plain_http else []


def cosign_sign(ref: Reference, key: Path, password: str) -> None:
    """Sign ``ref`` (by digest) with the cosign key; offline: no transparency log upload."""
    tools.run(
        tools.COSIGN,
        ["sign", "--key", str(key), "--tlog-upload=false", "--yes", *_http(ref), str(ref)],
        registry=ref.registry,
        env={PASSWORD_ENV: password},
    )


def cosign_verify(ref: Reference, pub: Path) -> str | None:
    """Why ``ref``'s cosign signature does not hold for ``pub``, or None when it does. A
    registry that cannot be reached or asks for credentials raises RegistryError."""
    with tempfile.TemporaryDirectory(prefix="jup2kub-cosign-") as scratch:
        # an empty trusted root: a key and no transparency log need none of Sigstore's public
        # roots, and without it cosign asks Sigstore's TUF mirror for them on every call
        # (where DNS hangs rather than fails, air-gapped, each verify waits for its timeout)
        root = Path(scratch) / "trusted_root.json"
        root.write_text(json.dumps({"mediaType": _TRUSTED_ROOT_TYPE}))
        args = ["verify", "--key", str(pub), "--insecure-ignore-tlog=true"]
        args += ["--trusted-root", str(root), *_http(ref), str(ref)]
        return _verify_outcome(args, ref, pub)


def _verify_outcome(args: list[str], ref: Reference, pub: Path) -> str | None:
    try:
        tools.run(tools.COSIGN, args, registry=ref.registry)
    except RegistryError as exc:
        if exc.what.startswith(_MISSING_ARTIFACT):
            return f"not in the registry ({exc.what})"
        raise
    except InputError as exc:
        if _NOT_SIGNED in exc.what:
            return "not signed"
        if _OTHER_KEY in exc.what:
            return f"signed, but not with the key {pub}"
        return exc.what
    return None


def sign_images(images: Sequence[StepImage], key: Path, password: str, log: Log) -> None:
    """Sign each image; when one fails, the error says which were signed and which not."""
    for index, image in enumerate(images):
        try:
            cosign_sign(image.ref, key, password)
        except InputError as exc:
            done = ", ".join(str(i.ref) for i in images[:index]) or "none"
            left = ", ".join(str(i.ref) for i in images[index:])
            what = f"{exc.what}\n  images signed: {done}\n  images NOT signed: {left}"
            if isinstance(exc, RegistryError):
                raise RegistryError(exc.registry, what, hint=exc.hint) from None
            raise InputError(what, where=exc.where, hint=exc.hint) from None
        log(f"signed image {image}")


def verify_images(images: Sequence[StepImage], pub: Path, failures: Failures, log: Log) -> None:
    for image in images:
        why = cosign_verify(image.ref, pub)
        if why:
            failures.add(f"image {image}", why)
        else:
            log(f"verified image {image}")


# -- Helm's provenance file -----------------------------------------------------------------


def provenance_problem(tgz: Path, pubring: Path) -> str | None:
    """Why ``helm verify`` refuses the tarball's .prov (missing, another key, the tarball
    changed since it was signed), or None when it holds."""
    prov = Path(str(tgz) + ".prov")
    if not tgz.is_file():
        return "the packaged chart is missing"
    if not prov.is_file():
        return f"no provenance file {prov.name} (not signed: jup2kub sign)"
    if not pubring.is_file():
        return f"no OpenPGP public keyring {pubring} to check {prov.name} with"
    result = subprocess.run(
        [find_helm(), "verify", "--keyring", str(pubring), str(tgz)],
        capture_output=True,
        text=True,
        check=False,
        stdin=subprocess.DEVNULL,
    )
    if result.returncode == 0:
        return None
    message = (result.stderr or result.stdout).strip().removeprefix("Error: ")
    if "sha256 sum does not match" in message or "does not contain a SHA" in message:
        return f"the tarball changed since it was signed ({message})"
    if "unknown entity" in message or "signature made by" in message:
        return f"{prov.name} was signed with another key ({message})"
    return message


# -- a chart pulled from a registry (deploy --verify) ----------------------------------------


def verify_chart(
    tgz: Path,
    chart: Reference,
    key: Path,
    keyring: Path | None = None,
    *,
    log: Log | None = None,
) -> None:
    """Before installing a chart pulled from a registry: its cosign signature (by the digest
    pulled), its .prov when one is beside the tarball (with ``keyring``, else the
    ``PREFIX.pubring.gpg`` beside ``key`` if there is one), and every step image's signature.
    Raises SignatureError naming every failure."""
    say = log or (lambda _line: None)
    failures = Failures()
    if not chart.digest:
        failures.add(f"chart {chart}", "no digest to verify (pull it by digest)")
    else:
        why = cosign_verify(chart.by_digest(), key)
        if why:
            failures.add(f"chart {chart}", why)
        else:
            say(f"verified chart {chart}")
    pubring = keyring or beside(key, ".pubring.gpg")
    if Path(str(tgz) + ".prov").is_file() and (keyring is not None or pubring.is_file()):
        why = provenance_problem(tgz, pubring)
        if why:
            failures.add(f"chart {tgz.name}", why)
        else:
            say(f"verified provenance {tgz.name}.prov")
    images, undigested = step_images(tarball_values(tgz))
    for step in undigested:
        failures.add(f"step {step}", "its image has no digest: nothing to verify")
    verify_images(images, key, failures, say)
    failures.raise_any(str(chart))


# -- a chart directory (jup2kub verify OUT) -------------------------------------------------


def verify_built(chart_dir: Path, pub: Path, pubring: Path, log: Log) -> None:
    """``jup2kub verify OUT``: the step images named by OUT's values, the tarball its record
    names (with its .prov) and, when pushed, the chart in the registry."""
    _require_public_key(pub)
    failures = Failures()
    images, undigested = step_images(chart_values(chart_dir))
    for step in undigested:
        failures.add(f"step {step}", "its image has no digest (never pushed): nothing signed")
    verify_images(images, pub, failures, log)
    record = published.load(chart_dir, unchanged=False)
    if record is None:
        failures.add("chart", "never packaged, so not signed (jup2kub sign OUT --key KEY)")
    else:
        why = provenance_problem(record.tarball, pubring) or _rebuilt_since(chart_dir)
        if why:
            failures.add(f"chart {record.tarball}", why)
        else:
            log(f"verified chart {record.tarball} ({record.tarball.name}.prov)")
        if record.chart is not None:
            why = cosign_verify(record.chart.by_digest(), pub)
            if why:
                failures.add(f"chart oci://{record.chart}", why)
            else:
                log(f"verified chart oci://{record.chart}")
    failures.raise_any(str(chart_dir))


def _require_public_key(pub: Path) -> None:
    """Verifying takes the public half: a private key (or no file) is refused up front rather
    than failing every check the same way."""
    try:
        text = pub.read_text(errors="replace")
    except OSError:
        text = None
    if text is None or "PRIVATE KEY" in text:
        raise UsageError(
            f"{pub} is not a public key" if text is not None else f"no public key {pub}",
            hint="pass the PREFIX.pub of `jup2kub keygen` (PREFIX.key is the private half)",
        )


def _rebuilt_since(chart_dir: Path) -> str | None:
    """Why OUT is not what was signed (its tarball holds, so OUT was rebuilt since), or None:
    what ``package`` refuses as a stale record is a failed check here."""
    try:
        published.load(chart_dir)
    except UsageError as exc:
        return f"OUT is not the chart that was signed: {exc.what}"
    return None


# -- signing a chart directory (jup2kub sign OUT) -------------------------------------------


@dataclass(frozen=True)
class SignRequest:
    """``jup2kub sign``'s inputs; the password is left out of its repr."""

    chart_dir: Path
    key: Path  # cosign private key
    password: str = field(repr=False)
    keyring: Path | None = None  # OpenPGP secret keyring [default: PREFIX.secring.gpg]
    destination: Path | None = None  # for the .tgz [default: where it was last packaged]
    oci: str | None = None  # oci://HOST/PATH [default: where it was last pushed, if it was]


@dataclass(frozen=True)
class Signed:
    """What ``sign`` signed: the step images, the packaged chart (with its .prov) and, when
    pushed, the chart in the registry."""

    images: list[StepImage]
    tarball: Path
    chart: Reference | None


#: the chart package step, given by the caller (packaging is the chart layer's): writes the
#: signed .tgz and its .prov into the directory (None: the current one), returns the .tgz
PackageSigned = Callable[[Path | None, ProvenanceKey], Path]


def sign_built(request: SignRequest, package: PackageSigned, log: Log) -> Signed:
    """Refuse what can be refused before anything is signed (no digests, a wrong password for
    either key), then: package with provenance, sign the images, push and sign the chart. The
    record in OUT follows each step that succeeded; a failure says what was done."""
    chart_dir = request.chart_dir
    where = parse_oci_url(request.oci) if request.oci else None
    images, undigested = step_images(chart_values(chart_dir))
    require_digests(undigested, str(chart_dir))
    before = published.load(chart_dir, unchanged=False)  # where it went: packaged anew here
    if where is None and before is not None and before.chart is not None:
        # pushed as HOST/PATH/NAME:VERSION: push again under HOST/PATH
        where = Reference(before.chart.registry, before.chart.repository.rpartition("/")[0])
    check_cosign_password(request.key, request.password)
    secring = request.keyring or beside(request.key, ".secring.gpg")
    provenance = ProvenanceKey(secring, keyring_uid(secring), request.password)
    dest = request.destination or (before.tarball.parent if before is not None else None)
    tgz = package(dest, provenance)  # a wrong OpenPGP password fails here, nothing written
    published.record(chart_dir, tgz, None)
    log(f"signed chart {tgz} (provenance {tgz.name}.prov)")
    sign_images(images, request.key, request.password, log)
    chart = _push_signed(request, tgz, where) if where is not None else None
    if chart is not None:
        log(f"pushed and signed chart oci://{chart}")
    return Signed(images, tgz, chart)


def _push_signed(request: SignRequest, tgz: Path, where: Reference) -> Reference:
    """Push the signed tarball (helm carries its .prov along as a layer) and sign the digest
    the registry gave it; recorded only when both are done."""
    try:
        chart = push_chart(tgz, where)
        cosign_sign(chart.by_digest(), request.key, request.password)
    except InputError as exc:
        exc.hint = (
            f"the images and {tgz.name} are signed, the chart in the registry is not: once the "
            f"registry is fixed, run again with --oci oci://{where.name}"
        )
        raise
    published.record(request.chart_dir, tgz, chart)
    return chart
