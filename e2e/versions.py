"""Pinned versions of every component the e2e cluster is built from (the one place to change)."""

from __future__ import annotations

#: Kubernetes (kube-apiserver, kube-controller-manager, kube-scheduler, kubelet, kube-proxy,
#: kubectl), built from the k8s.io/kubernetes module. 1.34 is the last minor whose kubelet
#: still starts on cgroup v1 without extra flags (1.35 defaults failCgroupV1 to true), and its
#: go directive (1.24) is satisfied by the installed Go. Not the newest patch: the module proxy
#: reachable here lacks half of the v0.34.7 staging modules and the checksum-database entries
#: of v0.34.5's; every v0.34.4 module and checksum is there.
KUBERNETES = "v1.34.4"
#: the staging modules (k8s.io/api, k8s.io/client-go, ...) are tagged v0.<minor>.<patch>
STAGING = "v0." + KUBERNETES.removeprefix("v1.")
#: every k8s.io/<name> module that k8s.io/kubernetes replaces with ./staging/src/k8s.io/<name>
STAGING_MODULES = (
    "api",
    "apiextensions-apiserver",
    "apimachinery",
    "apiserver",
    "cli-runtime",
    "client-go",
    "cloud-provider",
    "cluster-bootstrap",
    "code-generator",
    "component-base",
    "component-helpers",
    "controller-manager",
    "cri-api",
    "cri-client",
    "csi-translation-lib",
    "dynamic-resource-allocation",
    "endpointslice",
    "externaljwt",
    "kms",
    "kube-aggregator",
    "kube-controller-manager",
    "kube-proxy",
    "kube-scheduler",
    "kubectl",
    "kubelet",
    "metrics",
    "mount-utils",
    "pod-security-admission",
    "sample-apiserver",
    "sample-cli-plugin",
    "sample-controller",
)
KUBE_COMMANDS = (
    "kube-apiserver",
    "kube-controller-manager",
    "kube-scheduler",
    "kubelet",
    "kube-proxy",
    "kubectl",
)
#: etcd as Kubernetes 1.34 pairs it (kubeadm's default); Debian 12 ships 3.4, built instead
ETCD = "v3.6.4"
#: CoreDNS (kubeadm 1.34 deploys v1.12.1; this is the latest v1.12 patch)
COREDNS = "v1.12.4"
#: the dynamic hostPath provisioner kind uses: the cluster's default StorageClass (v0.0.30:
#: the newest release whose checksum the module proxy serves)
LOCAL_PATH_PROVISIONER = "v0.0.30"
#: kube-router, only its network policy controller (`e2e/cluster netpol up`): NetworkPolicies
#: enforced with iptables and ipsets on top of the bridge CNI (the newest v2 the proxy serves)
KUBE_ROUTER = "v2.1.0"
