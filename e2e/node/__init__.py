"""The node: its own containerd (CRI, bridge CNI), the kubelet and kube-proxy, as processes on
the host, and what ``down`` must stop through them (pod sandboxes, containerd shims)."""
