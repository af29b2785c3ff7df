"""Validating a run's RO-Crate with rocrate-validator (PyPI ``roc-validator``), offline.

The validator lives in a virtualenv of its own (``tests/setup.d/35-roc-validator.sh``: it pins
rich<14). Each validation gets a fresh HTTP cache in a temporary directory, seeded with the
vendored context documents (``tests/data/jsonld-contexts/``), and runs with ``--offline``
against it: the user's own cache (``~/.cache/rocrate-validator``) is neither read nor written.
"""

from __future__ import annotations

import json
import os
import subprocess
import tempfile
from dataclasses import dataclass
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
SETUP_SCRIPT = REPO / "tests" / "setup.d" / "35-roc-validator.sh"
CONTEXTS = REPO / "tests" / "data" / "jsonld-contexts"
RUNNER = Path(__file__).with_name("validate_crate_offline.py")
#: the context documents a Jup2Kub crate names, by URL
DOCUMENTS = {
    "https://w3id.org/ro/crate/1.1/context": CONTEXTS / "ro-crate-1.1-context.jsonld",
    "https://w3id.org/ro/terms/workflow-run/context": CONTEXTS / "workflow-run-context.jsonld",
}
#: the profile the crates conform to (and, through it, Workflow and Process Run Crate)
PROFILE = "provenance-run-crate"


def validator_python() -> str:
    """The validator venv's python, running the setup script if the environment lacks it."""
    python = os.environ.get("J2K_ROC_VALIDATOR_PYTHON")
    if not python or not Path(python).exists():
        out = subprocess.run(
            [
                "bash",
                "-c",
                f'set -euo pipefail; source "{SETUP_SCRIPT}"; echo "$J2K_ROC_VALIDATOR_PYTHON"',
            ],
            check=True,
            capture_output=True,
            text=True,
            timeout=900,
        )
        python = out.stdout.strip().splitlines()[-1]
        os.environ["J2K_ROC_VALIDATOR_PYTHON"] = python
    return python


@dataclass
class Validation:
    passed: bool
    issues: list[str]
    output: str


def validate(
    crate: Path,
    profile: str = PROFILE,
    severity: str = "REQUIRED",
    documents: dict[str, Path] = DOCUMENTS,
) -> Validation:
    """Validate the crate (a directory or a zip) offline at ``severity``, its cache seeded
    with ``documents`` (URL -> file) only."""
    with tempfile.TemporaryDirectory(prefix="rocv-cache-") as tmp:
        cache = str(Path(tmp) / "http_cache")
        env = {**os.environ, "XDG_CACHE_HOME": tmp, "HOME": tmp, "NO_COLOR": "1"}
        seeds = [f"{u}={p}" for u, p in documents.items()]
        done = subprocess.run(
            [validator_python(), str(RUNNER), str(crate), profile, severity, cache, *seeds],
            capture_output=True,
            text=True,
            timeout=600,
            env=env,
        )
    text = done.stdout + done.stderr
    assert done.returncode == 0, f"the validator did not run:\n{text}"
    line = next(x for x in done.stdout.splitlines() if x.startswith('{"passed"'))
    data = json.loads(line)
    issues = [f"{i['severity']}: {i['message']} ({i['check']})" for i in data["issues"]]
    return Validation(bool(data["passed"]), issues, text)
