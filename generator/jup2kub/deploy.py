"""Install or upgrade a built chart on a cluster, and report how a release is doing.

Helm does the installing (through pyhelm3, the way users would run it); the Kubernetes API is
watched directly for readiness, because ``helm --wait`` counts a one-replica Deployment with
``maxUnavailable: 1`` as ready before its pod passes a single probe. Recent runs come from the
step pods' ``GET /runs`` through the API server's pod proxy: no port-forward, no Kafka client.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import os
import re
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import yaml

from jup2kub.chart import find_helm
from jup2kub.errors import InputError, Jup2KubError, UsageError

# pyhelm3 logs each failed helm command itself; the error we raise already says it all
logging.getLogger("pyhelm3").addHandler(logging.NullHandler())
logging.getLogger("pyhelm3").propagate = False

#: container states that will not get better by waiting
FATAL_WAITING = {
    "ErrImagePull": "the image cannot be pulled",
    "ImagePullBackOff": "the image cannot be pulled",
    "ErrImageNeverPull": "the image is not on the node and the pull policy is Never",
    "InvalidImageName": "the image name is invalid",
    "CreateContainerConfigError": "a ConfigMap, Secret or setting the container needs is wrong",
    "CreateContainerError": "the container cannot be created",
}
#: a crash-looping container is reported after this many restarts
CRASH_RESTARTS = 3
ROLE_LABEL = "jup2kub.io/role"
INSTANCE_LABEL = "app.kubernetes.io/instance"
COMPONENT_LABEL = "app.kubernetes.io/component"


class DeployError(Jup2KubError):
    """The release could not be installed or did not become ready."""


class ClusterError(Jup2KubError):
    """The cluster cannot be reached with the given kubeconfig/context, or its API refused.

    ``status`` and ``body`` are the API server's answer, when there was one."""

    def __init__(self, what: str, *, where: str | None = None, hint: str | None = None,
                 status: int | None = None, body: str | None = None) -> None:
        super().__init__(what, where=where, hint=hint)
        self.status = status
        self.body = body


class ValuesError(InputError):
    """A values file is unreadable, or the chart's schema rejects the values."""


@dataclass(frozen=True)
class KubeTarget:
    """Which cluster and namespace: like kubectl/helm, the current context by default."""

    kubeconfig: Path | None = None
    context: str | None = None
    namespace: str | None = None


# --------------------------------------------------------------------------- values


def merge_values(base: Mapping[str, Any], override: Mapping[str, Any]) -> dict[str, Any]:
    """Helm's ``-f a -f b`` semantics: maps merge deeply, lists and scalars are replaced, and
    ``null`` removes a key. (pyhelm3's own merge concatenates lists, which helm never does.)"""
    merged = dict(base)
    for key, value in override.items():
        if value is None:
            merged.pop(key, None)
        elif isinstance(value, Mapping) and isinstance(merged.get(key), Mapping):
            merged[key] = merge_values(merged[key], value)
        else:
            merged[key] = value
    return merged


def load_values(files: Sequence[Path]) -> dict[str, Any]:
    """Read and merge values files in order; a bad file is an input error naming it."""
    merged: dict[str, Any] = {}
    for path in files:
        try:
            data = yaml.safe_load(path.read_text())
        except OSError as exc:
            raise ValuesError(f"cannot read the values file: {exc.strerror or exc}",
                              where=str(path)) from exc
        except yaml.YAMLError as exc:
            mark = getattr(exc, "problem_mark", None)
            where = f"{path}, line {mark.line + 1}" if mark is not None else str(path)
            raise ValuesError(f"the values file is not valid YAML: "
                              f"{getattr(exc, 'problem', None) or exc}", where=where,
                              hint="fix the YAML syntax") from exc
        if data is None:
            continue
        if not isinstance(data, dict):
            raise ValuesError(f"a values file must hold a mapping, not {type(data).__name__}",
                              where=str(path), hint="write `key: value` pairs at the top level")
        merged = merge_values(merged, data)
    return merged


def _helm_message(exc: Exception) -> str:
    text = str(exc).strip()
    return "\n".join(line.removeprefix("Error: ") for line in text.splitlines() if line.strip())


def _classify_helm_error(exc: Exception, action: str, where: str) -> Jup2KubError:
    message = _helm_message(exc)
    if "cluster unreachable" in message or "connection refused" in message.lower():
        return ClusterError(f"helm {action}: the cluster cannot be reached: {message}",
                            where=where, hint="check --kubeconfig/--context and that the "
                            "cluster is up (`kubectl get nodes`)")
    if "values don't meet the specifications of the schema" in message:
        return ValuesError(f"the chart's values.schema.json rejects the values: {message}",
                           where=where, hint="fix the key or type named above in your values "
                           "file (see the chart's README for the keys); nothing was created")
    return DeployError(f"helm {action} failed: {message}", where=where)


# --------------------------------------------------------------------------- kubernetes


@dataclass
class Kube:
    """Typed handles on the Kubernetes API for one target."""

    api: Any  # kubernetes.client.ApiClient
    core: Any
    apps: Any
    namespace: str

    @classmethod
    def connect(cls, target: KubeTarget) -> Kube:
        from kubernetes import client, config
        from kubernetes.config.config_exception import ConfigException

        try:
            if target.kubeconfig is None and target.context is None and _in_cluster():
                config.load_incluster_config()  # type: ignore[no-untyped-call]
                api = client.ApiClient()
                namespace = target.namespace or _incluster_namespace()
            else:
                kubeconfig = str(target.kubeconfig) if target.kubeconfig else None
                api = config.new_client_from_config(  # type: ignore[no-untyped-call]
                    config_file=kubeconfig,
                    context=target.context)
                namespace = target.namespace or _context_namespace(kubeconfig, target.context)
        except (ConfigException, OSError, yaml.YAMLError) as exc:
            raise ClusterError(f"cannot load the kubeconfig: {exc}",
                               where=str(target.kubeconfig or "$KUBECONFIG / ~/.kube/config"),
                               hint="pass --kubeconfig/--context, or set KUBECONFIG") from exc
        return cls(api, client.CoreV1Api(api), client.AppsV1Api(api), namespace)

    def call(self, what: str, fn: Callable[..., Any], *args: Any, **kwargs: Any) -> Any:
        """Call the API; connection failures and denials become ClusterError."""
        from kubernetes.client.exceptions import ApiException
        from urllib3.exceptions import HTTPError

        try:
            return fn(*args, _request_timeout=30, **kwargs)
        except ApiException as exc:
            reason = exc.reason
            with contextlib.suppress(ValueError, AttributeError):
                reason = json.loads(exc.body or "{}").get("message") or reason
            raise ClusterError(f"{what}: the API server answered {exc.status}: {reason}",
                               where=f"namespace {self.namespace}",
                               hint="check your permissions and the namespace",
                               status=exc.status, body=exc.body) from exc
        except HTTPError as exc:
            raise ClusterError(f"{what}: the API server cannot be reached: {exc}",
                               hint="check --kubeconfig/--context and that the cluster is up"
                               ) from exc

    def selected(self, release: str) -> str:
        return f"{INSTANCE_LABEL}={release}"


def _in_cluster() -> bool:
    return bool(os.environ.get("KUBERNETES_SERVICE_HOST")) and not (
        os.environ.get("KUBECONFIG") or Path("~/.kube/config").expanduser().exists())


def _incluster_namespace() -> str:
    path = Path("/var/run/secrets/kubernetes.io/serviceaccount/namespace")
    return path.read_text().strip() if path.exists() else "default"


def _context_namespace(kubeconfig: str | None, context: str | None) -> str:
    from kubernetes import config

    contexts, active = config.list_kube_config_contexts(config_file=kubeconfig)  # type: ignore[no-untyped-call]
    chosen = next((c for c in contexts if c["name"] == context), None) if context else active
    ns = ((chosen or {}).get("context") or {}).get("namespace")
    return str(ns) if ns else "default"


# --------------------------------------------------------------------------- readiness


@dataclass
class Workload:
    kind: str
    name: str
    component: str
    desired: int
    ready: int
    updated: int
    current: bool  # the controller has seen the newest spec and rolled it out

    @property
    def is_ready(self) -> bool:
        return self.current and self.ready >= self.desired and self.updated >= self.desired


@dataclass
class PodInfo:
    name: str
    component: str
    phase: str
    ready: bool
    restarts: int
    node: str | None
    reason: str | None  # why it is not ready, when known
    message: str | None = None
    fatal: bool = False
    port: int | None = None
    created: float | None = None


def _workloads(kube: Kube, release: str) -> list[Workload]:
    found: list[Workload] = []
    deployments = kube.call("list deployments", kube.apps.list_namespaced_deployment,
                            kube.namespace, label_selector=kube.selected(release)).items
    for d in deployments:
        st = d.status
        desired = d.spec.replicas if d.spec.replicas is not None else 1
        found.append(Workload(
            "Deployment", d.metadata.name, (d.metadata.labels or {}).get(COMPONENT_LABEL, ""),
            desired, st.ready_replicas or 0, st.updated_replicas or 0, _deployment_current(d)))
    statefulsets = kube.call("list statefulsets", kube.apps.list_namespaced_stateful_set,
                             kube.namespace, label_selector=kube.selected(release)).items
    for s in statefulsets:
        st = s.status
        desired = s.spec.replicas if s.spec.replicas is not None else 1
        current = ((st.observed_generation or 0) >= (s.metadata.generation or 0)
                   and (st.update_revision is None or st.current_revision == st.update_revision
                        or (st.updated_replicas or 0) >= desired))
        found.append(Workload("StatefulSet", s.metadata.name,
                              (s.metadata.labels or {}).get(COMPONENT_LABEL, ""), desired,
                              st.ready_replicas or 0, st.updated_replicas or 0, current))
    return sorted(found, key=lambda w: (w.kind != "StatefulSet", w.name))


def _pods(kube: Kube, release: str) -> list[PodInfo]:
    pods = kube.call("list pods", kube.core.list_namespaced_pod, kube.namespace,
                     label_selector=kube.selected(release)).items
    found = []
    for p in pods:
        labels = p.metadata.labels or {}
        if "job-name" in labels or "batch.kubernetes.io/job-name" in labels:
            continue  # the topics hook Job: helm itself waits for it
        statuses = p.status.container_statuses or []
        ready = bool(statuses) and all(c.ready for c in statuses)
        reason = message = None
        fatal = False
        for c in statuses:
            waiting = c.state.waiting if c.state else None
            if waiting is not None and waiting.reason:
                reason, message = waiting.reason, waiting.message
                fatal = waiting.reason in FATAL_WAITING or (
                    waiting.reason == "CrashLoopBackOff" and c.restart_count >= CRASH_RESTARTS)
                if fatal and waiting.reason == "CrashLoopBackOff":
                    last = c.last_state.terminated if c.last_state else None
                    if last is not None:
                        message = (f"exit code {last.exit_code}"
                                   + (f": {last.message.strip()}" if last.message else ""))
                break
        if reason is None and not ready:
            for cond in p.status.conditions or []:
                if cond.type in ("PodScheduled", "Ready") and cond.status != "True":
                    reason, message = cond.reason or f"{cond.type}=False", cond.message
                    break
        port = None
        for container in p.spec.containers:
            for cp in container.ports or []:
                if cp.name == "http":
                    port = cp.container_port
        created = p.metadata.creation_timestamp
        found.append(PodInfo(
            p.metadata.name, labels.get(COMPONENT_LABEL, ""), p.status.phase or "Unknown",
            ready, sum(c.restart_count for c in statuses), p.spec.node_name, reason, message,
            fatal, port, created.timestamp() if created else None))
    return sorted(found, key=lambda p: (p.component, p.name))


def _deployment_current(d: Any) -> bool:
    st = d.status
    desired = d.spec.replicas if d.spec.replicas is not None else 1
    return ((st.observed_generation or 0) >= (d.metadata.generation or 0)
            and (st.updated_replicas or 0) >= desired and (st.replicas or 0) <= desired)


@dataclass
class Readiness:
    workloads: list[Workload]
    pods: list[PodInfo]

    @property
    def ready(self) -> bool:
        return bool(self.workloads) and all(w.is_ready for w in self.workloads)

    def summary(self) -> str:
        done = sum(w.is_ready for w in self.workloads)
        waiting = [f"{w.name} {w.ready}/{w.desired}" for w in self.workloads if not w.is_ready]
        text = f"{done}/{len(self.workloads)} workloads ready"
        return text + (f"; waiting for {', '.join(waiting)}" if waiting else "")


def readiness(kube: Kube, release: str) -> Readiness:
    return Readiness(_workloads(kube, release), _pods(kube, release))


def wait_ready(kube: Kube, release: str, timeout: float,
               on_progress: Callable[[Readiness], None] | None = None,
               poll: float = 2.0) -> Readiness:
    """Wait until every Deployment and StatefulSet of the release is rolled out and Ready
    through its probes; fail early on a state that waiting cannot fix (image, config, crash)."""
    deadline = time.monotonic() + timeout
    while True:
        state = readiness(kube, release)
        if on_progress is not None:
            on_progress(state)
        if state.ready:
            return state
        broken = [p for p in state.pods if p.fatal]
        if broken:
            p = broken[0]
            explain = FATAL_WAITING.get(p.reason or "", "the container keeps crashing")
            raise DeployError(
                f"pod {p.name} (step {p.component or '?'}) is {p.reason}: {explain}"
                + (f" ({p.message})" if p.message else ""),
                where=f"namespace {kube.namespace}, release {release}",
                hint=("load or push the step images the chart names (values.yaml "
                      "steps.<name>.image), then run deploy again"
                      if "Image" in (p.reason or "") else
                      f"see `kubectl -n {kube.namespace} logs {p.name} --previous`"))
        if time.monotonic() >= deadline:
            lines = [f"{p.name}: {p.phase}, {p.reason or 'not ready'}"
                     + (f" ({p.message})" if p.message else "")
                     for p in state.pods if not p.ready]
            raise DeployError(
                f"the release did not become ready within {timeout:g} s: {state.summary()}"
                + ("\n" + "\n".join(lines) if lines else ""),
                where=f"namespace {kube.namespace}, release {release}",
                hint=f"inspect with `kubectl -n {kube.namespace} describe pods -l "
                     f"{INSTANCE_LABEL}={release}`, or raise --timeout")
        time.sleep(poll)


# --------------------------------------------------------------------------- deploy


@dataclass
class DeployResult:
    release: str
    namespace: str
    revision: int
    status: str
    readiness: Readiness | None


_DURATION = re.compile(r"^(?:(\d+)h)?(?:(\d+)m)?(?:(\d+(?:\.\d+)?)s?)?$")


def parse_duration(text: str) -> float:
    """'15m', '1h30m', '90s', '90' -> seconds (helm's duration style)."""
    m = _DURATION.match(text.strip())
    if not text.strip() or m is None or not any(m.groups()):
        raise UsageError(f"invalid duration {text!r}", hint="use e.g. 90s, 15m or 1h")
    h, mnt, s = m.groups()
    return int(h or 0) * 3600 + int(mnt or 0) * 60 + float(s or 0)


def _helm_client(target: KubeTarget, timeout: float) -> Any:
    from pyhelm3 import Client

    return Client(executable=find_helm(), kubeconfig=target.kubeconfig,
                  kubecontext=target.context, default_timeout=f"{int(timeout)}s")


def deploy(
    chart: Path,
    release: str,
    values_files: Sequence[Path] = (),
    target: KubeTarget = KubeTarget(),
    *,
    timeout: float = 900.0,
    wait: bool = True,
    on_progress: Callable[[str], None] | None = None,
    on_readiness: Callable[[Readiness], None] | None = None,
) -> DeployResult:
    """``helm upgrade --install`` CHART as RELEASE, then wait for every pod's readiness.

    The values are checked against the chart's schema by a client-side render first, so a
    typo is rejected before anything is created on the cluster.
    """
    from pyhelm3 import errors as helm_errors

    say = on_progress or (lambda _msg: None)
    if not re.match(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$", release) or len(release) > 53:
        raise UsageError(f"invalid release name {release!r}",
                         hint="use at most 53 lowercase letters, digits and '-', "
                              "starting and ending with a letter or digit")
    if not chart.exists():
        raise UsageError("the chart does not exist", where=str(chart),
                         hint="pass the OUT directory of `jup2kub build` (or a packaged .tgz)")
    if chart.is_dir() and not (chart / "Chart.yaml").is_file():
        raise UsageError("not a Helm chart directory (no Chart.yaml)", where=str(chart),
                         hint="pass the OUT directory of `jup2kub build`")
    values = load_values(values_files)
    kube = Kube.connect(target)
    client = _helm_client(target, timeout)
    where = f"release {release}, namespace {kube.namespace}"

    async def install() -> Any:
        helm_chart = await client.get_chart(chart.absolute())
        say("checking the values against the chart's schema (helm template)")
        await client.template_resources(helm_chart, release, values, namespace=kube.namespace)
        say(f"helm upgrade --install {release} (namespace {kube.namespace})")
        return await client.install_or_upgrade_release(
            release, helm_chart, values, namespace=kube.namespace, create_namespace=True,
            timeout=f"{int(timeout)}s", wait=False)

    try:
        revision = asyncio.run(install())
    except helm_errors.Error as exc:
        raise _classify_helm_error(exc, "upgrade --install", where) from exc
    state = None
    if wait:
        say("waiting for Kafka and every step to pass its readiness probe")
        state = wait_ready(kube, release, timeout, on_readiness)
    return DeployResult(release, kube.namespace, int(revision.revision),
                        str(getattr(revision.status, "value", revision.status)), state)


# --------------------------------------------------------------------------- status


@dataclass
class RunRow:
    run_id: str
    state: str
    steps: dict[str, dict[str, Any]] = field(default_factory=dict)
    submitted_at: float | None = None


@dataclass
class ReleaseStatus:
    release: str
    namespace: str
    revision: int | None
    helm_status: str | None
    chart: str | None
    readiness: Readiness
    runs: list[RunRow]
    run_errors: dict[str, str]  # step -> why its runs could not be read

    def to_json(self) -> dict[str, Any]:
        return {"release": self.release, "namespace": self.namespace,
                "revision": self.revision, "status": self.helm_status, "chart": self.chart,
                "ready": self.readiness.ready,
                "workloads": [asdict(w) | {"is_ready": w.is_ready}
                              for w in self.readiness.workloads],
                "pods": [asdict(p) for p in self.readiness.pods],
                "runs": [asdict(r) for r in self.runs], "run_errors": self.run_errors}


def _overall(states: list[str], n_steps: int) -> str:
    if "failed" in states:
        return "failed"
    if len(states) == n_steps and all(s == "succeeded" for s in states):
        return "succeeded"
    if any(s in ("running", "succeeded") for s in states):
        return "running"
    return "pending"


def _pod_get(kube: Kube, pod: PodInfo, path: str) -> tuple[int, Any]:
    """GET a step pod's HTTP endpoint through the API server's pod proxy: (status, JSON).
    The endpoint's own 400/404 answers are returned, not raised."""
    try:
        response = kube.call(f"GET /{path} from pod {pod.name}",
                             kube.core.connect_get_namespaced_pod_proxy_with_path,
                             f"{pod.name}:{pod.port}", kube.namespace, path,
                             _preload_content=False)
        return 200, json.loads(response.data)
    except ClusterError as exc:
        if exc.status in (400, 404):
            with contextlib.suppress(ValueError):
                return exc.status, json.loads(exc.body or "{}")
        raise


def _pod_runs(kube: Kube, pod: PodInfo, limit: int) -> list[dict[str, Any]]:
    _, body = _pod_get(kube, pod, f"runs/{limit}")
    runs = body.get("runs")
    if not isinstance(runs, list):
        raise ValueError(f"unexpected answer from {pod.name}: {body!r:.200}")
    return [r for r in runs if isinstance(r, dict) and isinstance(r.get("run_id"), str)]


def recent_runs(kube: Kube, state: Readiness, limit: int) -> tuple[list[RunRow], dict[str, str]]:
    """Join every step's ``/runs`` (one ready pod per step) into one row per run."""
    steps = sorted({w.component for w in state.workloads if w.kind == "Deployment"})
    rows: dict[str, RunRow] = {}
    errors: dict[str, str] = {}
    for step in steps:
        pods = [p for p in state.pods if p.component == step and p.ready and p.port]
        if not pods:
            errors[step] = "no ready pod to ask"
            continue
        answers: dict[str, dict[str, Any]] = {}
        for pod in pods:
            try:
                for r in _pod_runs(kube, pod, limit):
                    known = answers.get(r["run_id"])
                    # another replica may be the one executing it right now
                    if known is None or r.get("state") == "running":
                        answers[r["run_id"]] = r
            except (ClusterError, ValueError) as exc:
                errors[step] = str(exc)
        for run_id, r in answers.items():
            row = rows.setdefault(run_id, RunRow(run_id, "pending"))
            row.steps[step] = {k: v for k, v in r.items() if k != "run_id"}
            if isinstance(r.get("submitted_at"), (int, float)):
                row.submitted_at = r["submitted_at"]
    for row in rows.values():
        row.state = _overall([s.get("state", "pending") for s in row.steps.values()], len(steps))
    ordered = sorted(rows.values(), key=lambda r: (r.submitted_at or 0.0, r.run_id),
                     reverse=True)
    return ordered[:limit], errors


def release_status(release: str, target: KubeTarget = KubeTarget(), *, runs: int = 10
                   ) -> ReleaseStatus:
    """Pods, readiness and recent runs of RELEASE, read through the Kubernetes API."""
    from pyhelm3 import errors as helm_errors

    kube = Kube.connect(target)
    async def helm_status() -> tuple[int, str, str]:
        current = await _helm_client(target, 60).get_current_revision(
            release, namespace=kube.namespace)
        meta = await current.chart_metadata()
        return (int(current.revision), str(getattr(current.status, "value", current.status)),
                f"{meta.name}-{meta.version}")

    try:
        revision, status, chart = asyncio.run(helm_status())
    except helm_errors.ReleaseNotFoundError as exc:
        raise InputError(f"release {release!r} not found", where=f"namespace {kube.namespace}",
                         hint="check the name and -n/--namespace (`helm list -A`)") from exc
    except helm_errors.Error as exc:
        raise _classify_helm_error(exc, "status", f"release {release}") from exc
    state = readiness(kube, release)
    rows, errors = recent_runs(kube, state, runs) if runs > 0 else ([], {})
    return ReleaseStatus(release, kube.namespace, revision, status, chart, state, rows, errors)


# --------------------------------------------------------------------------- results


@dataclass
class RemoteRun:
    """One run's outputs as a release's step pods serve them (``GET /runs/<id>/outputs``).

    Reads like the state store where a results notebook is assembled (run_info, outputs,
    is_complete), so ``jup2kub results --release`` needs no access to the volume.
    """

    run_id: str
    parameters: dict[str, Any]
    docs: dict[str, dict[str, Any]]  # step -> the pod's answer

    def run_info(self, run_id: str) -> dict[str, Any] | None:
        return {"run_id": run_id, "parameters": self.parameters}

    def outputs(self, run_id: str, step: str) -> Any:
        return self.docs.get(step, {}).get("outputs")

    def is_complete(self, run_id: str, step: str) -> bool:
        return (self.docs.get(step, {}).get("status") or {}).get("state") == "succeeded"


def fetch_run(release: str, run_id: str, steps: Sequence[str],
              target: KubeTarget = KubeTarget()) -> RemoteRun:
    """Collect RUN_ID's outputs from one ready pod of each of STEPS in RELEASE."""
    kube = Kube.connect(target)
    state = readiness(kube, release)
    where = f"release {release}, namespace {kube.namespace}"
    deployed = sorted({w.component for w in state.workloads if w.kind == "Deployment"})
    if not deployed:
        raise InputError(f"release {release!r} has no step Deployments", where=where,
                         hint="check the name and -n/--namespace (`helm list -A`)")
    if sorted(steps) != deployed:
        raise InputError(f"the notebook's steps {sorted(steps)} are not the release's steps "
                         f"{deployed}", where=where,
                         hint="pass the notebook (and --split) the release was built from")
    docs: dict[str, dict[str, Any]] = {}
    parameters: dict[str, Any] = {}
    for step in steps:
        pods = [p for p in state.pods if p.component == step and p.ready and p.port]
        if not pods:
            raise DeployError(f"step {step} has no ready pod to read run {run_id} from",
                              where=where, hint=f"see `jup2kub status --release {release}`")
        status, body = _pod_get(kube, pods[0], f"runs/{run_id}/outputs")
        if status == 400:
            raise InputError(f"invalid run id {run_id!r}: {body.get('error')}",
                             hint="pass the id `jup2kub submit` printed")
        if status == 200 and isinstance(body, dict):
            docs[step] = body
            if isinstance(body.get("parameters"), dict) and body["parameters"]:
                parameters = body["parameters"]
    if not docs:
        raise InputError(f"there is no run {run_id!r}", where=where,
                         hint=f"list recent runs with `jup2kub status --release {release}`")
    return RemoteRun(run_id, parameters, docs)
