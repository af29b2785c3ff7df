"""Kale's cell tag language (kubeflow-kale 2.3, ``kale/processors/nbprocessor.py``), read the way
Kale reads it, so a notebook tagged for Kale splits into the steps Kale would make.

A cell's tags say what the cell is (``skip``, ``imports``, ``functions``, ``pipeline-parameters``,
``pipeline-metrics``: the first of these wins and the cell's other tags are ignored, as in Kale;
papermill's ``parameters`` counts as one too), which step it starts (``step:NAME``, or the
legacy ``block:NAME``), and settings that need a step name on the same cell: ``prev:``,
``limit:RESOURCE:AMOUNT``, ``label:KEY:VALUE``, ``annotation:KEY:VALUE``,
``secret:SECRET:KEY:ENV`` (honoured: the step's pods get them), and ``image:``, ``cache:``,
``report:`` (Kubeflow features Jup2Kub has no counterpart for: each is named in a warning).
``notebook:NAME`` references a notebook Kale runs as a sub-pipeline; Jup2Kub leaves the
reference out, with a warning.
"""

from __future__ import annotations

import ast
import re
import warnings
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from jup2kub.errors import SplitError
from jup2kub.model.ipython import magic_call, translate
from jup2kub.model.notebook import Cell, Notebook

SKIP_TAG = "skip"
PARAMETERS_TAG = "pipeline-parameters"
PARAMETER_TAGS = frozenset({"parameters", PARAMETERS_TAG})  # papermill's, Kale's
PRELUDE_TAGS = frozenset({"imports", "functions"})
METRICS_TAG = "pipeline-metrics"
#: Tags that say what a cell is; the first one on a cell wins and its other tags are ignored.
ROLE_TAGS = frozenset({SKIP_TAG, METRICS_TAG, *PARAMETER_TAGS, *PRELUDE_TAGS})
#: Where Kale keeps a notebook's settings, e.g. ``steps_defaults`` (tags applied to every step).
NOTEBOOK_METADATA_KEY = "kubeflow_notebook"

STEP_TAG = re.compile(r"^(?:step|block):(.*)$")
PREV_TAG = re.compile(r"^prev:(.+)$")
POD_TAG = re.compile(r"^(limit|label|annotation):([^:]*):(.*)$")
_POD_KIND = re.compile(r"^(limit|label|annotation):")
NOTEBOOK_TAG = re.compile(r"^notebook:(.*)$")
SECRET_TAG = re.compile(r"^secret:([^:]*):([^:]*):([^:]*)$")
UNSUPPORTED_TAG = re.compile(r"^(image|cache|report):(.*)$")
#: a step's ``cache:`` tag the step cache honours (``cacheability``): opt in or out
CACHE_TAG = re.compile(
    r"^cache:\s*(true|yes|on|enabled|enable|1|false|no|off|disabled|disable|0|never)\s*$",
    re.IGNORECASE,
)

#: A Kubernetes quantity (the chart's values.schema.json checks the same grammar).
QUANTITY = re.compile(
    r"^[+-]?([0-9]+(\.[0-9]*)?|\.[0-9]+)([eE][-+]?[0-9]+|[numkMGTPE]|[KMGTPE]i)?$"
)
_NAME_PART = r"[A-Za-z0-9]([-A-Za-z0-9_.]{0,61}[A-Za-z0-9])?"
_DNS_SUBDOMAIN = r"[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*"
#: Label and annotation keys: an optional DNS subdomain prefix and '/', then a name.
K8S_KEY = re.compile(rf"^({_DNS_SUBDOMAIN}/)?{_NAME_PART}$")
K8S_LABEL_VALUE = re.compile(rf"^({_NAME_PART})?$")
#: A resource name: ``cpu``, ``memory``, ``ephemeral-storage``, ``nvidia.com/gpu``, ...
RESOURCE_NAME = re.compile(rf"^({_DNS_SUBDOMAIN}/)?[A-Za-z0-9]([-A-Za-z0-9_.]*[A-Za-z0-9])?$")
SECRET_NAME = re.compile(rf"^{_DNS_SUBDOMAIN}$")
SECRET_KEY = re.compile(r"^[-._a-zA-Z0-9]+$")
ENV_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")
#: Environment variables the step runtime reads (jup2kub_runtime.contract.config): not for
#: notebooks.
RUNTIME_ENV_PREFIX = "J2K_"

#: What each Kubeflow-only tag does in Kale, and what Jup2Kub does instead.
UNSUPPORTED = {
    "image": "Kale runs this step in that image; every step image is built from "
    "`jup2kub build --base-image` with the step's imports installed",
    "cache": "Kale sets Kubeflow's step caching; Jup2Kub's step cache decides per step what "
    "it may reuse, and a step's own `cache:enabled` / `cache:disabled` tag (or "
    "`#| cache: true|false`) opts that step in or out",
    "report": "Kale renders an HTML report of the step; the step's outputs go into the run's "
    "results notebook instead",
}


@dataclass(frozen=True)
class SplitWarning:
    """Something the split honours differently from Kale, or ignores: shown, never fatal."""

    cell: int | None  # None: the notebook's metadata
    message: str

    def __str__(self) -> str:
        where = "notebook metadata" if self.cell is None else f"cell {self.cell}"
        return f"{where}: {self.message}"


@dataclass
class PodSettings:
    """What a step's pods get from ``limit:``, ``label:`` and ``annotation:`` tags."""

    limits: dict[str, str] = field(default_factory=dict)
    labels: dict[str, str] = field(default_factory=dict)
    annotations: dict[str, str] = field(default_factory=dict)
    #: environment variable -> (Secret name, key in it)
    secrets: dict[str, tuple[str, str]] = field(default_factory=dict)

    def with_defaults(self, defaults: PodSettings) -> PodSettings:
        """Kale applies ``steps_defaults`` over a step's own settings: a default wins a clash."""
        return PodSettings(
            {**self.limits, **defaults.limits},
            {**self.labels, **defaults.labels},
            {**self.annotations, **defaults.annotations},
            {**self.secrets, **defaults.secrets},
        )

    def is_empty(self) -> bool:
        return not (self.limits or self.labels or self.annotations or self.secrets)


@dataclass
class KaleCell:
    """The tags of one code cell, parsed."""

    role: str | None = None  # one of ROLE_TAGS, or None for a step or untagged cell
    name: str | None = None  # the step the cell starts or continues
    prevs: list[str] = field(default_factory=list)
    pod: PodSettings = field(default_factory=PodSettings)
    pod_tags: list[str] = field(default_factory=list)
    unsupported: list[str] = field(default_factory=list)
    cache: list[str] = field(default_factory=list)
    notebook: str | None = None

    @property
    def settings(self) -> list[str]:
        """The tags that only a step's first cell may carry (Kale ignores them elsewhere)."""
        return [
            *(f"prev:{p}" for p in self.prevs),
            *self.pod_tags,
            *self.unsupported,
            *self.cache,
        ]


def parse_cell(cell: Cell, path: str) -> KaleCell:
    """Read ``cell``'s tags as Kale does; refuse what Kale refuses, with the cell named."""
    parsed = KaleCell()
    names: list[str] = []
    for tag in cell.tags:
        if tag in ROLE_TAGS:
            return KaleCell(role=tag)
        if m := STEP_TAG.match(tag):
            if m.group(1).strip():  # Kale reads an empty `step:` as no step tag
                names.append(m.group(1).strip())
        elif m := PREV_TAG.match(tag):
            parsed.prevs.append(m.group(1).strip())
        elif m := POD_TAG.match(tag):
            _pod_tag(parsed, tag, m.group(1), m.group(2), m.group(3), f"{path}: cell {cell.index}")
        elif tag.startswith("secret:"):
            _secret_tag(parsed, tag, f"{path}: cell {cell.index}")
        elif m := _POD_KIND.match(tag):
            raise SplitError(
                f"tag {tag!r} is missing a part (Kale refuses it too)",
                where=f"{path}: cell {cell.index}",
                hint=_POD_HINTS[m.group(1)],
            )
        elif m := NOTEBOOK_TAG.match(tag):
            parsed.notebook = m.group(1)
        elif CACHE_TAG.match(tag):
            parsed.cache.append(tag)  # the step cache's opt-in/out (``cacheability``)
        elif UNSUPPORTED_TAG.match(tag):
            parsed.unsupported.append(tag)
    if len(set(names)) > 1:
        raise SplitError(
            f"the cell has several step tags: {', '.join('step:' + n for n in names)}",
            where=f"{path}: cell {cell.index}",
            hint="keep one step tag per cell",
        )
    parsed.name = names[0] if names else None
    if parsed.name is None and parsed.notebook is None and parsed.settings:
        raise SplitError(
            f"tag {parsed.settings[0]!r} is on a cell without a step tag (Kale refuses it too)",
            where=f"{path}: cell {cell.index}",
            hint="add step:NAME to the cell (the first cell of the step it applies to)",
        )
    return parsed


def _pod_tag(parsed: KaleCell, tag: str, kind: str, key: str, value: str, where: str) -> None:
    problem = _pod_tag_problem(kind, key, value)
    if problem:
        raise SplitError(f"tag {tag!r}: {problem}", where=where, hint=_POD_HINTS[kind])
    target = {"limit": parsed.pod.limits, "label": parsed.pod.labels}.get(
        kind, parsed.pod.annotations
    )
    target[key] = value
    parsed.pod_tags.append(tag)


def _secret_tag(parsed: KaleCell, tag: str, where: str) -> None:
    m = SECRET_TAG.match(tag)
    problem = "it is missing a part" if m is None else _secret_problem(*m.groups())
    if problem or m is None:
        raise SplitError(
            f"tag {tag!r}: {problem}",
            where=where,
            hint="write secret:SECRET:KEY:ENV, e.g. secret:db-credentials:password:DB_PASSWORD",
        )
    secret, key, env = m.groups()
    parsed.pod.secrets[env] = (secret, key)
    parsed.pod_tags.append(tag)


def _secret_problem(secret: str, key: str, env: str) -> str | None:
    if not SECRET_NAME.match(secret) or len(secret) > 253:
        return f"{secret!r} is not a Kubernetes Secret name"
    if not SECRET_KEY.match(key):
        return f"{key!r} is not a key of a Kubernetes Secret"
    if not ENV_NAME.match(env):
        return f"{env!r} is not an environment variable name"
    if env.startswith(RUNTIME_ENV_PREFIX):
        return f"{RUNTIME_ENV_PREFIX}* variables are reserved for the step runtime"
    return None


_POD_HINTS = {
    "limit": "write limit:RESOURCE:AMOUNT, e.g. limit:nvidia.com/gpu:1 or limit:memory:4Gi",
    "label": "write label:KEY:VALUE with a Kubernetes label key and value (at most 63 "
    "characters of letters, digits, '-', '_' and '.')",
    "annotation": "write annotation:KEY:VALUE with a Kubernetes annotation key",
}


def _pod_tag_problem(kind: str, key: str, value: str) -> str | None:
    if kind == "limit":
        if not RESOURCE_NAME.match(key):
            return f"{key!r} is not a Kubernetes resource name"
        if not QUANTITY.match(value):
            return f"{value!r} is not a Kubernetes quantity"
        return None
    if not K8S_KEY.match(key):
        return f"{key!r} is not a Kubernetes {kind} key"
    if kind == "label" and not K8S_LABEL_VALUE.match(value):
        return f"{value!r} is not a Kubernetes label value"
    return None


def has_code(source: str) -> bool:
    """True when ``source`` holds more than comments and blank lines."""
    return any(line.strip() and not line.strip().startswith("#") for line in source.splitlines())


def steps_defaults(nb: Notebook) -> tuple[PodSettings, list[SplitWarning]]:
    """Kale's notebook-wide ``steps_defaults`` (tags applied to every step): the pod settings
    it holds, and a warning for each entry Jup2Kub has no counterpart for."""
    meta = (nb.node.get("metadata") or {}).get(NOTEBOOK_METADATA_KEY) or {}
    raw = meta.get("steps_defaults") if isinstance(meta, Mapping) else None
    defaults = KaleCell()
    notes = []
    where = f"{nb.path}: metadata {NOTEBOOK_METADATA_KEY}.steps_defaults"
    for tag in _default_tags(raw):
        if m := POD_TAG.match(tag):
            _pod_tag(defaults, tag, m.group(1), m.group(2), m.group(3), where)
        elif tag.startswith("secret:"):
            _secret_tag(defaults, tag, where)
        elif u := UNSUPPORTED_TAG.match(tag):
            notes.append(SplitWarning(None, unsupported_message(tag, u.group(1), "every step")))
    return defaults.pod, notes


def _default_tags(raw: Any) -> list[str]:
    """``steps_defaults`` as tags: Kale's UI writes a list of tags, its API a dict by kind."""
    if isinstance(raw, list):
        return [str(t) for t in raw]
    if not isinstance(raw, Mapping):
        return []
    kinds = {"limits": "limit", "labels": "label", "annotations": "annotation"}
    tags = [
        f"{kind}:{k}:{v}"
        for key, kind in kinds.items()
        if isinstance(raw.get(key), Mapping)
        for k, v in raw[key].items()
    ]
    secrets = raw.get("secrets")
    for env, ref in secrets.items() if isinstance(secrets, Mapping) else []:
        if isinstance(ref, Mapping):
            tags.append(f"secret:{ref.get('secret_name')}:{ref.get('secret_key')}:{env}")
    return tags


def unsupported_message(tag: str, kind: str, step: str) -> str:
    return f"tag {tag!r} (on {step}) is ignored: {UNSUPPORTED[kind]}"


def prelude_names(source: str, modules: frozenset[str] = frozenset()) -> set[str] | None:
    """The names a cell of Kale's imports/functions block binds, when re-running it at the start
    of every step is harmless: it only imports, defines functions and classes, assigns immutable
    literals, runs line magics and calls into imported modules (``np.random.seed(0)``: the
    analysis re-runs such calls in later steps anyway). ``modules``: names imported by earlier
    prelude cells. None when the cell does anything else."""
    tree = _parse(source)
    if tree is None:
        return None
    names: set[str] = set()
    imported = set(modules)
    for node in tree.body:
        if isinstance(node, (ast.Import, ast.ImportFrom)):
            bound = {(a.asname or a.name).split(".")[0] for a in node.names}
            names |= bound
            imported |= bound
        elif isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
            names.add(node.name)
        elif isinstance(node, ast.Assign) and _immutable(node.value):
            if not all(isinstance(t, ast.Name) for t in node.targets):
                return None
            names.update(t.id for t in node.targets if isinstance(t, ast.Name))
        elif isinstance(node, ast.Expr) and _harmless_expression(node.value, imported):
            continue
        elif not isinstance(node, ast.Pass):
            return None
    return names


def imported_names(source: str) -> set[str]:
    """The names the top-level imports of ``source`` bind."""
    tree = _parse(source)
    return {
        (a.asname or a.name).split(".")[0]
        for node in (tree.body if tree is not None else [])
        if isinstance(node, (ast.Import, ast.ImportFrom))
        for a in node.names
    }


def _harmless_expression(node: ast.expr, modules: set[str]) -> bool:
    """A docstring, a line magic, or a call on an imported module (its configuration)."""
    if isinstance(node, ast.Constant):
        return True
    magic = magic_call(node)
    if magic is not None:
        return magic[0] == "run_line_magic"
    root: ast.expr = node
    while isinstance(root, (ast.Call, ast.Attribute)):
        root = root.func if isinstance(root, ast.Call) else root.value
    return isinstance(node, ast.Call) and isinstance(root, ast.Name) and root.id in modules


def bindings(source: str) -> set[tuple[str, str]]:
    """Every name ``source`` may bind anywhere (more than it does: used to stay safe), with how:
    what an import binds (so importing the same module again is no new binding), or ''."""
    tree = _parse(source)
    if tree is None:
        return set()
    found: set[tuple[str, str]] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Name) and not isinstance(node.ctx, ast.Load):
            found.add((node.id, ""))
        elif isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
            found.add((node.name, ""))
        elif isinstance(node, (ast.Import, ast.ImportFrom)):
            found.update(_imported(node))
        elif isinstance(node, ast.Global):
            found.update((n, "") for n in node.names)
    return found


def _imported(node: ast.Import | ast.ImportFrom) -> set[tuple[str, str]]:
    if isinstance(node, ast.Import):
        return {
            (a.asname, f"import {a.name}") if a.asname else (a.name.split(".")[0], "import")
            for a in node.names
        }
    module = "." * node.level + (node.module or "")
    return {(a.asname or a.name, f"from {module} import {a.name}") for a in node.names}


def _parse(source: str) -> ast.Module | None:
    try:
        with warnings.catch_warnings():  # invalid escapes etc.: the analysis reports the cell
            warnings.simplefilter("ignore")
            return ast.parse(translate(source))
    except (SyntaxError, ValueError):
        return None


def _immutable(node: ast.expr) -> bool:
    try:
        value = ast.literal_eval(node)
    except (ValueError, TypeError, SyntaxError, MemoryError, RecursionError):
        return False
    return _frozen(value)


def _frozen(value: object) -> bool:
    if isinstance(value, tuple):
        return all(_frozen(v) for v in value)
    return value is None or isinstance(value, (bool, int, float, complex, str, bytes))


def literal_assignments(source: str) -> bool:
    """Kale's parameters grammar: only ``name = literal`` statements."""
    tree = _parse(source)
    if tree is None:
        return False
    for node in tree.body:
        if not (
            isinstance(node, ast.Assign)
            and len(node.targets) == 1
            and isinstance(node.targets[0], ast.Name)
        ):
            return False
        try:
            ast.literal_eval(node.value)
        except (ValueError, TypeError, SyntaxError, MemoryError, RecursionError):
            return False
    return True
