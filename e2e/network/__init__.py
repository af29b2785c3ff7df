"""The cluster's network, private to this machine: its addresses, the node address and forward
guard on the host, the pods' bridge CNI, NetworkPolicy enforcement (kube-router, on demand) and
commands run with cluster DNS."""
