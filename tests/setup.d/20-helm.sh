# helm for the chart tests: the one on PATH, else built once from Helm's Go module (the only
# place helm can come from here: the Go module proxy) and cached in $JUP2KUB_CACHE/bin.
# Sourced by tests/run.sh (bash, set -euo pipefail); exports J2K_HELM for the test fixtures.
J2K_HELM_VERSION="v3.22.0"  # the one place the helm version is pinned
if [ -n "${J2K_HELM:-}" ] && [ -x "${J2K_HELM}" ]; then
    :
elif command -v helm >/dev/null 2>&1; then
    J2K_HELM="$(command -v helm)"
else
    j2k_helm_cache="${JUP2KUB_CACHE:-$HOME/.cache/jup2kub}/bin"
    J2K_HELM="$j2k_helm_cache/helm"
    if [ ! -x "$J2K_HELM" ] \
        || ! "$J2K_HELM" version --template '{{.Version}}' 2>/dev/null | grep -qx "$J2K_HELM_VERSION"; then
        command -v go >/dev/null 2>&1 || {
            echo "20-helm.sh: helm is not on PATH and there is no Go toolchain to build it" >&2
            false
        }
        mkdir -p "$j2k_helm_cache"
        echo "building helm $J2K_HELM_VERSION with $(go version) (a few minutes, once)" >&2
        GOBIN="$j2k_helm_cache" GOFLAGS="-buildvcs=false" CGO_ENABLED=0 go install \
            -ldflags "-s -w -X helm.sh/helm/v3/internal/version.version=$J2K_HELM_VERSION" \
            "helm.sh/helm/v3/cmd/helm@$J2K_HELM_VERSION"
    fi
    unset j2k_helm_cache
fi
export J2K_HELM J2K_HELM_VERSION
