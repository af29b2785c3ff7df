#!/usr/bin/env bash
# The e2e test command (not part of tests/run.sh: the first run builds a Kubernetes cluster).
#   bash e2e/run.sh [pytest args]
# Installs the host packages the cluster needs (Debian), builds and starts the harness's cluster
# (e2e/cluster up; cached builds make later runs start in minutes), builds and loads the
# apache/kafka-compatible image, then runs pytest on e2e/tests. Extra arguments go to pytest.
# J2K_E2E_KUBECONFIG=PATH|current: run the tests against an existing cluster instead.
# J2K_E2E_DOWN=1: stop the cluster afterwards.
set -euo pipefail
cd "$(dirname "$0")/.."
export JUP2KUB_CACHE="${JUP2KUB_CACHE:-$HOME/.cache/jup2kub}"
mkdir -p "$JUP2KUB_CACHE"

# the same per-checkout virtualenv as tests/run.sh (the project and its test extras)
VENV="${J2K_VENV:-$JUP2KUB_CACHE/venvs/$(printf %s "$PWD" | sha256sum | cut -c1-12)}"
if [ ! -x "$VENV/bin/python" ]; then
    python3 -m venv "$VENV"
fi
"$VENV/bin/python" -m pip install -q --upgrade pip >/dev/null
"$VENV/bin/python" -m pip install -q -e ".[test]"
export PATH="$VENV/bin:$PATH"

# helm (built from its Go module) and the Docker engine + step base image, as the default test
# command sets them up (sourced, not copied: one installer per tool)
for setup in tests/setup.d/20-helm.sh tests/setup.d/40-docker.sh; do
    echo "== setup: $setup" >&2
    # shellcheck source=/dev/null
    source "$setup"
done
export J2K_HELM PATH="$(dirname "$J2K_HELM"):$PATH"

if [ -z "${J2K_E2E_KUBECONFIG:-}" ]; then
    missing=()
    for pair in containerd:containerd runc:runc iptables:iptables conntrack:conntrack \
                debootstrap:debootstrap busybox:busybox-static mvn:maven java:openjdk-17-jre-headless \
                curl:curl openssl:openssl; do
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
    e2e/cluster up
    e2e/cluster kafka-image --load
fi

# image builds happen in module fixtures, inside the first test of a module: allow an hour
exec python -m pytest -o timeout=3600 e2e/tests "$@"
