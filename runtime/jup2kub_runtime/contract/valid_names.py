"""Which names are valid where: pipeline and step names, variables, Kafka topics, run ids.

Pipeline and step names become parts of topic names, consumer groups and directory names, and
run ids become directory names, so each is kept to a safe alphabet; one place for all of them.
"""

from __future__ import annotations

import re

from .errors import PermanentError

#: a pipeline or step name: 1-63 letters, digits, '_' or '-', starting with a letter or digit
NAME_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_-]{0,62}$")
#: a Python identifier (parameters, a step's input and output variables)
IDENTIFIER_RE = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")
#: a Kafka topic or consumer group name
TOPIC_RE = re.compile(r"^[A-Za-z0-9._-]{1,249}$")
#: a run id: one safe path component of 1-128 letters, digits, '.', '_' or '-'
RUN_ID_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,127}$")

#: the environment variable holding a secret parameter's value in a step process
SECRET_PARAMETER_ENV_PREFIX = "J2K_SECRET_PARAMETER_"


def secret_parameter_env(name: str) -> str:
    """Where a step process finds the secret parameter ``name`` (a Python identifier)."""
    return SECRET_PARAMETER_ENV_PREFIX + name


def check_run_id(run_id: object) -> str:
    """Return ``run_id`` if it is safe as a single path component, else raise PermanentError."""
    if not isinstance(run_id, str) or not RUN_ID_RE.match(run_id):
        raise PermanentError(
            f"run id {run_id!r} is invalid: use 1-128 letters, digits, '.', '_' or '-', "
            "starting with a letter or digit"
        )
    return run_id
