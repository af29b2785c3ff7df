"""Packaging a built chart as a ``.tgz`` and indexing it as a chart repository (helm does both)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml

from jup2kub.errors import UsageError
from jup2kub.helm import run_helm


def package_chart(
    chart_dir: Path,
    destination: Path | None = None,
    repo_index_url: str | None = None,
    *,
    helm: str | None = None,
) -> Path:
    """Package the chart into DESTINATION (default: cwd) and (re)index it as a chart repository.

    Writes ``<name>-<version>.tgz`` with ``helm package`` and ``index.yaml`` with ``helm repo
    index`` (``--url`` when given, for a repository served from that URL). Returns the .tgz.
    """
    meta = _chart_meta(chart_dir)
    dest = (destination or Path.cwd()).absolute()
    dest.mkdir(parents=True, exist_ok=True)
    run_helm(
        ["package", str(chart_dir), "--destination", str(dest)], helm=helm, where=str(chart_dir)
    )
    tgz = dest / f"{meta['name']}-{meta['version']}.tgz"
    if not tgz.is_file():
        raise RuntimeError(f"helm package did not write {tgz}")
    index_args = ["repo", "index", str(dest)]
    if repo_index_url:
        index_args += ["--url", repo_index_url]
    run_helm(index_args, helm=helm, where=str(dest))
    return tgz


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
