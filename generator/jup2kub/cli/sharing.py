"""Sharing a built chart: ``keygen`` (a key pair to sign with), ``sign`` (its step images, its
package's provenance, the chart in a registry) and ``verify`` (all of those)."""

from __future__ import annotations

import os
import sys
from pathlib import Path

import click

from jup2kub import api
from jup2kub.cli.options import key_options
from jup2kub.cli.reporting import reports_errors
from jup2kub.errors import UsageError

_chart_dir = click.argument(
    "chart_dir", metavar="OUT", type=click.Path(file_okay=False, exists=True, path_type=Path)
)


def _password(*, new: bool) -> str:
    """The key password: $COSIGN_PASSWORD, else typed on a terminal (twice for a new key).
    Never an option: the command line is visible to every local user."""
    from_env = os.environ.get(api.SIGNING_PASSWORD_ENV)
    if from_env is not None:
        return from_env
    if not sys.stdin.isatty():
        raise UsageError(
            "no key password: not on a terminal to ask for one",
            hint=f"set {api.SIGNING_PASSWORD_ENV} in the environment",
        )
    text: str = click.prompt(
        "Password for the new keys" if new else "Key password",
        hide_input=True,
        confirmation_prompt=new,
        err=True,
    )
    return text


@click.command()
@click.argument("prefix", default="jup2kub", type=click.Path(dir_okay=False, path_type=Path))
@reports_errors
def keygen(prefix: Path) -> None:
    """Make a key pair to sign charts and images with: PREFIX.key and PREFIX.pub (cosign),
    PREFIX.secring.gpg and PREFIX.pubring.gpg (OpenPGP, for Helm's provenance files), all
    protected by one password ($COSIGN_PASSWORD, else asked for). Never overwrites."""
    files = api.keygen(prefix, _password(new=True))
    click.echo(f"private keys (keep them secret): {files.key}, {files.secring}")
    click.echo(f"public keys (give them to who verifies): {files.pub}, {files.pubring}")
    click.echo(f"sign with: jup2kub sign OUT --key {files.key}")


@click.command()
@_chart_dir
@key_options(public=False)
@click.option(
    "--destination",
    "-d",
    type=click.Path(file_okay=False, path_type=Path),
    default=None,
    help="Where the signed .tgz, its .prov and index.yaml go [default: where `package` put "
    "them, else the current directory].",
)
@click.option(
    "--oci",
    metavar="oci://HOST/PATH",
    default=None,
    help="Push the signed chart there and sign it [default: where `package --oci` pushed it].",
)
@reports_errors
def sign(
    chart_dir: Path, key: Path, keyring: Path | None, destination: Path | None, oci: str | None
) -> None:
    """Sign the step images of OUT by digest (cosign, no transparency log: works offline),
    package OUT with Helm's provenance file, and push and sign the chart in a registry."""
    signed = api.sign(
        chart_dir,
        key,
        _password(new=False),
        keyring=keyring,
        destination=destination,
        oci=oci,
        log=click.echo,
    )
    click.echo(
        f"signed {len(signed.images)} image(s) and {signed.tarball.name}"
        + (f", pushed as oci://{signed.chart}" if signed.chart else "")
    )


@click.command()
@_chart_dir
@key_options(public=True)
@reports_errors
def verify(chart_dir: Path, key: Path, keyring: Path | None) -> None:
    """Check the signatures of OUT's step images, of its packaged chart (.prov) and of the
    chart in the registry; exit 2 naming every one that does not hold."""
    api.verify(chart_dir, key, keyring=keyring, log=click.echo)
    click.echo("all signatures hold")
