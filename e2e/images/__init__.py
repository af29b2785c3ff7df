"""Container images without a registry: written as ``docker save`` archives (oci), the cluster's
own ones (system: pause, CoreDNS, busybox, local-path-provisioner), the apache/kafka-compatible
one (kafka), and loading archives or Docker images into the node's containerd (load)."""
