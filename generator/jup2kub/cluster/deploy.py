"""``jup2kub deploy``: install or upgrade a built chart through helm (pyhelm3, the way users
would run it), then wait until Kafka and every step pass their readiness probes.

The values are checked against the chart's schema by a client-side render first, so a typo is
rejected before anything is created on the cluster.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from jup2kub import helm
from jup2kub.cluster.kube import Kube, KubeTarget
from jup2kub.cluster.readiness import Readiness, wait_ready
from jup2kub.errors import UsageError
from jup2kub.model.names import check_release_name

# pyhelm3 logs each failed helm command itself; the error we raise already says it all
logging.getLogger("pyhelm3").addHandler(logging.NullHandler())
logging.getLogger("pyhelm3").propagate = False


@dataclass
class DeployResult:
    release: str
    namespace: str
    revision: int
    status: str
    readiness: Readiness | None


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
    from pyhelm3 import errors as helm_errors  # pyhelm3: only deploy and status load it

    say = on_progress or (lambda _msg: None)
    check_release_name(release)
    if not chart.exists():
        raise UsageError(
            "the chart does not exist",
            where=str(chart),
            hint="pass the OUT directory of `jup2kub build` (or a packaged .tgz)",
        )
    if chart.is_dir() and not (chart / "Chart.yaml").is_file():
        raise UsageError(
            "not a Helm chart directory (no Chart.yaml)",
            where=str(chart),
            hint="pass the OUT directory of `jup2kub build`",
        )
    values = helm.load_values(values_files)
    kube = Kube.connect(target)
    client = helm.client(target.kubeconfig, target.context, timeout)
    where = f"release {release}, namespace {kube.namespace}"

    async def install() -> Any:
        helm_chart = await client.get_chart(chart.absolute())
        say("checking the values against the chart's schema (helm template)")
        await client.template_resources(helm_chart, release, values, namespace=kube.namespace)
        say(f"helm upgrade --install {release} (namespace {kube.namespace})")
        return await client.install_or_upgrade_release(
            release,
            helm_chart,
            values,
            namespace=kube.namespace,
            create_namespace=True,
            timeout=f"{int(timeout)}s",
            wait=False,
        )

    try:
        revision = asyncio.run(install())
    except helm_errors.Error as exc:
        raise helm.failure(exc, "upgrade --install", where) from exc
    state = None
    if wait:
        say("waiting for Kafka and every step to pass its readiness probe")
        state = wait_ready(kube, release, timeout, on_readiness)
    return DeployResult(
        release,
        kube.namespace,
        int(revision.revision),
        str(getattr(revision.status, "value", revision.status)),
        state,
    )
