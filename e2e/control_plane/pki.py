"""Certificates (openssl, a fresh CA per cluster) and the kubeconfigs made of them."""

from __future__ import annotations

import base64
import json
import os
from dataclasses import dataclass
from pathlib import Path

from e2e.host.commands import run
from e2e.host.layout import KUBECONFIG, PKI, STATE
from e2e.host.processes import write_config
from e2e.network.addresses import API_PORT, API_SERVICE_IP, CLUSTER_DOMAIN, NODE_IP, Node


@dataclass(frozen=True)
class Cert:
    name: str
    cn: str
    org: str = ""
    sans: tuple[str, ...] = ()
    server: bool = False


API_SANS = (
    "DNS:kubernetes",
    "DNS:kubernetes.default",
    "DNS:kubernetes.default.svc",
    f"DNS:kubernetes.default.svc.{CLUSTER_DOMAIN}",
    "DNS:localhost",
    "IP:127.0.0.1",
    f"IP:{NODE_IP}",
    f"IP:{API_SERVICE_IP}",
)
CONTROL_PLANE_CERTS = (
    Cert("apiserver", "kube-apiserver", sans=API_SANS, server=True),
    Cert("admin", "j2k-admin", org="system:masters"),
    Cert("apiserver-kubelet-client", "kube-apiserver-kubelet-client", org="system:masters"),
    Cert("controller-manager", "system:kube-controller-manager"),
    Cert("scheduler", "system:kube-scheduler"),
    Cert("kube-proxy", "system:kube-proxy"),
)
#: kubeconfig file (under state/) -> the client certificate it holds
KUBECONFIGS = {
    "controller-manager.kubeconfig": "controller-manager",
    "scheduler.kubeconfig": "scheduler",
    "kube-proxy.kubeconfig": "kube-proxy",
}


def kubelet_cert(node: Node) -> str:
    """The kubelet's serving certificate (its name under pki/)."""
    return f"kubelet-{node.name}" if node.index else "kubelet"


def _kubelet_client_cert(node: Node) -> str:
    return f"kubelet-client-{node.name}" if node.index else "kubelet-client"


def kubelet_kubeconfig(node: Node) -> Path:
    return node.state / "kubelet.kubeconfig"


def node_certs(node: Node) -> tuple[Cert, Cert]:
    """Each kubelet's own client identity (``system:node:<name>``, which the Node authorizer
    and NodeRestriction hold it to) and serving certificate (its address)."""
    return (
        Cert(_kubelet_client_cert(node), f"system:node:{node.name}", org="system:nodes"),
        Cert(
            kubelet_cert(node),
            node.name,
            sans=(f"DNS:{node.name}", f"IP:{node.ip}"),
            server=True,
        ),
    )


def certs(nodes: tuple[Node, ...]) -> tuple[Cert, ...]:
    return CONTROL_PLANE_CERTS + tuple(c for n in nodes for c in node_certs(n))


def _openssl(*args: str) -> None:
    run(["openssl", *args], capture=True)


def _make_ca(ca_key: Path, ca_crt: Path) -> None:
    _openssl("genrsa", "-out", str(ca_key), "2048")
    _openssl(
        "req",
        "-x509",
        "-new",
        "-key",
        str(ca_key),
        "-sha256",
        "-days",
        "3650",
        "-subj",
        "/CN=j2k-e2e-ca",
        "-out",
        str(ca_crt),
        "-addext",
        "basicConstraints=critical,CA:TRUE",
        "-addext",
        "keyUsage=critical,keyCertSign,cRLSign,digitalSignature",
    )


def _issue(c: Cert, ca_key: Path, ca_crt: Path) -> None:
    key, csr, crt = PKI / f"{c.name}.key", PKI / f"{c.name}.csr", PKI / f"{c.name}.crt"
    subj = f"/CN={c.cn}" + (f"/O={c.org}" if c.org else "")
    _openssl("genrsa", "-out", str(key), "2048")
    _openssl("req", "-new", "-key", str(key), "-subj", subj, "-out", str(csr))
    ext = PKI / f"{c.name}.ext"
    lines = [
        "basicConstraints=critical,CA:FALSE",
        "keyUsage=critical,digitalSignature,keyEncipherment",
        "extendedKeyUsage=" + ("serverAuth" if c.server else "clientAuth"),
    ]
    if c.sans:
        lines.append("subjectAltName=" + ",".join(c.sans))
    ext.write_text("\n".join(lines) + "\n")
    _openssl(
        "x509",
        "-req",
        "-in",
        str(csr),
        "-CA",
        str(ca_crt),
        "-CAkey",
        str(ca_key),
        "-CAcreateserial",
        "-days",
        "3650",
        "-sha256",
        "-extfile",
        str(ext),
        "-out",
        str(crt),
    )


def make_pki(nodes: tuple[Node, ...]) -> None:
    """The CA, every component's certificate and the service-account key pair, once per
    cluster (state/pki/.complete)."""
    if (PKI / ".complete").is_file():
        return
    PKI.mkdir(parents=True, exist_ok=True)
    os.chmod(PKI, 0o700)
    ca_key, ca_crt = PKI / "ca.key", PKI / "ca.crt"
    _make_ca(ca_key, ca_crt)
    for c in certs(nodes):
        _issue(c, ca_key, ca_crt)
    _openssl("genrsa", "-out", str(PKI / "sa.key"), "2048")
    _openssl("rsa", "-in", str(PKI / "sa.key"), "-pubout", "-out", str(PKI / "sa.pub"))
    (PKI / ".complete").touch()


def _b64(p: Path) -> str:
    return base64.b64encode(p.read_bytes()).decode()


def write_kubeconfig(path: Path, cert: str) -> None:
    cfg = {
        "apiVersion": "v1",
        "kind": "Config",
        "clusters": [
            {
                "name": "j2k-e2e",
                "cluster": {
                    "server": f"https://{NODE_IP}:{API_PORT}",
                    "certificate-authority-data": _b64(PKI / "ca.crt"),
                },
            }
        ],
        "users": [
            {
                "name": cert,
                "user": {
                    "client-certificate-data": _b64(PKI / f"{cert}.crt"),
                    "client-key-data": _b64(PKI / f"{cert}.key"),
                },
            }
        ],
        "contexts": [
            {
                "name": "j2k-e2e",
                "context": {"cluster": "j2k-e2e", "user": cert, "namespace": "default"},
            }
        ],
        "current-context": "j2k-e2e",
    }
    write_config(path, json.dumps(cfg, indent=2))
    path.chmod(0o600)


def write_kubeconfigs(nodes: tuple[Node, ...]) -> None:
    """The admin's (KUBECONFIG), each component's and each kubelet's."""
    write_kubeconfig(KUBECONFIG, "admin")
    for name, cert in KUBECONFIGS.items():
        write_kubeconfig(STATE / name, cert)
    for node in nodes:
        node.state.mkdir(parents=True, exist_ok=True)
        write_kubeconfig(kubelet_kubeconfig(node), _kubelet_client_cert(node))
