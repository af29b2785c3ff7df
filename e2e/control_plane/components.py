"""etcd, kube-apiserver, kube-controller-manager and kube-scheduler, each started (once) as a
process on the host; etcd and the API server waited for until they answer."""

from __future__ import annotations

import os

from e2e.control_plane.kubectl import kubectl
from e2e.host.commands import http_ok, wait_for
from e2e.host.layout import BIN, PKI, STATE
from e2e.host.processes import start
from e2e.network.addresses import (
    API_PORT,
    CLUSTER_DOMAIN,
    ETCD_CLIENT,
    ETCD_PEER,
    NODE_IP,
    SERVICE_CIDR,
    Node,
    cluster_cidr,
)

#: what the controller-manager and the scheduler share: no profiling, one instance, loopback
_COMMON = ["--profiling=false", "--leader-elect=false", "--bind-address=127.0.0.1"]


def start_etcd() -> None:
    os.chmod(STATE / "etcd", 0o700)
    start(
        "etcd",
        [
            str(BIN / "etcd"),
            "--name",
            "j2k",
            "--data-dir",
            str(STATE / "etcd"),
            "--listen-client-urls",
            ETCD_CLIENT,
            "--advertise-client-urls",
            ETCD_CLIENT,
            "--listen-peer-urls",
            ETCD_PEER,
            "--initial-advertise-peer-urls",
            ETCD_PEER,
            "--initial-cluster",
            f"j2k={ETCD_PEER}",
            "--quota-backend-bytes",
            str(2 << 30),
            "--log-level",
            "warn",
        ],
    )
    wait_for("etcd", lambda: http_ok(f"{ETCD_CLIENT}/health"), 60, 0.5)


def api_ready() -> bool:
    return kubectl("get", "--raw", "/readyz", check=False, timeout=10).returncode == 0


def start_apiserver() -> None:
    pki = str(PKI)
    start(
        "kube-apiserver",
        [
            str(BIN / "kube-apiserver"),
            f"--advertise-address={NODE_IP}",
            f"--bind-address={NODE_IP}",
            f"--secure-port={API_PORT}",
            f"--etcd-servers={ETCD_CLIENT}",
            f"--service-cluster-ip-range={SERVICE_CIDR}",
            f"--client-ca-file={pki}/ca.crt",
            f"--tls-cert-file={pki}/apiserver.crt",
            f"--tls-private-key-file={pki}/apiserver.key",
            f"--kubelet-client-certificate={pki}/apiserver-kubelet-client.crt",
            f"--kubelet-client-key={pki}/apiserver-kubelet-client.key",
            f"--kubelet-certificate-authority={pki}/ca.crt",
            "--kubelet-preferred-address-types=InternalIP",
            f"--service-account-key-file={pki}/sa.pub",
            f"--service-account-signing-key-file={pki}/sa.key",
            f"--service-account-issuer=https://kubernetes.default.svc.{CLUSTER_DOMAIN}",
            "--authorization-mode=Node,RBAC",
            "--enable-admission-plugins=NodeRestriction",
            "--allow-privileged=true",
            "--profiling=false",
        ],
    )
    wait_for("kube-apiserver", api_ready, 120)


def start_controller_manager(nodes: tuple[Node, ...]) -> None:
    pki = str(PKI)
    start(
        "kube-controller-manager",
        [
            str(BIN / "kube-controller-manager"),
            *_COMMON,
            f"--kubeconfig={STATE}/controller-manager.kubeconfig",
            f"--authentication-kubeconfig={STATE}/controller-manager.kubeconfig",
            f"--authorization-kubeconfig={STATE}/controller-manager.kubeconfig",
            f"--cluster-signing-cert-file={pki}/ca.crt",
            f"--cluster-signing-key-file={pki}/ca.key",
            f"--root-ca-file={pki}/ca.crt",
            f"--service-account-private-key-file={pki}/sa.key",
            "--use-service-account-credentials=true",
            f"--service-cluster-ip-range={SERVICE_CIDR}",
            f"--cluster-cidr={cluster_cidr(nodes)}",
            "--allocate-node-cidrs=false",
            "--controllers=*,bootstrapsigner,tokencleaner",
        ],
    )


def start_scheduler() -> None:
    start(
        "kube-scheduler",
        [
            str(BIN / "kube-scheduler"),
            *_COMMON,
            f"--kubeconfig={STATE}/scheduler.kubeconfig",
            f"--authentication-kubeconfig={STATE}/scheduler.kubeconfig",
            f"--authorization-kubeconfig={STATE}/scheduler.kubeconfig",
        ],
    )
