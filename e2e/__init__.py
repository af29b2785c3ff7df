"""The e2e harness (a Kubernetes cluster built from upstream components) and what the e2e tests
share, as one package: imported as ``e2e.<module>`` from the repository root (the ``e2e/cluster``
command puts its checkout's root first on sys.path; pytest, through pyproject.toml's pythonpath).

By concern, each layer importing only those below it: ``cluster`` (the command) and
``lifecycle`` (up, down, status); ``addons`` (CoreDNS, local-path-provisioner); ``images``
(archives, the cluster's own images, the Kafka image, loading into the node); ``node``
(containerd, kubelet, kube-proxy); ``control_plane`` (pki, etcd and the API server's
components, kubectl); ``network`` (addresses, host setup, CNI, NetworkPolicies, cluster DNS);
``build`` (binaries from Go modules); ``host`` (paths, commands, daemons' pids, mounts,
sysctls); ``versions``. ``support`` and ``tests`` are the e2e tests'."""
