"""Helm, in one place: finding the binary, running it, its values-file semantics, and the
pyhelm3 client ``jup2kub deploy`` drives it through.

Values files merge the way ``helm -f a -f b`` merges them; pyhelm3's own merge concatenates
lists, which helm never does, so callers merge here and hand pyhelm3 one mapping.
"""

from __future__ import annotations

import copy
import subprocess
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import yaml

from jup2kub.errors import (
    ClusterError,
    DeployError,
    InputError,
    Jup2KubError,
    ValuesError,
)
from jup2kub.programs import HELM, find


def find_helm() -> str:
    """The helm binary: $J2K_HELM, else ``helm`` on PATH."""
    return find(HELM)


def run_helm(
    args: Sequence[str],
    *,
    helm: str | None = None,
    where: str | None = None,
    stdin: str | None = None,
) -> str:
    """Run helm; a failure becomes an InputError carrying helm's own message. ``stdin`` is for
    secrets (``--passphrase-file -``): never on the command line."""
    command = [helm or find_helm(), *args]
    result = subprocess.run(
        command,
        capture_output=True,
        text=True,
        check=False,
        input=stdin,
        stdin=None if stdin is not None else subprocess.DEVNULL,
    )
    if result.returncode != 0:
        message = (result.stderr or result.stdout).strip()
        raise InputError(
            f"helm {args[0]} failed: {message}",
            where=where,
            hint="fix the chart or values named above, then try again",
        )
    return result.stdout


def client(kubeconfig: Path | None, context: str | None, timeout: float) -> Any:
    """A pyhelm3 client on the same helm binary (imported late: only deploy needs it)."""
    from pyhelm3 import Client  # pyhelm3: only deploy and status load it

    return Client(
        executable=find_helm(),
        kubeconfig=kubeconfig,
        kubecontext=context,
        default_timeout=f"{int(timeout)}s",
    )


def error_message(exc: Exception) -> str:
    """helm's own message from a pyhelm3 error, without its ``Error:`` prefixes."""
    text = str(exc).strip()
    return "\n".join(line.removeprefix("Error: ") for line in text.splitlines() if line.strip())


def failure(exc: Exception, action: str, where: str) -> Jup2KubError:
    """The error to raise for a failed helm command (pyhelm3's exception ``exc``)."""
    message = error_message(exc)
    if "cluster unreachable" in message or "connection refused" in message.lower():
        return ClusterError(
            f"helm {action}: the cluster cannot be reached: {message}",
            where=where,
            hint="check --kubeconfig/--context and that the cluster is up (`kubectl get nodes`)",
        )
    if "values don't meet the specifications of the schema" in message:
        return ValuesError(
            f"the chart's values.schema.json rejects the values: {message}",
            where=where,
            hint="fix the key or type named above in your values "
            "file (see the chart's README for the keys); nothing was created",
        )
    return DeployError(f"helm {action} failed: {message}", where=where)


def merge_values(base: Mapping[str, Any], override: Mapping[str, Any]) -> dict[str, Any]:
    """Helm's ``-f a -f b`` semantics: maps merge deeply, lists and scalars are replaced, and
    ``null`` removes a key. Neither input is modified."""
    merged = dict(base)
    for key, value in override.items():
        if value is None:
            merged.pop(key, None)
        elif isinstance(value, Mapping) and isinstance(merged.get(key), Mapping):
            merged[key] = merge_values(merged[key], value)
        else:
            merged[key] = copy.deepcopy(value)
    return merged


def load_values(files: Sequence[Path]) -> dict[str, Any]:
    """Read and merge values files in order; a bad file is an input error naming it."""
    merged: dict[str, Any] = {}
    for path in files:
        try:
            data = yaml.safe_load(path.read_text())
        except OSError as exc:
            raise ValuesError(
                f"cannot read the values file: {exc.strerror or exc}", where=str(path)
            ) from exc
        except yaml.YAMLError as exc:
            mark = getattr(exc, "problem_mark", None)
            where = f"{path}, line {mark.line + 1}" if mark is not None else str(path)
            raise ValuesError(
                f"the values file is not valid YAML: {getattr(exc, 'problem', None) or exc}",
                where=where,
                hint="fix the YAML syntax",
            ) from exc
        if data is None:
            continue
        if not isinstance(data, dict):
            raise ValuesError(
                f"a values file must hold a mapping, not {type(data).__name__}",
                where=str(path),
                hint="write `key: value` pairs at the top level",
            )
        merged = merge_values(merged, data)
    return merged
