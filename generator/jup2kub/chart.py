"""The deliverable: a self-contained Helm chart for one pipeline, and its packaging.

The chart's templates are generic and copied verbatim from ``chart-template/``; everything
specific to the notebook is data, written by Jinja2 into ``values.yaml`` (with comments),
``Chart.yaml``, the chart README and the environment values files, plus a generated
``values.schema.json``. No file mixes Jinja2 and Go-template syntax. Topic names, consumer groups
and the Kafka cluster id are computed here, once, so the templates only read values.

Builds are reproducible (same input, byte-identical output) and atomic (a failed build leaves
OUT as it was).
"""

from __future__ import annotations

import base64
import copy
import hashlib
import json
import os
import re
import shutil
import subprocess
import tempfile
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from importlib import resources
from importlib.abc import Traversable
from pathlib import Path
from typing import Any

import jinja2
import jsonschema
import yaml

from jup2kub import __version__
from jup2kub.errors import InputError, UsageError

#: File in OUT that marks it as a chart written by Jup2Kub (so rebuilding may replace it).
MARKER = ".jup2kub-chart"
STORAGE_MODES = ("local", "ebs", "efs", "existingClaim")
KAFKA_NODE_COUNTS = (1, 3)
DEFAULT_KAFKA_IMAGE = "apache/kafka"
DEFAULT_KAFKA_TAG = "3.9.1"

#: Names of the chart's own objects (<fullname>-<suffix>), which a step's objects would clash with.
RESERVED_STEP_NAMES = frozenset({"kafka", "kafka-headless", "topics", "state"})
_DNS_LABEL = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$")
_MAX_STEP_NAME = 40
_MAX_PIPELINE_NAME = 40
_SEMVER = re.compile(
    r"^(0|[1-9]\d*)\.(0|[1-9]\d*)\.(0|[1-9]\d*)"
    r"(-[0-9A-Za-z-]+(\.[0-9A-Za-z-]+)*)?(\+[0-9A-Za-z-]+(\.[0-9A-Za-z-]+)*)?$"
)
_REGISTRY = re.compile(r"^[A-Za-z0-9.-]+(:[0-9]+)?(/[a-z0-9._/-]+)?$")
_DIGEST = re.compile(r"^sha256:[a-f0-9]{64}$")
_TAG = re.compile(r"^[A-Za-z0-9_][A-Za-z0-9_.-]{0,127}$")


@dataclass(frozen=True)
class ChartOptions:
    """Choices for one build; the defaults make a production-like chart.

    ``name`` overrides the pipeline/chart name derived from the notebook file name.
    ``image_tags``/``image_digests`` map step names to what the image build produced; steps
    without a tag get the notebook's short hash, so a rebuild of an unchanged notebook is stable.
    """

    storage: str = "local"
    kafka_nodes: int = 3
    replicas: int = 3
    max_replicas: int = 10
    image_registry: str = ""
    chart_version: str = "0.1.0"
    name: str | None = None
    image_tags: Mapping[str, str] = field(default_factory=dict)
    image_digests: Mapping[str, str] = field(default_factory=dict)
    kafka_image: str = DEFAULT_KAFKA_IMAGE
    kafka_tag: str = DEFAULT_KAFKA_TAG
    notebook_sha256: str | None = None
    #: required by storage "efs" / "existingClaim" respectively
    efs_file_system_id: str = ""
    existing_claim: str = ""


@dataclass(frozen=True)
class _Step:
    name: str
    cells: list[int]
    inputs: list[str]
    outputs: list[str]
    parameters: list[str]
    after: list[str]


# --------------------------------------------------------------------------- names


def pipeline_name(notebook_path: Path) -> str:
    """Pipeline (and chart) name from the notebook's file name: a DNS label of <= 40 chars.

    A leading digit gets an ``nb-`` prefix, since Service names must start with a letter.
    """
    stem = notebook_path.name
    if stem.endswith(".ipynb"):
        stem = stem[: -len(".ipynb")]
    name = re.sub(r"[^a-z0-9]+", "-", stem.lower()).strip("-")
    if not name:
        name = "notebook"
    if name[0].isdigit():
        name = "nb-" + name
    return name[:_MAX_PIPELINE_NAME].rstrip("-")


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


def topic_names(pipeline: str) -> dict[str, str]:
    """The pipeline-wide topics: runs (entry), status, dead-letter."""
    return {
        "runs": f"{pipeline}.runs",
        "status": f"{pipeline}.status",
        "dead_letter": f"{pipeline}.dead-letter",
    }


def edge_topic(pipeline: str, upstream: str, downstream: str) -> str:
    """The topic carrying runs along one DAG edge."""
    return f"{pipeline}.edge.{upstream}.{downstream}"


# --------------------------------------------------------------------------- input checks


def _graph_error(what: str, where: str = "pipeline graph") -> InputError:
    return InputError(
        what, where=where, hint="the step graph is what `jup2kub inspect --json` prints"
    )


def _str_list(step: Mapping[str, Any], key: str, where: str) -> list[str]:
    value = step.get(key, [])
    if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
        raise _graph_error(f"{key!r} must be a list of strings", where)
    return list(value)


def _parse_graph(graph: Mapping[str, Any]) -> list[_Step]:
    """Check the step graph's shape: unique DNS-label names, known and acyclic ``after``."""
    if not isinstance(graph, Mapping):
        raise _graph_error("the step graph must be a JSON object")
    raw_steps = graph.get("steps")
    if not isinstance(raw_steps, list) or not raw_steps:
        raise _graph_error("the step graph has no steps")
    steps: list[_Step] = []
    seen: set[str] = set()
    for index, raw in enumerate(raw_steps):
        if not isinstance(raw, Mapping):
            raise _graph_error(f"step #{index} is not an object")
        name = raw.get("name")
        where = f"pipeline graph: step {name!r}" if isinstance(name, str) else f"step #{index}"
        if not isinstance(name, str) or not _DNS_LABEL.match(name) or len(name) > _MAX_STEP_NAME:
            raise _graph_error(
                f"step name {name!r} is not a DNS label of at most {_MAX_STEP_NAME} characters",
                where,
            )
        if name in seen:
            raise _graph_error(f"step name {name!r} appears twice", where)
        if name in RESERVED_STEP_NAMES:
            raise InputError(
                f"step name {name!r} is taken by the chart's own objects",
                where=where,
                hint="rename the step (reserved: " + ", ".join(sorted(RESERVED_STEP_NAMES)) + ")",
            )
        seen.add(name)
        cells = raw.get("cells", [])
        if not isinstance(cells, list) or not all(
            isinstance(c, int) and not isinstance(c, bool) for c in cells
        ):
            raise _graph_error("'cells' must be a list of integers", where)
        steps.append(
            _Step(
                name=name,
                cells=list(cells),
                inputs=_str_list(raw, "inputs", where),
                outputs=_str_list(raw, "outputs", where),
                parameters=_str_list(raw, "parameters", where),
                after=_str_list(raw, "after", where),
            )
        )
    by_name = {s.name: s for s in steps}
    for step in steps:
        for upstream in step.after:
            if upstream not in by_name:
                raise _graph_error(
                    f"'after' names {upstream!r}, which is not a step",
                    f"pipeline graph: step {step.name!r}",
                )
            if upstream == step.name:
                raise _graph_error("a step cannot come after itself", f"step {step.name!r}")
    _check_acyclic(steps)
    return steps


def _check_acyclic(steps: Sequence[_Step]) -> None:
    state: dict[str, int] = {}
    by_name = {s.name: s for s in steps}

    def visit(name: str, trail: list[str]) -> None:
        if state.get(name) == 2:
            return
        if state.get(name) == 1:
            cycle = [*trail[trail.index(name) :], name]
            raise _graph_error("the steps' 'after' lists form a cycle: " + " -> ".join(cycle))
        state[name] = 1
        for upstream in by_name[name].after:
            visit(upstream, [*trail, name])
        state[name] = 2

    for step in steps:
        visit(step.name, [])


def _check_options(options: ChartOptions, steps: Sequence[_Step]) -> None:
    """Reject impossible choices with the flag that carries them."""
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
    if options.storage == "existingClaim" and not _DNS_LABEL.match(options.existing_claim):
        raise UsageError(
            "storage existingClaim needs the name of a PersistentVolumeClaim",
            where="--existing-claim",
            hint="pass --existing-claim NAME (a ReadWriteMany claim in the release's namespace)",
        )
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
    registry = options.image_registry.rstrip("/")
    if registry and not _REGISTRY.match(registry):
        raise UsageError(
            f"image registry {options.image_registry!r} is not a registry host[/path]",
            where="--image-registry",
            hint="e.g. registry.example.com:5000/team (no scheme)",
        )
    if options.name is not None and (
        not _DNS_LABEL.match(options.name) or len(options.name) > _MAX_PIPELINE_NAME
    ):
        raise UsageError(
            f"pipeline name {options.name!r} is not a DNS label of at most "
            f"{_MAX_PIPELINE_NAME} characters",
            hint="use lower-case letters, digits and '-'",
        )
    names = {s.name for s in steps}
    for kind, mapping, pattern in (
        ("image tag", options.image_tags, _TAG),
        ("image digest", options.image_digests, _DIGEST),
    ):
        for step, value in mapping.items():
            if step not in names:
                raise UsageError(f"{kind} given for unknown step {step!r}", hint="known steps: "
                                 + ", ".join(sorted(names)))
            if not pattern.match(value):
                raise UsageError(f"{kind} {value!r} of step {step!r} is malformed")
    if not _TAG.match(options.kafka_tag):
        raise UsageError(f"Kafka image tag {options.kafka_tag!r} is malformed")


# --------------------------------------------------------------------------- assets


def _asset_root(name: str, source_dir: Path) -> Traversable:
    """An asset directory from the installed wheel, else from the source checkout."""
    packaged = resources.files("jup2kub") / "assets" / name
    if packaged.is_dir():
        return packaged
    if source_dir.is_dir():
        return source_dir
    raise FileNotFoundError(f"Jup2Kub's {name} is missing (looked in the package and {source_dir})")


def chart_template_root() -> Traversable:
    """The generic chart files (``chart-template/``), copied verbatim into every chart."""
    return _asset_root("chart-template", Path(__file__).resolve().parents[2] / "chart-template")


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


def _md_code(value: Any) -> str:
    text = value if isinstance(value, str) and value else json.dumps(value, ensure_ascii=False)
    return "`" + text.replace("|", "\\|") + "`"


def _jinja() -> jinja2.Environment:
    env = jinja2.Environment(
        loader=jinja2.PackageLoader("jup2kub", "templates"),
        undefined=jinja2.StrictUndefined,
        keep_trailing_newline=True,
        autoescape=False,
    )
    env.filters["y"] = _yaml_scalar
    env.filters["md_code"] = _md_code
    return env


def _base_schema() -> dict[str, Any]:
    text = (resources.files("jup2kub") / "templates" / "values.schema.base.json").read_text()
    schema: dict[str, Any] = json.loads(text)
    return schema


# --------------------------------------------------------------------------- rendering


def _sha256_file(path: Path) -> str:
    try:
        return hashlib.sha256(path.read_bytes()).hexdigest()
    except OSError as exc:
        raise InputError(
            f"cannot read the notebook: {exc.strerror or exc}",
            where=str(path),
            hint="pass the .ipynb file the step graph was made from",
        ) from exc


def _schema(steps: Sequence[_Step]) -> dict[str, Any]:
    schema = _base_schema()
    steps_schema = schema["properties"]["steps"]
    steps_schema["properties"] = {
        s.name: {"$ref": "#/definitions/step", "description": f"Step {s.name}."} for s in steps
    }
    steps_schema["required"] = [s.name for s in steps]
    return schema


def _resolve(schema: Mapping[str, Any], node: Mapping[str, Any]) -> Mapping[str, Any]:
    ref = node.get("$ref")
    if isinstance(ref, str) and ref.startswith("#/definitions/"):
        target: Mapping[str, Any] = schema["definitions"][ref.rsplit("/", 1)[1]]
        if "description" in node:
            return {**target, "description": node["description"]}
        return target
    return node


def _type_text(node: Mapping[str, Any]) -> str:
    if "enum" in node:
        return " \\| ".join(json.dumps(v) for v in node["enum"])
    kind = node.get("type", "any")
    return " \\| ".join(kind) if isinstance(kind, list) else str(kind)


def _values_table(schema: Mapping[str, Any], values: Mapping[str, Any]) -> list[dict[str, Any]]:
    """One row per leaf value of the schema, with the default from values.yaml."""
    rows: list[dict[str, Any]] = []

    def walk(node: Mapping[str, Any], key: str, value: Any) -> None:
        node = _resolve(schema, node)
        props = node.get("properties")
        if (
            isinstance(props, Mapping)
            and props
            and node.get("additionalProperties") is False
            and isinstance(value, Mapping)
        ):
            for name, child in props.items():
                if name in value:
                    walk(child, f"{key}.{name}" if key else name, value[name])
            return
        description = str(node.get("description", "")).replace("|", "\\|")
        rows.append({"key": key, "type": _type_text(node), "default": value,
                     "description": description})

    walk(schema, "", values)
    return rows


def render_chart(
    graph: Mapping[str, Any], notebook_path: Path, options: ChartOptions | None = None
) -> dict[str, bytes]:
    """Every file of the chart, by relative path; pure and deterministic (no OUT involved)."""
    options = options or ChartOptions()
    steps = _parse_graph(graph)
    _check_options(options, steps)
    sha = options.notebook_sha256 or _sha256_file(notebook_path)
    name = options.name or pipeline_name(notebook_path)
    topics = topic_names(name)
    registry = options.image_registry.rstrip("/")

    downstream: dict[str, list[str]] = {s.name: [] for s in steps}
    for step in steps:
        for upstream in step.after:
            downstream[upstream].append(step.name)
    step_ctx = []
    for step in steps:
        step_ctx.append(
            {
                "name": step.name,
                "cells": step.cells,
                "after": step.after,
                "inputs": step.inputs,
                "outputs": step.outputs,
                "image": {
                    "repository": f"{name}-{step.name}",
                    "tag": options.image_tags.get(step.name, sha[:12]),
                    "digest": options.image_digests.get(step.name, ""),
                },
                "input_topics": [edge_topic(name, u, step.name) for u in step.after]
                or [topics["runs"]],
                "output_topics": [edge_topic(name, step.name, d) for d in downstream[step.name]],
                "consumer_group": f"{name}.{step.name}",
            }
        )
    notebook = notebook_path.name
    context: dict[str, Any] = {
        "generator_version": __version__,
        "pipeline": {"name": name, "notebook": notebook, "sha256": sha},
        "chart": {
            "name": name,
            "version": options.chart_version,
            "app_version": sha[:12],
            "description": f"Jup2Kub pipeline of notebook {notebook}: {len(steps)} step"
            f"{'' if len(steps) == 1 else 's'} connected by Kafka",
        },
        "steps": step_ctx,
        "topics": {**topics, "partitions": max(options.replicas, options.max_replicas)},
        "options": {
            "storage": options.storage,
            "kafka_nodes": options.kafka_nodes,
            "replicas": options.replicas,
            "max_replicas": options.max_replicas,
            "image_registry": registry,
            "efs_file_system_id": options.efs_file_system_id,
            "existing_claim": options.existing_claim,
        },
        "kafka": {
            "repository": options.kafka_image,
            "tag": options.kafka_tag,
            "cluster_id": kafka_cluster_id(name),
        },
    }
    env = _jinja()
    files: dict[str, bytes] = {}
    for rel, data in _walk(chart_template_root()):
        files[rel] = data
    for target in ("Chart.yaml", "values.yaml", "values-dev.yaml", "values-prod.yaml"):
        files[target] = env.get_template(f"{target}.j2").render(context).encode()

    schema = _schema(steps)
    values = yaml.safe_load(files["values.yaml"])
    _self_check(schema, values, "values.yaml")
    for env_file in ("values-dev.yaml", "values-prod.yaml"):
        merged = _merge(values, yaml.safe_load(files[env_file]))
        _self_check(schema, merged, env_file)
    files["values.schema.json"] = (json.dumps(schema, indent=2) + "\n").encode()
    context["values_table"] = _values_table(schema, values)
    files["README.md"] = env.get_template("README.md.j2").render(context).encode()
    files["pipeline.json"] = (
        json.dumps(_plain(graph), indent=2, sort_keys=True, ensure_ascii=False) + "\n"
    ).encode()
    files[MARKER] = (
        json.dumps(
            {"generator": "jup2kub", "version": __version__, "notebook": notebook,
             "notebookSha256": sha, "pipeline": name},
            indent=2,
            sort_keys=True,
        )
        + "\n"
    ).encode()
    return dict(sorted(files.items()))


def _plain(value: Any) -> Any:
    """A JSON-ready deep copy of the graph (Mappings become dicts)."""
    if isinstance(value, Mapping):
        return {str(k): _plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_plain(v) for v in value]
    return value


def _merge(base: Mapping[str, Any], over: Mapping[str, Any]) -> dict[str, Any]:
    """Helm's coalescing of a values file over the chart's values (maps merge, null deletes)."""
    merged = copy.deepcopy(dict(base))
    for key, value in over.items():
        if value is None:
            merged.pop(key, None)
        elif isinstance(value, Mapping) and isinstance(merged.get(key), Mapping):
            merged[key] = _merge(merged[key], value)
        else:
            merged[key] = copy.deepcopy(value)
    return merged


def _self_check(schema: Mapping[str, Any], values: Any, name: str) -> None:
    """The generated values must satisfy the generated schema; anything else is our bug."""
    errors = sorted(jsonschema.Draft7Validator(schema).iter_errors(values), key=str)
    if errors:
        first = errors[0]
        path = ".".join(str(p) for p in first.absolute_path)
        raise RuntimeError(f"Jup2Kub bug: generated {name} fails its schema at {path}: "
                           f"{first.message}")


# --------------------------------------------------------------------------- writing


def _is_jup2kub_chart(path: Path) -> bool:
    return (path / MARKER).is_file()


def _write_atomically(out: Path, files: Mapping[str, bytes]) -> None:
    """Write into a temp dir beside OUT, then swap it in, so OUT is never half written."""
    out = Path(os.path.abspath(out))
    if out.is_symlink() or (out.exists() and not out.is_dir()):
        raise UsageError(
            "the output path exists and is not a directory",
            where=str(out),
            hint="choose another -o/--output",
        )
    if out.is_dir() and any(out.iterdir()) and not _is_jup2kub_chart(out):
        raise UsageError(
            "refusing to overwrite a directory that is not a chart built by Jup2Kub",
            where=str(out),
            hint=f"choose an empty or new directory (Jup2Kub charts carry a {MARKER} file)",
        )
    parent = out.parent
    parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{out.name}.tmp-", dir=parent))
    try:
        for rel, data in files.items():
            target = tmp / rel
            target.parent.mkdir(parents=True, exist_ok=True)
            target.write_bytes(data)
            target.chmod(0o644)
        for dirpath, _dirs, _files in os.walk(tmp):
            Path(dirpath).chmod(0o755)
        if out.exists():
            old = tmp.with_name(tmp.name.replace(".tmp-", ".old-", 1))
            os.rename(out, old)
            try:
                os.rename(tmp, out)
            except BaseException:
                os.rename(old, out)
                raise
            shutil.rmtree(old, ignore_errors=True)
        else:
            os.rename(tmp, out)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise


def build_chart(
    graph: Mapping[str, Any],
    notebook_path: Path,
    out: Path,
    options: ChartOptions | None = None,
    extra_files: Mapping[str, bytes] | None = None,
) -> Path:
    """Write the pipeline's Helm chart to OUT (atomically, replacing an earlier build).

    ``extra_files`` (path relative to OUT -> bytes; e.g. the image build's locks) are written in
    the same atomic swap, so OUT never holds a chart from one build and audit files of another.

    ``graph`` is the step graph as ``jup2kub inspect --json`` prints it. Returns OUT.
    """
    files = render_chart(graph, notebook_path, options)
    for rel in extra_files or {}:
        if rel in files:
            raise ValueError(f"extra file {rel!r} would replace a chart file")
    _write_atomically(out, {**files, **(extra_files or {})})
    return out


# --------------------------------------------------------------------------- helm


def find_helm() -> str:
    """The helm binary: $J2K_HELM, else ``helm`` on PATH."""
    configured = os.environ.get("J2K_HELM")
    if configured:
        if shutil.which(configured):
            return configured
        raise UsageError(
            f"J2K_HELM points at {configured!r}, which is not an executable",
            hint="unset J2K_HELM or point it at a helm 3 binary",
        )
    found = shutil.which("helm")
    if found:
        return found
    raise UsageError(
        "helm is not installed",
        hint="install Helm 3 (https://helm.sh/docs/intro/install/) or set J2K_HELM",
    )


def run_helm(args: Sequence[str], *, helm: str | None = None, where: str | None = None) -> str:
    """Run helm; a failure becomes an InputError carrying helm's own message."""
    command = [helm or find_helm(), *args]
    result = subprocess.run(command, capture_output=True, text=True, check=False)
    if result.returncode != 0:
        message = (result.stderr or result.stdout).strip()
        raise InputError(
            f"helm {args[0]} failed: {message}",
            where=where,
            hint="fix the chart or values named above, then try again",
        )
    return result.stdout


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
    run_helm(["package", str(chart_dir), "--destination", str(dest)], helm=helm,
             where=str(chart_dir))
    tgz = dest / f"{meta['name']}-{meta['version']}.tgz"
    if not tgz.is_file():
        raise RuntimeError(f"helm package did not write {tgz}")
    index_args = ["repo", "index", str(dest)]
    if repo_index_url:
        index_args += ["--url", repo_index_url]
    run_helm(index_args, helm=helm, where=str(dest))
    return tgz
