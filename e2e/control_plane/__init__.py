"""The control plane: certificates and kubeconfigs (pki), etcd, kube-apiserver,
kube-controller-manager and kube-scheduler as processes on the host (components), and the admin
client (kubectl)."""
