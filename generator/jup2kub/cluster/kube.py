"""The Kubernetes API for one target (kubeconfig, context, namespace), as kubectl picks it.

API failures become ``ClusterError`` carrying the API server's status and body.
"""

from __future__ import annotations

import contextlib
import json
import os
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from jup2kub.errors import ClusterError

INSTANCE_LABEL = "app.kubernetes.io/instance"
COMPONENT_LABEL = "app.kubernetes.io/component"
ROLE_LABEL = "jup2kub.io/role"


@dataclass(frozen=True)
class KubeTarget:
    """Which cluster and namespace: like kubectl/helm, the current context by default."""

    kubeconfig: Path | None = None
    context: str | None = None
    namespace: str | None = None


@dataclass
class Kube:
    """Typed handles on the Kubernetes API for one target."""

    api: Any  # kubernetes.client.ApiClient
    core: Any
    apps: Any
    namespace: str

    @classmethod
    def connect(cls, target: KubeTarget) -> Kube:
        from kubernetes import client, config  # the Kubernetes client: slow import, on use
        from kubernetes.config.config_exception import ConfigException

        try:
            if target.kubeconfig is None and target.context is None and _in_cluster():
                config.load_incluster_config()  # type: ignore[no-untyped-call]
                api = client.ApiClient()
                namespace = target.namespace or _incluster_namespace()
            else:
                kubeconfig = str(target.kubeconfig) if target.kubeconfig else None
                api = config.new_client_from_config(  # type: ignore[no-untyped-call]
                    config_file=kubeconfig, context=target.context
                )
                namespace = target.namespace or _context_namespace(kubeconfig, target.context)
        except (ConfigException, OSError, yaml.YAMLError) as exc:
            raise ClusterError(
                f"cannot load the kubeconfig: {exc}",
                where=str(target.kubeconfig or "$KUBECONFIG / ~/.kube/config"),
                hint="pass --kubeconfig/--context, or set KUBECONFIG",
            ) from exc
        return cls(api, client.CoreV1Api(api), client.AppsV1Api(api), namespace)

    def call(self, what: str, fn: Callable[..., Any], *args: Any, **kwargs: Any) -> Any:
        """Call the API; connection failures and denials become ClusterError."""
        from kubernetes.client.exceptions import ApiException  # as in connect
        from urllib3.exceptions import HTTPError

        try:
            return fn(*args, _request_timeout=30, **kwargs)
        except ApiException as exc:
            reason = exc.reason
            with contextlib.suppress(ValueError, AttributeError):
                reason = json.loads(exc.body or "{}").get("message") or reason
            raise ClusterError(
                f"{what}: the API server answered {exc.status}: {reason}",
                where=f"namespace {self.namespace}",
                hint="check your permissions and the namespace",
                status=exc.status,
                body=exc.body,
            ) from exc
        except HTTPError as exc:
            raise ClusterError(
                f"{what}: the API server cannot be reached: {exc}",
                hint="check --kubeconfig/--context and that the cluster is up",
            ) from exc

    def selected(self, release: str) -> str:
        return f"{INSTANCE_LABEL}={release}"


def _in_cluster() -> bool:
    return bool(os.environ.get("KUBERNETES_SERVICE_HOST")) and not (
        os.environ.get("KUBECONFIG") or Path("~/.kube/config").expanduser().exists()
    )


def _incluster_namespace() -> str:
    path = Path("/var/run/secrets/kubernetes.io/serviceaccount/namespace")
    return path.read_text().strip() if path.exists() else "default"


def _context_namespace(kubeconfig: str | None, context: str | None) -> str:
    from kubernetes import config  # the Kubernetes client: slow import, on use

    contexts, active = config.list_kube_config_contexts(config_file=kubeconfig)  # type: ignore[no-untyped-call]
    chosen = next((c for c in contexts if c["name"] == context), None) if context else active
    ns = ((chosen or {}).get("context") or {}).get("namespace")
    return str(ns) if ns else "default"
