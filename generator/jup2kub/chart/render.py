"""Rendering the chart: every file of it, by relative path, from the pipeline's plan.

The Go templates under ``skeleton/templates/`` are generic and copied verbatim; everything
specific to the notebook is data, written by Jinja2 into ``values.yaml`` (with comments),
``Chart.yaml``, the chart README and the environment values files, plus a generated
``values.schema.json``. No file mixes Jinja2 and Go-template syntax. Topic names and consumer
groups come from the plan and the Kafka cluster id is derived here, so the templates only read
values. Rendering is pure and deterministic: same plan and options, same bytes.
"""

from __future__ import annotations

import base64
import hashlib
import json
from collections.abc import Iterator
from importlib.abc import Traversable
from pathlib import Path
from typing import Any

import jinja2
import yaml

from jup2kub.chart.options import ChartOptions, check_options
from jup2kub.chart.schema import SCHEMA_BASE, SKELETON, self_check, values_schema, values_table
from jup2kub.errors import InputError
from jup2kub.helm import merge_values
from jup2kub.plan import PipelinePlan, StepPlan
from jup2kub.version import __version__
from jup2kub_runtime.contract.config import (
    DEFAULT_CODE_PATH,
    DEFAULT_GUARD_MAX_BYTES,
    DEFAULT_GUARD_MODE,
    DEFAULT_PORT,
    DEFAULT_STATE_PATH,
)
from jup2kub_runtime.contract.metrics import FAMILIES, ExecutionOutcome
from jup2kub_runtime.contract.topics import elements_topic
from jup2kub_runtime.contract.tracing import (
    ATTRIBUTES,
    TRACEPARENT_HEADER,
    cell_span_name,
    run_span_name,
    step_span_name,
)

#: File in OUT that marks it as a chart written by Jup2Kub (so rebuilding may replace it).
MARKER = ".jup2kub-chart"
ENV_VALUES_FILES = ("values-dev.yaml", "values-prod.yaml")
#: Kubernetes refuses a ConfigMap whose data (keys and values) exceeds 1 MiB
CONFIGMAP_MAX_BYTES = 1 << 20
CODE_KEY = "step.json"


def code_files(plan: PipelinePlan) -> dict[str, bytes]:
    """Each step's code bundle, by its path in the chart (``files/steps/STEP/step.json``): the
    chart mounts it from a ConfigMap, so it is not in the step's image. A bundle too big for a
    ConfigMap is refused, naming the step and its size."""
    files = {}
    for step in plan.steps:
        data = step.spec.to_json().encode()
        if len(data) + len(CODE_KEY) > CONFIGMAP_MAX_BYTES:
            raise InputError(
                f"the code bundle of step {step.name!r} is {len(data) / 1024:.0f} KiB: more "
                f"than a Kubernetes ConfigMap holds ({CONFIGMAP_MAX_BYTES // 1024} KiB)",
                where=plan.notebook,
                hint="the chart mounts each step's code from a ConfigMap: move large literals "
                "(embedded data, long strings) out of the cells into a file the step reads, or "
                "split the step into smaller ones",
            )
        files[f"files/steps/{step.name}/{CODE_KEY}"] = data
    return files


def render_chart(plan: PipelinePlan, options: ChartOptions | None = None) -> dict[str, bytes]:
    """Every file of the chart, by relative path."""
    options = options or ChartOptions()
    check_options(options, plan)
    context = _context(plan, options)
    env = _jinja()
    files = {
        rel: data for rel, data in _walk(SKELETON) if not rel.endswith(".j2") and rel != SCHEMA_BASE
    }
    for target in ("Chart.yaml", "values.yaml", *ENV_VALUES_FILES):
        files[target] = env.get_template(f"{target}.j2").render(context).encode()
    schema = values_schema([s.name for s in plan.steps])
    values = yaml.safe_load(files["values.yaml"])
    self_check(schema, values, "values.yaml")
    for env_file in ENV_VALUES_FILES:
        merged = merge_values(values, yaml.safe_load(files[env_file]))
        self_check(schema, _with_user_settings(merged), env_file)
    files["values.schema.json"] = (json.dumps(schema, indent=2) + "\n").encode()
    context["values_table"] = values_table(schema, values)
    files["README.md"] = env.get_template("README.md.j2").render(context).encode()
    files["pipeline.json"] = _json(plan.graph, indent=2, ensure_ascii=False)
    files.update(code_files(plan))
    files[MARKER] = _json(
        {
            "generator": "jup2kub",
            "version": __version__,
            "notebook": Path(plan.notebook).name,
            "notebookSha256": plan.notebook_sha256,
            "pipeline": plan.name,
        },
        indent=2,
    )
    return dict(sorted(files.items()))


def kafka_cluster_id(pipeline: str) -> str:
    """A KRaft cluster id: 16 bytes as 22 chars of base64url, never starting with ``-``.

    Derived from the pipeline name only, not from the notebook hash: a rebuilt chart must keep
    the id, or ``helm upgrade`` would restart Kafka against storage formatted for another id.
    """
    counter = 0
    while True:
        seed = f"jup2kub/kafka-cluster-id/{pipeline}/{counter}".encode()
        text = base64.urlsafe_b64encode(hashlib.sha256(seed).digest()[:16]).decode().rstrip("=")
        if not text.startswith("-"):
            return text
        counter += 1


def _with_user_settings(values: dict[str, Any]) -> dict[str, Any]:
    """The values as a user installs them: an EFS file system id that only the user can know
    (values-prod.yaml leaves it empty rather than made up) is given at install."""
    efs = (values.get("storage") or {}).get("efs") or {}
    if values.get("storage", {}).get("mode") != "efs" or efs.get("fileSystemId"):
        return values
    if efs.get("volumeHandle"):
        return values
    return {**values, "storage": {**values["storage"], "efs": {**efs, "fileSystemId": "fs-0"}}}


def _context(plan: PipelinePlan, options: ChartOptions) -> dict[str, Any]:
    """What the Jinja2 files see."""
    sha = plan.notebook_sha256
    notebook = Path(plan.notebook).name
    n = len(plan.steps)
    return {
        "generator_version": __version__,
        "pipeline": {"name": plan.name, "notebook": notebook, "sha256": sha},
        "chart": {
            "name": plan.name,
            "version": options.chart_version,
            "app_version": sha[:12],
            "description": f"Jup2Kub pipeline of notebook {notebook}: {n} step"
            f"{'' if n == 1 else 's'} connected by Kafka",
        },
        "steps": [_step_context(s, options, sha) for s in plan.steps],
        "secret_parameters": sorted({n for s in plan.steps for n in s.spec.secret_parameters}),
        "topics": {
            "runs": plan.runs_topic,
            "status": plan.status_topic,
            "dead_letter": plan.dead_letter_topic,
            "partitions": max(options.replicas, options.max_replicas),
        },
        "options": {
            "storage": options.storage,
            "kafka_nodes": options.kafka_nodes,
            "replicas": options.replicas,
            "max_replicas": options.max_replicas,
            "image_registry": options.image_registry.rstrip("/"),
            "efs_file_system_id": options.efs_file_system_id,
            "existing_claim": options.existing_claim,
        },
        # the runtime's defaults (its image and the Deployment must agree on them)
        "runtime": {
            "state_path": str(DEFAULT_STATE_PATH),
            "code_path": str(DEFAULT_CODE_PATH),
            "port": DEFAULT_PORT,
            "guard_mode": DEFAULT_GUARD_MODE,
            "guard_max_bytes": DEFAULT_GUARD_MAX_BYTES,
        },
        # what every step exports at /metrics (the README's table: a contract for dashboards)
        "metrics": {
            "families": FAMILIES,
            "outcomes": [o.value for o in ExecutionOutcome],
        },
        # the spans every step exports when tracing.otlpEndpoint is set (the README's section)
        "tracing": {
            "run_span": run_span_name(plan.name),
            "step_span": step_span_name("STEP"),
            "cell_span": cell_span_name(0).replace("0", "INDEX"),
            "header": TRACEPARENT_HEADER,
            "attributes": ATTRIBUTES,
        },
        "kafka": {
            "repository": options.kafka_image,
            "tag": options.kafka_tag,
            "cluster_id": kafka_cluster_id(plan.name),
        },
    }


def _step_context(step: StepPlan, options: ChartOptions, sha: str) -> dict[str, Any]:
    return {
        "name": step.name,
        "cells": list(step.cells),
        "after": list(step.after),
        "inputs": list(step.inputs),
        "outputs": list(step.outputs),
        "image": {
            "repository": options.image_repositories.get(step.name, step.image_repository),
            "tag": options.image_tags.get(step.name, sha[:12]),
            "digest": options.image_digests.get(step.name, ""),
        },
        "input_topics": list(step.input_topics),
        "output_topics": list(step.output_topics),
        "consumer_group": step.consumer_group,
        # a map step's chunks travel on a topic of their own (runtime ``serving.map_distribution``)
        "map_topic": elements_topic(step.spec.pipeline, step.name) if step.spec.maps else "",
        # a limit alone makes Kubernetes request the same amount: the request follows the limit,
        # as extended resources (nvidia.com/gpu) require and as Kale's limit: tags mean
        "resources": {"requests": dict(step.limits), "limits": dict(step.limits)}
        if step.limits
        else {},
        "pod_labels": dict(step.labels),
        "pod_annotations": dict(step.annotations),
        "secret_env": {env: {"secret": secret, "key": key} for env, secret, key in step.secrets},
        "secret_parameters": list(step.spec.secret_parameters),
    }


def _json(doc: Any, **kwargs: Any) -> bytes:
    return (json.dumps(doc, sort_keys=True, **kwargs) + "\n").encode()


def _walk(root: Traversable, prefix: str = "") -> Iterator[tuple[str, bytes]]:
    for entry in sorted(root.iterdir(), key=lambda e: e.name):
        if entry.name == "__pycache__":
            continue
        rel = f"{prefix}{entry.name}"
        if entry.is_dir():
            yield from _walk(entry, rel + "/")
        else:
            yield rel, entry.read_bytes()


def _yaml_scalar(value: Any) -> str:
    """A YAML scalar that reads back as exactly ``value`` (JSON is YAML)."""
    return json.dumps(value, ensure_ascii=True)


def _yaml_key(value: str) -> str:
    """A mapping key as written by hand (``load``), quoted only where YAML would read it as
    something else (``123``, ``true``, ``null``)."""
    return value if yaml.safe_load(f"{value}: 0") == {value: 0} else _yaml_scalar(value)


def _md_code(value: Any) -> str:
    text = value if isinstance(value, str) and value else json.dumps(value, ensure_ascii=False)
    return "`" + text.replace("|", "\\|") + "`"


def _jinja() -> jinja2.Environment:
    env = jinja2.Environment(
        loader=jinja2.PackageLoader(__package__, "skeleton"),
        undefined=jinja2.StrictUndefined,
        keep_trailing_newline=True,
        autoescape=False,
    )
    env.filters["y"] = _yaml_scalar
    env.filters["key"] = _yaml_key
    env.filters["md_code"] = _md_code
    return env
