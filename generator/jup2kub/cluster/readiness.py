"""Readiness of a release's workloads and pods, read from the Kubernetes API, and the wait
for it: like ``kubectl rollout status``, since ``helm --wait`` counts a one-replica Deployment
with ``maxUnavailable: 1`` as ready before its pod passes a single probe. A pod that waiting
cannot fix (image not pullable, bad config, crash loop) ends the wait at once."""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from jup2kub.cluster.kube import COMPONENT_LABEL, INSTANCE_LABEL, Kube
from jup2kub.errors import DeployError

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
    #: the step container's image as the pod names it, and the digest it runs (its status's
    #: imageID: ``repo@sha256:...``, or the image's own ``sha256:...`` id for a loaded image)
    image: str | None = None
    image_digest: str | None = None


def _workloads(kube: Kube, release: str) -> list[Workload]:
    kinds = (
        (
            "Deployment",
            "list deployments",
            kube.apps.list_namespaced_deployment,
            _deployment_current,
        ),
        (
            "StatefulSet",
            "list statefulsets",
            kube.apps.list_namespaced_stateful_set,
            _statefulset_current,
        ),
    )
    found: list[Workload] = []
    for kind, what, list_them, current in kinds:
        items = kube.call(what, list_them, kube.namespace, label_selector=kube.selected(release))
        for w in items.items:
            found.append(
                Workload(
                    kind,
                    w.metadata.name,
                    (w.metadata.labels or {}).get(COMPONENT_LABEL, ""),
                    _desired(w),
                    w.status.ready_replicas or 0,
                    w.status.updated_replicas or 0,
                    current(w),
                )
            )
    return sorted(found, key=lambda w: (w.kind != "StatefulSet", w.name))


def _pods(kube: Kube, release: str) -> list[PodInfo]:
    pods = kube.call(
        "list pods",
        kube.core.list_namespaced_pod,
        kube.namespace,
        label_selector=kube.selected(release),
    ).items
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
                    waiting.reason == "CrashLoopBackOff" and c.restart_count >= CRASH_RESTARTS
                )
                if fatal and waiting.reason == "CrashLoopBackOff":
                    last = c.last_state.terminated if c.last_state else None
                    if last is not None:
                        message = f"exit code {last.exit_code}" + (
                            f": {last.message.strip()}" if last.message else ""
                        )
                break
        if reason is None and not ready:
            for cond in p.status.conditions or []:
                if cond.type in ("PodScheduled", "Ready") and cond.status != "True":
                    reason, message = cond.reason or f"{cond.type}=False", cond.message
                    break
        port, image = None, None
        for container in p.spec.containers:
            for cp in container.ports or []:
                if cp.name == "http":
                    port, image = cp.container_port, container
        digest = _image_digest(statuses, image.name if image is not None else None)
        created = p.metadata.creation_timestamp
        found.append(
            PodInfo(
                p.metadata.name,
                labels.get(COMPONENT_LABEL, ""),
                p.status.phase or "Unknown",
                ready,
                sum(c.restart_count for c in statuses),
                p.spec.node_name,
                reason,
                message,
                fatal,
                port,
                created.timestamp() if created else None,
                image.image if image is not None else None,
                digest,
            )
        )
    return sorted(found, key=lambda p: (p.component, p.name))


def _image_digest(statuses: list[Any], container: str | None) -> str | None:
    """``sha256:...`` of what the named container runs, from its status's imageID
    (``docker-pullable://repo@sha256:...``, ``repo@sha256:...`` or ``sha256:...``)."""
    for c in statuses:
        if c.name == container and c.image_id:
            digest = str(c.image_id).rpartition("@")[2]
            return digest if digest.startswith("sha256:") else None
    return None


def _desired(workload: Any) -> int:
    """The replicas a Deployment or StatefulSet asks for (1 when unset)."""
    replicas = workload.spec.replicas
    return int(replicas) if replicas is not None else 1


def _deployment_current(d: Any) -> bool:
    """The controller has seen the newest spec and replaced every old pod."""
    st = d.status
    desired = _desired(d)
    return (
        (st.observed_generation or 0) >= (d.metadata.generation or 0)
        and (st.updated_replicas or 0) >= desired
        and (st.replicas or 0) <= desired
    )


def _statefulset_current(s: Any) -> bool:
    """The controller has seen the newest spec and rolled it out to every pod."""
    st = s.status
    return (st.observed_generation or 0) >= (s.metadata.generation or 0) and (
        st.update_revision is None
        or st.current_revision == st.update_revision
        or (st.updated_replicas or 0) >= _desired(s)
    )


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


def wait_ready(
    kube: Kube,
    release: str,
    timeout: float,
    on_progress: Callable[[Readiness], None] | None = None,
    poll: float = 2.0,
) -> Readiness:
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
                hint=(
                    "load or push the step images the chart names (values.yaml "
                    "steps.<name>.image), then run deploy again"
                    if "Image" in (p.reason or "")
                    else f"see `kubectl -n {kube.namespace} logs {p.name} --previous`"
                ),
            )
        if time.monotonic() >= deadline:
            lines = [
                f"{p.name}: {p.phase}, {p.reason or 'not ready'}"
                + (f" ({p.message})" if p.message else "")
                for p in state.pods
                if not p.ready
            ]
            raise DeployError(
                f"the release did not become ready within {timeout:g} s: {state.summary()}"
                + ("\n" + "\n".join(lines) if lines else ""),
                where=f"namespace {kube.namespace}, release {release}",
                hint=f"inspect with `kubectl -n {kube.namespace} describe pods -l "
                f"{INSTANCE_LABEL}={release}`, or raise --timeout",
            )
        time.sleep(poll)
