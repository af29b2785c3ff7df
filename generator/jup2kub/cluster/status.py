"""``jup2kub status --release``: helm's view of a release, its pods' readiness, and its
recent runs joined from every step pod's ``GET /runs`` (through the API server's pod proxy)."""

from __future__ import annotations

import asyncio
from dataclasses import asdict, dataclass
from typing import Any

from jup2kub import helm
from jup2kub.activity import RunRow
from jup2kub.cluster.kube import Kube, KubeTarget
from jup2kub.cluster.pods import pod_get
from jup2kub.cluster.readiness import PodInfo, Readiness, readiness
from jup2kub.errors import ClusterError, InputError
from jup2kub_runtime.contract.states import StepState


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
        return {
            "release": self.release,
            "namespace": self.namespace,
            "revision": self.revision,
            "status": self.helm_status,
            "chart": self.chart,
            "ready": self.readiness.ready,
            "workloads": [asdict(w) | {"is_ready": w.is_ready} for w in self.readiness.workloads],
            "pods": [asdict(p) for p in self.readiness.pods],
            "runs": [asdict(r) for r in self.runs],
            "run_errors": self.run_errors,
        }


def _overall(states: list[str], n_steps: int) -> str:
    if StepState.FAILED in states:
        return StepState.FAILED.value
    if len(states) == n_steps and all(s == StepState.SUCCEEDED for s in states):
        return StepState.SUCCEEDED.value
    if any(s in (StepState.RUNNING, StepState.SUCCEEDED) for s in states):
        return StepState.RUNNING.value
    return StepState.PENDING.value


def _pod_runs(kube: Kube, pod: PodInfo, limit: int) -> list[dict[str, Any]]:
    _, body = pod_get(kube, pod, f"runs/{limit}")
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
                    if known is None or r.get("state") == StepState.RUNNING:
                        answers[r["run_id"]] = r
            except (ClusterError, ValueError) as exc:
                errors[step] = str(exc)
        for run_id, r in answers.items():
            row = rows.setdefault(run_id, RunRow(run_id, StepState.PENDING.value))
            row.steps[step] = {k: v for k, v in r.items() if k != "run_id"}
            if isinstance(r.get("submitted_at"), (int, float)):
                row.submitted_at = r["submitted_at"]
    for row in rows.values():
        row.state = _overall(
            [s.get("state", StepState.PENDING.value) for s in row.steps.values()], len(steps)
        )
    ordered = sorted(rows.values(), key=lambda r: (r.submitted_at or 0.0, r.run_id), reverse=True)
    return ordered[:limit], errors


def release_status(
    release: str, target: KubeTarget = KubeTarget(), *, runs: int = 10
) -> ReleaseStatus:
    """Pods, readiness and recent runs of RELEASE, read through the Kubernetes API."""
    from pyhelm3 import errors as helm_errors  # pyhelm3: only deploy and status load it

    kube = Kube.connect(target)

    async def helm_status() -> tuple[int, str, str]:
        current = await helm.client(target.kubeconfig, target.context, 60).get_current_revision(
            release, namespace=kube.namespace
        )
        meta = await current.chart_metadata()
        return (
            int(current.revision),
            str(getattr(current.status, "value", current.status)),
            f"{meta.name}-{meta.version}",
        )

    try:
        revision, status, chart = asyncio.run(helm_status())
    except helm_errors.ReleaseNotFoundError as exc:
        raise InputError(
            f"release {release!r} not found",
            where=f"namespace {kube.namespace}",
            hint="check the name and -n/--namespace (`helm list -A`)",
        ) from exc
    except helm_errors.Error as exc:
        raise helm.failure(exc, "status", f"release {release}") from exc
    state = readiness(kube, release)
    rows, errors = recent_runs(kube, state, runs) if runs > 0 else ([], {})
    return ReleaseStatus(release, kube.namespace, revision, status, chart, state, rows, errors)
