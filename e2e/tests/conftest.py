"""The cluster the e2e tests run against.

By default the harness's own cluster (``e2e/cluster up``, a no-op when it already runs). With
``J2K_E2E_KUBECONFIG=PATH`` (or ``J2K_E2E_KUBECONFIG=current`` for the current kube context) the
tests run against an existing cluster instead (kind, minikube, a cloud one); the images they
use must then be pullable there (``J2K_E2E_BUSYBOX_IMAGE``, the Kafka image of the chart).
``J2K_E2E_DOWN=1`` stops the harness's cluster after the session.
"""

from __future__ import annotations

import os
import secrets
import subprocess
from collections.abc import Iterator

import pytest

from e2e.host.layout import KUBECONFIG
from e2e.images.system import BUSYBOX_IMAGE
from e2e.support import E2E, Cluster


@pytest.fixture(scope="session")
def cluster() -> Iterator[Cluster]:
    existing = os.environ.get("J2K_E2E_KUBECONFIG")
    if existing:
        yield Cluster(
            None if existing == "current" else existing,
            own=False,
            busybox=os.environ.get("J2K_E2E_BUSYBOX_IMAGE", "busybox:1.36"),
        )
        return
    if os.geteuid() != 0:
        pytest.skip("the harness's cluster needs root (or set J2K_E2E_KUBECONFIG)")
    subprocess.run([str(E2E / "cluster"), "up"], check=True, timeout=3 * 3600)
    yield Cluster(str(KUBECONFIG), own=True, busybox=BUSYBOX_IMAGE)
    if os.environ.get("J2K_E2E_DOWN") == "1":
        subprocess.run([str(E2E / "cluster"), "down"], check=True, timeout=900)


@pytest.fixture(autouse=True, scope="session")
def _private_catalog(tmp_path_factory: pytest.TempPathFactory) -> Iterator[None]:
    """`jup2kub build` records steps in the catalog: the session gets its own (never the
    user's default one, which the e2e images would otherwise fill)."""
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("JUP2KUB_CATALOG", str(tmp_path_factory.mktemp("catalog") / "catalog.db"))
        yield


@pytest.fixture
def namespace(cluster: Cluster) -> Iterator[str]:
    name = f"j2k-e2e-{secrets.token_hex(3)}"
    cluster.kubectl("create", "namespace", name)
    yield name
    cluster.kubectl("delete", "namespace", name, "--wait=false", check=False)
