"""Private addresses on interfaces this harness creates: reachable from the host and from pods,
never from outside."""

from __future__ import annotations

NODE_NAME = "j2k-node"
#: interface holding the node address: a port-less bridge (this kernel has no dummy driver);
#: its address is local, so it is reachable from the host and from pods, never from outside
NODE_DEV = "j2k0"
NODE_IP = "10.233.255.1"
BRIDGE = "j2kbr0"
POD_CIDR = "10.233.0.0/24"
SERVICE_CIDR = "10.233.128.0/24"
API_SERVICE_IP = "10.233.128.1"
DNS_IP = "10.233.128.10"
CLUSTER_DOMAIN = "cluster.local"
API_PORT = 6443
ETCD_CLIENT = "http://127.0.0.1:23790"
ETCD_PEER = "http://127.0.0.1:23800"
FORWARD_CHAIN = "J2K-FORWARD"
