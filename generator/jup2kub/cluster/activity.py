"""``jup2kub status --release NAME --watch``: what a release's steps do, read through the
Kubernetes API alone (no port-forward, no access to Kafka).

Per step:

- replicas: the Deployment's ready and desired replicas;
- runs in flight, done, failed, lag, p50/p95: every running step pod's ``/metrics`` through the
  API server's pod proxy, summed over the step's replicas (``j2k_busy``,
  ``j2k_step_executions_total`` by outcome, ``j2k_consumer_lag``, and the buckets of
  ``j2k_step_execution_seconds`` added up, the quantiles estimated from them as Prometheus's
  ``histogram_quantile`` does). The status topic, which a Kafka watch reads, is out of reach
  here (the brokers advertise in-cluster names); the metrics are what each replica measured
  itself. Their counts are since each pod started: a replaced pod's executions are no longer
  in them (Prometheus keeps those, with its ``increase()``).

The runs ``--until-done`` waits for, and those the JupyterLab panel's Runs view lists, are the
release's recent runs (``GET /runs`` of every step, as ``status --release`` shows them).
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable
from dataclasses import dataclass, field

from jup2kub.activity import (
    PipelineStatus,
    RecentRuns,
    RunCounts,
    StepStatus,
    histogram_quantile,
)
from jup2kub.cluster.kube import Kube, KubeTarget
from jup2kub.cluster.pods import pod_text
from jup2kub.cluster.readiness import Readiness, readiness
from jup2kub.cluster.status import recent_runs
from jup2kub.errors import ClusterError, InputError
from jup2kub_runtime.contract.metrics import (
    BUSY,
    CONSUMER_LAG,
    EXECUTION_SECONDS,
    EXECUTIONS,
    ExecutionOutcome,
)
from jup2kub_runtime.contract.states import StepState


@dataclass
class StepMetrics:
    """One step's metrics, summed over the replicas that answered."""

    busy: float = 0.0
    lag: float | None = None
    outcomes: dict[str, float] = field(default_factory=lambda: defaultdict(float))
    buckets: dict[float, float] = field(default_factory=lambda: defaultdict(float))

    def add(self, exposition: str) -> None:
        """Add one replica's ``/metrics`` text (the Prometheus text format)."""
        from prometheus_client.parser import text_string_to_metric_families

        for family in text_string_to_metric_families(exposition):
            for sample in family.samples:
                if sample.name == BUSY.name:
                    self.busy += sample.value
                elif sample.name == CONSUMER_LAG.name:
                    self.lag = (self.lag or 0.0) + sample.value
                elif sample.name == EXECUTIONS.name:
                    self.outcomes[sample.labels.get("outcome", "")] += sample.value
                elif sample.name == f"{EXECUTION_SECONDS.name}_bucket":
                    self.buckets[float(sample.labels["le"])] += sample.value

    def row(self, step: str, ready: int | None, desired: int | None) -> StepStatus:
        buckets = sorted(self.buckets.items())
        return StepStatus(
            step=step,
            ready=ready,
            desired=desired,
            in_flight=int(self.busy),
            done=int(self.outcomes.get(ExecutionOutcome.SUCCEEDED.value, 0)),
            failed=int(self.outcomes.get(ExecutionOutcome.FAILED.value, 0)),
            lag=int(self.lag) if self.lag is not None else None,
            p50=histogram_quantile(buckets, 0.5),
            p95=histogram_quantile(buckets, 0.95),
        )


def replica_counts(state: Readiness) -> dict[str, tuple[int, int]]:
    """Each step's ready and desired replicas, from its Deployment."""
    return {
        w.component: (w.ready, w.desired)
        for w in state.workloads
        if w.kind == "Deployment" and w.component
    }


class ReleaseActivity:
    """A release's steps, read again at every ``snapshot()``."""

    def __init__(self, release: str, target: KubeTarget = KubeTarget(), runs: int = 10) -> None:
        self.release = release
        self.kube = Kube.connect(target)
        self.runs = runs

    def _read(self) -> tuple[Readiness, dict[str, tuple[int, int]]]:
        state = readiness(self.kube, self.release)
        replicas = replica_counts(state)
        if not replicas:
            raise InputError(
                f"release {self.release!r} has no step Deployments",
                where=f"namespace {self.kube.namespace}",
                hint="check the name and -n/--namespace (`helm list -A`)",
            )
        return state, replicas

    @property
    def where(self) -> str:
        return f"release {self.release} (namespace {self.kube.namespace})"

    def snapshot(self) -> PipelineStatus:
        state, replicas = self._read()
        problems: list[str] = []
        rows = []
        for step, (ready, desired) in sorted(replicas.items()):
            metrics = StepMetrics()
            pods = [
                p
                for p in state.pods
                if p.component == step and p.phase == "Running" and p.port is not None
            ]
            for pod in pods:
                try:
                    metrics.add(pod_text(self.kube, pod, "metrics"))
                except (ClusterError, ValueError) as exc:
                    problems.append(f"step {step}: pod {pod.name}'s /metrics: {exc}")
            rows.append(metrics.row(step, ready, desired))
        counts = None
        if self.runs > 0:
            recent, errors = recent_runs(self.kube, state, self.runs)
            problems += [f"runs of step {s} unknown: {why}" for s, why in sorted(errors.items())]
            counts = _counts(r.state for r in recent) if not errors else None
        return PipelineStatus(self.where, tuple(rows), counts, tuple(problems))

    def recent_runs(self, limit: int) -> RecentRuns:
        """The release's ``limit`` newest runs, each step's state from its pods' ``/runs``."""
        state, replicas = self._read()
        rows, errors = recent_runs(self.kube, state, limit) if limit > 0 else ([], {})
        problems = [f"runs of step {s} unknown: {why}" for s, why in sorted(errors.items())]
        return RecentRuns(self.where, tuple(sorted(replicas)), tuple(rows), tuple(problems))

    def close(self) -> None:
        self.kube.api.close()


def _counts(states: Iterable[str]) -> RunCounts:
    listed = list(states)
    return RunCounts(
        len(listed),
        listed.count(StepState.SUCCEEDED.value),
        listed.count(StepState.FAILED.value),
    )
