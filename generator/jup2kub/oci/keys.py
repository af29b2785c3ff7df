"""Signing keys: a cosign key pair (images and charts in a registry) and an OpenPGP key pair
(Helm's provenance files, which only OpenPGP signs), both protected by one password.

The password reaches the tools through their environment (cosign reads $COSIGN_PASSWORD) or
their stdin (gpg's ``--passphrase-fd 0``, helm's ``--passphrase-file -``), never their command
line: any local user can read another process's argv in /proc.

OpenPGP keys are made by Debian's gpg in a private GNUPGHOME that is deleted afterwards, so the
user's own keyrings are neither read nor changed; helm reads the exported binary keyrings.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import subprocess
import tempfile
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path

from jup2kub.errors import InputError, UsageError
from jup2kub.files import writable
from jup2kub.oci import tools
from jup2kub.programs import Program, find

#: cosign's own variable for its key's password; Jup2Kub reads the same one for both key pairs
PASSWORD_ENV = "COSIGN_PASSWORD"

GPG = Program(
    "gpg",
    "J2K_GPG",
    "it (apt-get install gnupg, or your package manager)",
    tools.SHARING_NEEDS,
)

_PGP_KEY = ("rsa3072", "sign", "never")  # helm's OpenPGP library reads RSA, not EdDSA keys
_WRONG_COSIGN_PASSWORD = "decryption failed"


@dataclass(frozen=True)
class KeyFiles:
    """The four files of ``jup2kub keygen PREFIX``."""

    key: Path  # cosign private key (encrypted)
    pub: Path  # cosign public key
    secring: Path  # OpenPGP secret key (binary, passphrase-protected), for helm package --sign
    pubring: Path  # OpenPGP public keyring, for helm verify

    @classmethod
    def from_prefix(cls, prefix: Path) -> KeyFiles:
        base = str(prefix)
        return cls(
            Path(base + ".key"),
            Path(base + ".pub"),
            Path(base + ".secring.gpg"),
            Path(base + ".pubring.gpg"),
        )

    def all(self) -> tuple[Path, ...]:
        return (self.key, self.pub, self.secring, self.pubring)


@dataclass(frozen=True)
class ProvenanceKey:
    """The OpenPGP key ``helm package --sign`` signs with: the user id in ``keyring`` (a binary
    secret keyring) and its passphrase (handed to helm on stdin)."""

    keyring: Path
    uid: str
    passphrase: str = field(default="", repr=False)  # never in a traceback or a log


def beside(key: Path, suffix: str) -> Path:
    """The file of the same key pair as ``key`` (``PREFIX.key``/``PREFIX.pub``) with another
    suffix: where ``keygen`` put the OpenPGP keyrings."""
    return key.with_name(key.name.rsplit(".", 1)[0] + suffix)


def generate(prefix: Path, password: str) -> KeyFiles:
    """Write both key pairs under ``prefix``; no file is overwritten, and none is left behind
    when any step fails (they are made in a scratch directory, then linked into place)."""
    files = KeyFiles.from_prefix(prefix)
    taken = [str(f) for f in files.all() if f.exists() or f.is_symlink()]
    if taken:
        raise UsageError(
            f"refusing to overwrite {', '.join(taken)}",
            hint="choose another PREFIX, or move the existing keys away",
        )
    if not password:
        raise UsageError("the key password is empty", hint=f"set {PASSWORD_ENV} or type one")
    with writable("the keys", files.key.parent, "choose a PREFIX in a directory you can write"):
        _generate_in(files, password)
    return files


def _generate_in(files: KeyFiles, password: str) -> None:
    directory = files.key.parent
    directory.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix=".jup2kub-keygen-", dir=directory) as scratch:
        made = KeyFiles.from_prefix(Path(scratch) / "key")
        tools.run(
            tools.COSIGN,
            ["generate-key-pair", "--output-key-prefix", str(Path(scratch) / "key")],
            env={PASSWORD_ENV: password},
        )
        secret, public = _openpgp_pair(files.key.stem, password)
        _write(made.secring, secret, 0o600)
        _write(made.pubring, public, 0o644)
        made.key.chmod(0o600)
        _link_all(made, files)


def _write(path: Path, data: bytes, mode: int) -> None:
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, mode)
    with os.fdopen(fd, "wb") as f:
        f.write(data)


def _link_all(made: KeyFiles, files: KeyFiles) -> None:
    """Hard-link each made file to its final name (fails rather than overwrite one created
    meanwhile); on a failure the ones already linked are removed again."""
    linked: list[Path] = []
    try:
        for source, target in zip(made.all(), files.all(), strict=True):
            os.link(source, target)
            linked.append(target)
    except FileExistsError as exc:
        for path in linked:
            path.unlink()
        raise UsageError(f"refusing to overwrite {exc.filename}") from exc


def _openpgp_pair(name: str, password: str) -> tuple[bytes, bytes]:
    """A new OpenPGP signing key named ``name``: (secret key, public keyring), binary."""
    uid = f"{name} (jup2kub chart signing)"
    with private_gnupg_home() as home:
        secret_in = (password + "\n").encode()
        _gpg(home, ["--passphrase-fd", "0", "--quick-generate-key", uid, *_PGP_KEY], secret_in)
        secret = _gpg(home, ["--passphrase-fd", "0", "--export-secret-keys", uid], secret_in)
        public = _gpg(home, ["--export", uid])
    if not secret or not public:
        raise InputError("gpg exported no key", hint="check that gpg works: gpg --version")
    return secret, public


@contextlib.contextmanager
def private_gnupg_home() -> Iterator[Path]:
    """A GNUPGHOME of our own (0700), its gpg-agent stopped and the directory deleted after."""
    with tempfile.TemporaryDirectory(prefix="j2k-gpg-") as home:
        os.chmod(home, 0o700)
        try:
            yield Path(home)
        finally:  # gpg started an agent for this home: stop it before the home goes
            gpgconf = shutil.which("gpgconf")
            if gpgconf:
                subprocess.run(
                    [gpgconf, "--homedir", home, "--kill", "gpg-agent"],
                    capture_output=True,
                    check=False,
                    env=_gpg_env(Path(home)),
                )


def _gpg_env(home: Path) -> Mapping[str, str]:
    return {**os.environ, "GNUPGHOME": str(home)}


def _gpg(home: Path, args: list[str], stdin: bytes | None = None) -> bytes:
    command = [find(GPG), "--batch", "--homedir", str(home), "--pinentry-mode", "loopback"]
    result = subprocess.run(
        [*command, *args],
        input=stdin if stdin is not None else b"",
        capture_output=True,
        check=False,
        env=_gpg_env(home),
        timeout=300,
    )
    if result.returncode != 0:
        message = result.stderr.decode(errors="replace").strip()
        raise InputError(f"gpg failed: {message}", hint="check that gpg works: gpg --version")
    return result.stdout


def keyring_uid(keyring: Path) -> str:
    """The user id of the first key in an OpenPGP keyring file (what helm's ``--key`` names),
    read without importing it anywhere."""
    if not keyring.is_file():
        raise UsageError(
            f"no OpenPGP keyring {keyring}",
            hint="make one with `jup2kub keygen`, or name yours with --keyring",
        )
    with private_gnupg_home() as home:
        listing = _gpg(home, ["--with-colons", "--show-keys", str(keyring)]).decode()
    for line in listing.splitlines():
        fields = line.split(":")
        if fields[0] == "uid" and len(fields) > 9 and fields[9]:
            return fields[9].replace("\\x3a", ":")
    raise UsageError(f"{keyring} holds no OpenPGP key with a user id", where=str(keyring))


def check_cosign_password(key: Path, password: str) -> None:
    """Decrypt the cosign key once (``cosign public-key``): a wrong password is refused before
    anything is signed or pushed."""
    if not key.is_file():
        raise UsageError(f"no cosign key {key}", hint="make one with `jup2kub keygen`")
    try:
        tools.run(tools.COSIGN, ["public-key", "--key", str(key)], env={PASSWORD_ENV: password})
    except InputError as exc:
        if _WRONG_COSIGN_PASSWORD in exc.what:
            raise wrong_password(key) from None
        raise UsageError(f"{key} is not a usable cosign private key: {exc.what}") from None


def wrong_password(key: Path) -> UsageError:
    return UsageError(
        f"wrong password for {key}",
        hint=f"set {PASSWORD_ENV} to the password given to `jup2kub keygen` (or type it)",
    )
