"""Reading a step pod's HTTP endpoints through the API server's pod proxy (no port-forward),
and a run's outputs from one ready pod of each step (``jup2kub results --release``)."""

from __future__ import annotations

import contextlib
import json
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

from jup2kub.cluster.kube import Kube, KubeTarget
from jup2kub.cluster.readiness import PodInfo, Readiness, readiness
from jup2kub.errors import ClusterError, DeployError, InputError
from jup2kub_runtime.contract.states import StepState


def _proxy_get(kube: Kube, pod: PodInfo, path: str) -> Any:
    """GET a step pod's HTTP endpoint through the API server's pod proxy: the raw response;
    any answer but 200 is a ClusterError."""
    return kube.call(
        f"GET /{path} from pod {pod.name}",
        kube.core.connect_get_namespaced_pod_proxy_with_path,
        f"{pod.name}:{pod.port}",
        kube.namespace,
        path,
        _preload_content=False,
    )


def pod_get(kube: Kube, pod: PodInfo, path: str) -> tuple[int, Any]:
    """GET a step pod's HTTP endpoint through the API server's pod proxy: (status, JSON).
    The endpoint's own 400/404 answers are returned, not raised."""
    try:
        return 200, json.loads(_proxy_get(kube, pod, path).data)
    except ClusterError as exc:
        if exc.status in (400, 404):
            with contextlib.suppress(ValueError):
                return exc.status, json.loads(exc.body or "{}")
        raise


def pod_text(kube: Kube, pod: PodInfo, path: str) -> str:
    """GET a step pod's HTTP endpoint that answers in text (``/metrics``) through the pod
    proxy; any answer but 200 is a ClusterError."""
    return bytes(_proxy_get(kube, pod, path).data).decode("utf-8", errors="replace")


@dataclass
class RemoteRun:
    """One run's outputs as a release's step pods serve them (``GET /runs/<id>/outputs``).

    Reads like the state store where a results notebook is assembled (run_info, outputs,
    is_complete), so ``jup2kub results --release`` needs no access to the volume.
    """

    run_id: str
    parameters: dict[str, Any]
    docs: dict[str, dict[str, Any]]  # step -> the pod's answer
    #: step -> (image, digest) of the pod that answered (for the run's RO-Crate)
    images: dict[str, tuple[str, str | None]] = field(default_factory=dict)

    def run_info(self, run_id: str) -> dict[str, Any] | None:
        return {"run_id": run_id, "parameters": self.parameters}

    def outputs(self, run_id: str, step: str) -> Any:
        return self.docs.get(step, {}).get("outputs")

    def is_complete(self, run_id: str, step: str) -> bool:
        return (self.docs.get(step, {}).get("status") or {}).get("state") == StepState.SUCCEEDED


def fetch_run(
    release: str,
    run_id: str,
    steps: Sequence[str],
    target: KubeTarget = KubeTarget(),
    timeout: float = 60.0,
) -> RemoteRun:
    """Collect RUN_ID's outputs from one ready pod of each of STEPS in RELEASE, waiting up to
    ``timeout`` s for a step whose pods are not ready (just replaced, as `kubectl wait`)."""
    kube = Kube.connect(target)
    state = readiness(kube, release)
    where = f"release {release}, namespace {kube.namespace}"
    deployed = sorted({w.component for w in state.workloads if w.kind == "Deployment"})
    if not deployed:
        raise InputError(
            f"release {release!r} has no step Deployments",
            where=where,
            hint="check the name and -n/--namespace (`helm list -A`)",
        )
    if sorted(steps) != deployed:
        raise InputError(
            f"the notebook's steps {sorted(steps)} are not the release's steps {deployed}",
            where=where,
            hint="pass the notebook (and --split) the release was built from",
        )
    state = _ready_pods(kube, release, state, steps, timeout, f"to read run {run_id} from")
    docs: dict[str, dict[str, Any]] = {}
    parameters: dict[str, Any] = {}
    images: dict[str, tuple[str, str | None]] = {}
    for step in steps:
        pods = [p for p in state.pods if p.component == step and p.ready and p.port]
        if pods[0].image:
            images[step] = (pods[0].image, pods[0].image_digest)
        status, body = pod_get(kube, pods[0], f"runs/{run_id}/outputs")
        if status == 400:
            raise InputError(
                f"invalid run id {run_id!r}: {body.get('error')}",
                hint="pass the id `jup2kub submit` printed",
            )
        if status == 200 and isinstance(body, dict):
            docs[step] = body
            if isinstance(body.get("parameters"), dict) and body["parameters"]:
                parameters = body["parameters"]
    if not docs:
        raise InputError(
            f"there is no run {run_id!r}",
            where=where,
            hint=f"list recent runs with `jup2kub status --release {release}`",
        )
    return RemoteRun(run_id, parameters, docs, images)


def _unready(state: Readiness, steps: Sequence[str]) -> list[str]:
    ready = {p.component for p in state.pods if p.ready and p.port}
    return [s for s in steps if s not in ready]


def _ready_pods(
    kube: Kube,
    release: str,
    state: Readiness,
    steps: Sequence[str],
    timeout: float,
    purpose: str,
) -> Readiness:
    """``state`` once every step has a ready pod (re-read while some have none, up to
    ``timeout`` s), else an error naming the steps still without one."""
    state, missing = await_ready_pods(state, lambda: readiness(kube, release), steps, timeout)
    if missing:
        raise DeployError(
            f"step{'s' if len(missing) > 1 else ''} {', '.join(missing)} "
            f"{'have' if len(missing) > 1 else 'has'} no ready pod {purpose} "
            f"(waited {timeout:.0f} s)",
            where=f"release {release}, namespace {kube.namespace}",
            hint=f"see `jup2kub status --release {release}`; wait longer with --timeout",
        )
    return state


def await_ready_pods(
    state: Readiness,
    read: Callable[[], Readiness],
    steps: Sequence[str],
    timeout: float,
    poll: float = 1.0,
) -> tuple[Readiness, list[str]]:
    """Re-``read`` every ``poll`` s until each of ``steps`` has a ready pod or ``timeout`` s
    have passed: the last state and the steps still without a ready pod."""
    deadline = time.monotonic() + timeout
    while (missing := _unready(state, steps)) and time.monotonic() < deadline:
        time.sleep(min(poll, max(0.0, deadline - time.monotonic())))
        state = read()
    return state, missing
