# helm for the chart tests: the one on PATH, else built once from Helm's Go module (the only
# place helm can come from here: the Go module proxy) and cached in $JUP2KUB_CACHE/bin.
# Sourced by tests/run.sh (bash, set -euo pipefail); exports J2K_HELM for the test fixtures.
J2K_HELM_VERSION="v3.22.0"  # the one place the helm version is pinned
if [ -n "${J2K_HELM:-}" ] && [ -x "${J2K_HELM}" ]; then
    :
elif command -v helm >/dev/null 2>&1; then
    J2K_HELM="$(command -v helm)"
else
    j2k_helm_bin="${JUP2KUB_CACHE:-$HOME/.cache/jup2kub}/bin"
    J2K_HELM="$j2k_helm_bin/helm"
    # The stamp records how the cached binary was built; any change rebuilds it.
    j2k_helm_stamp="helm $J2K_HELM_VERSION built-by-20-helm.sh/2"
    if [ ! -x "$J2K_HELM" ] || [ "$(cat "$j2k_helm_bin/helm.stamp" 2>/dev/null)" != "$j2k_helm_stamp" ]; then
        command -v go >/dev/null 2>&1 || {
            echo "20-helm.sh: helm is not on PATH and there is no Go toolchain to build it" >&2
            false
        }
        mkdir -p "$j2k_helm_bin"
        echo "building helm $J2K_HELM_VERSION with $(go version) (about 2 minutes, once)" >&2
        # Like Helm's Makefile: the default Kubernetes version of `helm template`/`lint` follows
        # the client-go that helm is built with (else it would claim Kubernetes 1.20).
        j2k_helm_gomod="$(go mod download -json "helm.sh/helm/v3@$J2K_HELM_VERSION" \
            | sed -n 's/^[[:space:]]*"GoMod": "\(.*\)",\{0,1\}$/\1/p')"
        j2k_k8s_minor="$(sed -n 's#^[[:space:]]*k8s.io/client-go v0\.\([0-9][0-9]*\)\..*#\1#p' "$j2k_helm_gomod")"
        [ -n "$j2k_k8s_minor" ] || { echo "20-helm.sh: no client-go version in $j2k_helm_gomod" >&2; false; }
        GOBIN="$j2k_helm_bin" GOFLAGS="-buildvcs=false" CGO_ENABLED=0 go install -trimpath \
            -ldflags "-s -w -X helm.sh/helm/v3/internal/version.version=$J2K_HELM_VERSION \
                -X helm.sh/helm/v3/pkg/lint/rules.k8sVersionMajor=1 \
                -X helm.sh/helm/v3/pkg/lint/rules.k8sVersionMinor=$j2k_k8s_minor \
                -X helm.sh/helm/v3/pkg/chartutil.k8sVersionMajor=1 \
                -X helm.sh/helm/v3/pkg/chartutil.k8sVersionMinor=$j2k_k8s_minor" \
            "helm.sh/helm/v3/cmd/helm@$J2K_HELM_VERSION"
        echo "$j2k_helm_stamp" > "$j2k_helm_bin/helm.stamp"
        unset j2k_helm_gomod j2k_k8s_minor
    fi
    unset j2k_helm_bin j2k_helm_stamp
fi
export J2K_HELM J2K_HELM_VERSION
