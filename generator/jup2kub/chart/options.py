"""The choices of one chart build (``jup2kub build`` flags) and their checks.

Defaults make a production-like chart. Each impossible choice is a usage error naming the flag
that carries it.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass, field

from jup2kub.errors import InputError, UsageError
from jup2kub.model.names import DNS_LABEL, RESERVED_STEP_NAMES
from jup2kub.plan import PipelinePlan, StepPlan

STORAGE_MODES = ("local", "ebs", "efs", "existingClaim")
KAFKA_NODE_COUNTS = (1, 3)
DEFAULT_KAFKA_IMAGE = "apache/kafka"
DEFAULT_KAFKA_TAG = "3.9.1"
#: Names of the chart's own objects (<fullname>-<suffix>), which a step's objects would clash with.

_SEMVER = re.compile(
    r"^(0|[1-9]\d*)\.(0|[1-9]\d*)\.(0|[1-9]\d*)"
    r"(-[0-9A-Za-z-]+(\.[0-9A-Za-z-]+)*)?(\+[0-9A-Za-z-]+(\.[0-9A-Za-z-]+)*)?$"
)
_REGISTRY = re.compile(r"^[A-Za-z0-9.-]+(:[0-9]+)?(/[a-z0-9._/-]+)?$")
_DIGEST = re.compile(r"^sha256:[a-f0-9]{64}$")
_TAG = re.compile(r"^[A-Za-z0-9_][A-Za-z0-9_.-]{0,127}$")
#: [host[:port]/]path of lowercase components, as docker names repositories
_REPOSITORY = re.compile(r"^([A-Za-z0-9.-]+(:[0-9]+)?/)?[a-z0-9]+([._/-]+[a-z0-9]+)*$")


@dataclass(frozen=True)
class ChartOptions:
    """Choices for one build.

    ``image_tags``/``image_digests`` map step names to what the image build produced; steps
    without a tag get the notebook's short hash, so a rebuild of an unchanged notebook is stable.
    ``image_repositories``: steps whose image is another's with the same content (a catalogued
    step's), by repository relative to ``image_registry``; others get ``PIPELINE-STEP``.
    """

    storage: str = "local"
    kafka_nodes: int = 3
    replicas: int = 3
    max_replicas: int = 10
    image_registry: str = ""
    chart_version: str = "0.1.0"
    image_tags: Mapping[str, str] = field(default_factory=dict)
    image_digests: Mapping[str, str] = field(default_factory=dict)
    image_repositories: Mapping[str, str] = field(default_factory=dict)
    kafka_image: str = DEFAULT_KAFKA_IMAGE
    kafka_tag: str = DEFAULT_KAFKA_TAG
    #: required by storage "efs" / "existingClaim" respectively
    efs_file_system_id: str = ""
    existing_claim: str = ""


def check_options(options: ChartOptions, plan: PipelinePlan) -> None:
    """Reject impossible choices, and step names the chart's own objects use."""
    _check_storage(options)
    _check_scale(options)
    _check_images(options, plan)
    for step in plan.steps:
        if step.name in RESERVED_STEP_NAMES:
            raise InputError(
                f"step name {step.name!r} is taken by the chart's own objects",
                where=f"pipeline graph: step {step.name!r}",
                hint="rename the step (reserved: " + ", ".join(sorted(RESERVED_STEP_NAMES)) + ")",
            )
        _check_labels(step)


#: Labels the chart gives every step pod itself (templates/_labels.tpl, steps/deployment.yaml):
#: selectors among them, so a notebook's label: tag must not replace them.
RESERVED_POD_LABELS = frozenset(
    {
        "app.kubernetes.io/name",
        "app.kubernetes.io/instance",
        "app.kubernetes.io/part-of",
        "app.kubernetes.io/component",
        "jup2kub.io/role",
    }
)


def _check_labels(step: StepPlan) -> None:
    taken = sorted(k for k, _ in step.labels if k in RESERVED_POD_LABELS)
    if taken:
        raise InputError(
            f"step {step.name!r} has a label:{taken[0]}:... tag, but the chart sets that label "
            "itself (it selects the step's pods)",
            where=f"pipeline graph: step {step.name!r}",
            hint="use another label key (reserved: " + ", ".join(sorted(RESERVED_POD_LABELS)) + ")",
        )


def _check_storage(options: ChartOptions) -> None:
    if options.storage not in STORAGE_MODES:
        raise UsageError(
            f"unknown storage mode {options.storage!r}",
            where="--storage",
            hint="use one of: " + ", ".join(STORAGE_MODES),
        )
    if options.storage == "efs" and not re.fullmatch(r"fs-[0-9a-f]+", options.efs_file_system_id):
        raise UsageError(
            "storage efs needs the EFS file system id"
            + (f" (not {options.efs_file_system_id!r})" if options.efs_file_system_id else ""),
            where="--efs-file-system-id",
            hint="pass --efs-file-system-id fs-..., or build with another --storage and pick EFS "
            "per environment with values-prod.yaml",
        )
    if options.storage == "existingClaim" and not DNS_LABEL.match(options.existing_claim):
        raise UsageError(
            "storage existingClaim needs the name of a PersistentVolumeClaim",
            where="--existing-claim",
            hint="pass --existing-claim NAME (a ReadWriteMany claim in the release's namespace)",
        )


def _check_scale(options: ChartOptions) -> None:
    if options.kafka_nodes not in KAFKA_NODE_COUNTS:
        raise UsageError(
            f"Kafka needs 1 or 3 nodes, not {options.kafka_nodes}",
            where="--kafka-nodes",
            hint="1 for development, 3 for a fault-tolerant quorum",
        )
    if options.replicas < 1:
        raise UsageError(
            f"replicas must be at least 1, not {options.replicas}",
            where="--replicas",
            hint="scale a step to zero at install time with steps.<name>.replicas=0",
        )
    if options.max_replicas < options.replicas:
        raise UsageError(
            f"the autoscaling maximum ({options.max_replicas}) is below replicas "
            f"({options.replicas})",
            where="--replicas",
            hint="choose fewer replicas or a larger maximum",
        )
    if not _SEMVER.match(options.chart_version):
        raise UsageError(
            f"chart version {options.chart_version!r} is not SemVer 2",
            where="--chart-version",
            hint="e.g. 0.1.0 or 1.2.3-rc.1",
        )


def _check_images(options: ChartOptions, plan: PipelinePlan) -> None:
    registry = options.image_registry.rstrip("/")
    if registry and not _REGISTRY.match(registry):
        raise UsageError(
            f"image registry {options.image_registry!r} is not a registry host[/path]",
            where="--image-registry",
            hint="e.g. registry.example.com:5000/team (no scheme)",
        )
    names = {s.name for s in plan.steps}
    for kind, mapping, pattern in (
        ("image tag", options.image_tags, _TAG),
        ("image digest", options.image_digests, _DIGEST),
        ("image repository", options.image_repositories, _REPOSITORY),
    ):
        for step, value in mapping.items():
            if step not in names:
                raise UsageError(
                    f"{kind} given for unknown step {step!r}",
                    hint="known steps: " + ", ".join(sorted(names)),
                )
            if not pattern.match(value):
                raise UsageError(f"{kind} {value!r} of step {step!r} is malformed")
    if not _TAG.match(options.kafka_tag):
        raise UsageError(f"Kafka image tag {options.kafka_tag!r} is malformed")
