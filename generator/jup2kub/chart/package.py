"""Packaging a built chart as a ``.tgz`` and indexing it as a chart repository (helm does both),
optionally with Helm's provenance file (``.tgz.prov``: the chart's hash, OpenPGP-signed)."""

from __future__ import annotations

import os
import tempfile
from pathlib import Path
from typing import Any

import yaml

from jup2kub.errors import InputError, UsageError
from jup2kub.helm import run_helm
from jup2kub.oci.keys import ProvenanceKey, wrong_password

#: helm's words when the OpenPGP key's passphrase is wrong (its openpgp library's)
_WRONG_PASSPHRASE = ("private key checksum failure", "decryption failed", "incorrect key")


def package_chart(
    chart_dir: Path,
    destination: Path | None = None,
    repo_index_url: str | None = None,
    *,
    helm: str | None = None,
    sign: ProvenanceKey | None = None,
) -> Path:
    """Package the chart into DESTINATION (default: cwd) and (re)index it as a chart repository.

    Writes ``<name>-<version>.tgz`` with ``helm package`` and ``index.yaml`` with ``helm repo
    index`` (``--url`` when given, for a repository served from that URL). Returns the .tgz.
    With ``sign``, helm also writes ``<name>-<version>.tgz.prov`` beside it.
    """
    meta = _chart_meta(chart_dir)
    dest = (destination or Path.cwd()).absolute()
    dest.mkdir(parents=True, exist_ok=True)
    name = f"{meta['name']}-{meta['version']}.tgz"
    with tempfile.TemporaryDirectory(prefix=".jup2kub-package-", dir=dest) as scratch:
        _helm_package(chart_dir, Path(scratch), helm, sign)
        made = Path(scratch) / name
        if not made.is_file():
            raise RuntimeError(f"helm package did not write {made}")
        # into place only once complete: a failed signing leaves the previous package alone
        tgz = dest / name
        prov = Path(str(tgz) + ".prov")
        if sign is not None:
            os.replace(str(made) + ".prov", prov)
        else:
            prov.unlink(missing_ok=True)  # it would name another tarball's hash
        os.replace(made, tgz)
    index_args = ["repo", "index", str(dest)]
    if repo_index_url:
        index_args += ["--url", repo_index_url]
    run_helm(index_args, helm=helm, where=str(dest))
    return tgz


def _helm_package(
    chart_dir: Path, dest: Path, helm: str | None, sign: ProvenanceKey | None
) -> None:
    args = ["package", str(chart_dir), "--destination", str(dest)]
    if sign is not None:
        args += ["--sign", "--key", sign.uid, "--keyring", str(sign.keyring)]
        args += ["--passphrase-file", "-"]
    try:
        run_helm(
            args,
            helm=helm,
            where=str(chart_dir),
            stdin=sign.passphrase + "\n" if sign is not None else None,
        )
    except InputError as exc:
        if sign is not None and any(w in exc.what for w in _WRONG_PASSPHRASE):
            raise wrong_password(sign.keyring) from None
        raise


def _chart_meta(chart_dir: Path) -> dict[str, Any]:
    try:
        meta = yaml.safe_load((chart_dir / "Chart.yaml").read_text())
    except (OSError, yaml.YAMLError) as exc:
        raise UsageError(
            "not a Helm chart directory (no readable Chart.yaml)",
            where=str(chart_dir),
            hint="pass the OUT directory of `jup2kub build`",
        ) from exc
    if not isinstance(meta, dict) or "name" not in meta or "version" not in meta:
        raise UsageError("Chart.yaml lacks name or version", where=str(chart_dir / "Chart.yaml"))
    return meta
