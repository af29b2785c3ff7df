"""Names of pipelines and steps: DNS-1123 labels, since they become Kubernetes object names,
Kafka topic parts and consumer groups. The one home of the rules; everything else imports them.
"""

from __future__ import annotations

import re
import unicodedata
from pathlib import Path

from jup2kub.errors import UsageError

DNS_LABEL = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$")
#: Longest pipeline or step name: ``<release>-<pipeline>-<step>`` objects must stay within 63.
MAX_NAME = 40
#: Step names the chart's own objects use (the Kafka StatefulSet and its Services, the topic
#: job, the state volume)
RESERVED_STEP_NAMES = frozenset({"kafka", "kafka-headless", "topics", "state"})
#: helm's limit on release names
MAX_RELEASE_NAME = 53
#: Kubernetes' limit on namespace names (a DNS-1123 label)
MAX_NAMESPACE = 63


def dns_label(raw: str, max_len: int = MAX_NAME, fallback: str = "step") -> str:
    """A DNS-1123 label derived from ``raw``: lowercase alphanumerics and '-', at most max_len."""
    text = unicodedata.normalize("NFKD", raw).encode("ascii", "ignore").decode("ascii")
    text = re.sub(r"[^a-z0-9]+", "-", text.lower()).strip("-")
    text = text[:max_len].rstrip("-")
    return text or fallback


def is_name(name: str) -> bool:
    """True for a valid pipeline or step name."""
    return bool(DNS_LABEL.match(name)) and len(name) <= MAX_NAME


def pipeline_name_for(notebook: str | Path) -> str:
    """The default pipeline name, from the notebook's file name.

    A leading digit gets an ``nb-`` prefix, since Service names must start with a letter.
    """
    stem = Path(notebook).name.removesuffix(".ipynb")
    name = dns_label(stem, fallback="notebook")
    if name[0].isdigit():
        name = ("nb-" + name)[:MAX_NAME].rstrip("-")
    return name


def check_pipeline_name(name: str) -> str:
    """``name`` if it is a valid pipeline name (``--name``), else a usage error saying why."""
    if not is_name(name):
        raise UsageError(
            f"pipeline name {name!r} is not a DNS label of at most {MAX_NAME} characters",
            where="--name",
            hint="use lower-case letters, digits and '-'",
        )
    return name


def check_release_name(release: str, where: str | None = None) -> str:
    """``release`` if helm accepts it as a release name, else a usage error saying why."""
    if not DNS_LABEL.match(release) or len(release) > MAX_RELEASE_NAME:
        raise UsageError(
            f"invalid release name {release!r}",
            where=where,
            hint=f"use at most {MAX_RELEASE_NAME} lowercase letters, digits and '-', "
            "starting and ending with a letter or digit",
        )
    return release


def check_namespace(namespace: str, where: str | None = None) -> str:
    """``namespace`` if Kubernetes accepts it as a namespace name, else a usage error."""
    if not DNS_LABEL.match(namespace) or len(namespace) > MAX_NAMESPACE:
        raise UsageError(
            f"invalid namespace {namespace!r}",
            where=where,
            hint=f"use at most {MAX_NAMESPACE} lowercase letters, digits and '-', "
            "starting and ending with a letter or digit",
        )
    return namespace


def step_label(raw: str) -> tuple[str, str | None]:
    """The step name for a name the user wrote (a tag or marker), and a note when the name
    lost more than case and punctuation (cut to ``MAX_NAME``); ValueError
    saying why when no usable name is left or the chart's objects take it."""
    full = dns_label(raw, max_len=10_000, fallback="")
    if not full:
        raise ValueError(
            f"step name {raw!r} has no letter or digit; use lower-case letters, digits and '-'"
        )
    name = full[:MAX_NAME].rstrip("-")
    if name in RESERVED_STEP_NAMES:
        raise ValueError(
            f"step name {raw!r} is taken by the chart's own objects (reserved: "
            + ", ".join(sorted(RESERVED_STEP_NAMES))
            + ")"
        )
    if name != full:
        return name, f"step name {raw!r} is cut to {MAX_NAME} characters: {name!r}"
    return name, None
