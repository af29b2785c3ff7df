"""What ``submit`` does before a run message is sent: the notebook's pipeline (read once per
version of the file, not once per run), the run's parameters checked against it, and the
parameter sets of ``jup2kub submit --params-file`` (one run per JSON line), all checked before
anything is sent."""

from __future__ import annotations

import json
import os
import threading
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

from jup2kub.errors import InputError, UsageError
from jup2kub.model.parameters import collect
from jup2kub.model.pipeline import Pipeline

#: what identifies a version of a notebook file, with the split and name it is read with
_Key = tuple[str, int, int, str, str | None]


class PipelineCache:
    """Inspected pipelines by notebook version (path, mtime, size) and split and name.

    Reading and analysing a notebook takes far longer than sending its run message; a process
    submitting runs from several threads reads it once, and again once the file changes."""

    def __init__(self, limit: int = 64) -> None:
        self._lock = threading.Lock()
        self._pipelines: dict[_Key, Pipeline] = {}
        self._limit = limit
        self.reads = 0  # how many times a notebook was read (what tests count)

    def get(
        self,
        path: str | Path,
        split: str,
        name: str | None,
        inspect: Callable[[str | Path, str, str | None], Pipeline],
    ) -> Pipeline:
        """The pipeline of ``path`` as it is now: ``inspect(path, split, name)`` when the file
        is new here or changed (a missing file: ``inspect`` says so)."""
        try:
            st = os.stat(path)
        except OSError:
            return inspect(path, split, name)
        key: _Key = (os.path.abspath(path), st.st_mtime_ns, st.st_size, split, name)
        with self._lock:
            found = self._pipelines.get(key)
        if found is not None:
            return found
        pipeline = inspect(path, split, name)  # outside the lock: threads wait on no read
        with self._lock:
            self.reads += 1
            if len(self._pipelines) >= self._limit:
                self._pipelines.clear()
            self._pipelines[key] = pipeline
        return pipeline


def run_parameters(
    pipeline: Pipeline,
    given: Mapping[str, Any] | None,
    files: Sequence[Path],
    yaml_texts: Sequence[str],
    strings: Sequence[tuple[str, str]],
) -> dict[str, Any]:
    """A run's parameters from -f files, -y YAML, ``given`` values and -p pairs (in that
    order), checked against the notebook's parameters cell; secrets refused."""
    params = collect(
        given or {},
        files,
        pipeline.parameters,
        yaml_texts=yaml_texts,
        strings=strings,
        expressions=pipeline.parameter_expressions,
    )
    refuse_secret_overrides(pipeline, params)
    return params


def refuse_secret_overrides(pipeline: Pipeline, parameters: Mapping[str, Any]) -> None:
    """A secret given with ``-p`` or ``-f`` is refused: run parameters are recorded (summary,
    results, Kafka messages)."""
    for secret in pipeline.secret_parameters:
        if secret.name in parameters:
            raise UsageError(
                f"parameter {secret.name!r} is a secret: a -p or -f value would be recorded "
                "with the run (its summary, results and messages)",
                hint=f"set {secret.environment} in the environment instead (jup2kub run), or "
                f"secretParameters.{secret.name} in the chart's values",
            )


def params_file_runs(
    pipeline: Pipeline, path: Path, defaults: Mapping[str, Any]
) -> list[dict[str, Any]]:
    """Each non-blank line of ``path`` (a JSON object of parameter values) over ``defaults``,
    checked as -p and -f values are; the first bad line stops it, named by its number."""
    try:
        lines = path.read_text(encoding="utf-8").splitlines()
    except (OSError, UnicodeDecodeError) as exc:
        raise InputError(f"cannot read the params file ({exc})", where=str(path)) from exc
    runs = []
    for number, line in enumerate(lines, 1):
        if line.strip():
            runs.append(_line_parameters(pipeline, line, defaults, f"{path}:{number}"))
    if not runs:
        raise InputError(
            "the params file holds no run", where=str(path), hint="write one JSON object a line"
        )
    return runs


def _line_parameters(
    pipeline: Pipeline, line: str, defaults: Mapping[str, Any], where: str
) -> dict[str, Any]:
    """One line's run parameters; an error names the line (``where``)."""
    try:
        values = json.loads(line)
    except ValueError as exc:
        raise InputError(f"not valid JSON ({exc})", where=where) from None
    if not isinstance(values, dict):
        raise InputError(
            "a line must be a JSON object of parameter values",
            where=where,
            hint='e.g. {"n": 3, "label": "x"}',
        )
    try:
        return run_parameters(pipeline, {**defaults, **values}, (), (), ())
    except InputError as exc:
        raise InputError(exc.what, where=where, hint=exc.hint) from None
