#!/usr/bin/env bash
# The e2e test command (not part of tests/run.sh: the first run builds a Kubernetes cluster).
#   bash e2e/run.sh [--nodes N] [pytest args]
# Installs the host packages the cluster needs (Debian), builds and starts the harness's cluster
# (e2e/cluster up; cached builds make later runs start in minutes), builds and loads the
# apache/kafka-compatible image, then runs pytest on e2e/tests. Extra arguments go to pytest.
# J2K_E2E_KUBECONFIG=PATH|current: run the tests against an existing cluster instead.
# J2K_E2E_DOWN=1: stop the cluster afterwards.
# --nodes N (or J2K_E2E_NODES=N): a cluster of N nodes (default 1); a running cluster of another
# size is refused (e2e/cluster down first).
set -euo pipefail
cd "$(dirname "$0")/.."
if [ "${1:-}" = "--nodes" ]; then
    [ -n "${2:-}" ] || { echo "e2e/run.sh: --nodes needs a number" >&2; exit 2; }
    export J2K_E2E_NODES="$2"
    shift 2
fi
export J2K_E2E_NODES="${J2K_E2E_NODES:-1}"
# the same per-checkout virtualenv and tool installers (helm, Kafka jars, Docker engine + step
# base image) as the default test command: sourced, not copied
# Prometheus and promtool (e2e/tests/test_prometheus.py): built from their Go module when not
# cached yet, which the default test command does only when asked (slow)
export J2K_PROMETHEUS_BUILD="${J2K_PROMETHEUS_BUILD:-1}"
# shellcheck source=tests/env.sh
source tests/env.sh
export J2K_HELM PATH="$(dirname "$J2K_HELM"):$PATH"

if [ -z "${J2K_E2E_KUBECONFIG:-}" ]; then
    missing=()
    for pair in containerd:containerd runc:runc iptables:iptables conntrack:conntrack \
                debootstrap:debootstrap busybox:busybox-static mvn:maven java:openjdk-17-jre-headless \
                curl:curl openssl:openssl ipset:ipset; do
        command -v "${pair%%:*}" >/dev/null 2>&1 || missing+=("${pair#*:}")
    done
    [ -d /usr/lib/cni ] || missing+=(containernetworking-plugins)
    if [ "${#missing[@]}" -gt 0 ]; then
        echo "== e2e: apt-get install ${missing[*]}" >&2
        apt-get update -qq >/dev/null
        DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends \
            "${missing[@]}" >/dev/null
    fi
    command -v go >/dev/null 2>&1 || { echo "e2e: Go >= 1.24 is needed to build the cluster" >&2; exit 1; }
    e2e/cluster up --nodes "$J2K_E2E_NODES"
    e2e/cluster kafka-image --load
fi

# image builds happen in module fixtures, inside the first test of a module: allow an hour
exec python -m pytest -o timeout=3600 e2e/tests "$@"
