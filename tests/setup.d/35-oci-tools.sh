# The OCI tools that `jup2kub` shells out to for sharing (issue 31), and the registry the tests
# push to: ORAS (artifacts, referrers, OCI image layouts), cosign (signatures) and the CNCF
# distribution registry. Each is the one on PATH, else built once from its Go module (the only
# place they can come from here: the Go module proxy) and cached in $JUP2KUB_CACHE/bin.
# Sourced by tests/run.sh, bench/run.sh and e2e/run.sh (bash, set -euo pipefail); exports
# J2K_ORAS, J2K_COSIGN and J2K_REGISTRY (jup2kub.oci.tools reads the first two, the test
# fixture in tests/support/registry.py the third).
#
# The versions are pinned here, their one place. cosign stays on the v2 line: its classic
# signature format (a `sha256-<digest>.sig` manifest in the registry) is the one Flux, Argo CD's
# image updater, Kyverno and policy-controller verify today; v3 signs a new bundle format.
J2K_ORAS_VERSION="v1.3.6"
J2K_COSIGN_VERSION="v2.6.5"
J2K_REGISTRY_VERSION="v3.1.2"

# j2k_go_tool NAME MODULE/cmd/PATH VERSION LDFLAGS: the cached binary's path (built if missing
# or built another way: the stamp records how).
j2k_go_tool() {
    local name="$1" package="$2" version="$3" ldflags="$4"
    local bin="${JUP2KUB_CACHE:-$HOME/.cache/jup2kub}/bin"
    local stamp="$name $version $package built-by-35-oci-tools.sh/1"
    if [ ! -x "$bin/$name" ] || [ "$(cat "$bin/$name.stamp" 2>/dev/null)" != "$stamp" ]; then
        command -v go >/dev/null 2>&1 || {
            echo "35-oci-tools.sh: $name is not on PATH and there is no Go toolchain to build it" >&2
            return 1
        }
        mkdir -p "$bin"
        rm -f "$bin/$name.stamp"
        echo "building $name $version with $(go version) (once)" >&2
        GOBIN="$bin" GOFLAGS="-buildvcs=false" CGO_ENABLED=0 \
            go install -trimpath -ldflags "-s -w $ldflags" "$package@$version" >&2
        echo "$stamp" > "$bin/$name.stamp"
    fi
    echo "$bin/$name"
}

if [ -z "${J2K_ORAS:-}" ] || [ ! -x "${J2K_ORAS}" ]; then
    # (the module's own source names its version)
    J2K_ORAS="$(command -v oras || j2k_go_tool oras oras.land/oras/cmd/oras "$J2K_ORAS_VERSION" "")"
fi
if [ -z "${J2K_COSIGN:-}" ] || [ ! -x "${J2K_COSIGN}" ]; then
    J2K_COSIGN="$(command -v cosign || j2k_go_tool cosign github.com/sigstore/cosign/v2/cmd/cosign \
        "$J2K_COSIGN_VERSION" "-X sigs.k8s.io/release-utils/version.gitVersion=$J2K_COSIGN_VERSION")"
fi
if [ -z "${J2K_REGISTRY:-}" ] || [ ! -x "${J2K_REGISTRY}" ]; then
    J2K_REGISTRY="$(j2k_go_tool registry github.com/distribution/distribution/v3/cmd/registry \
        "$J2K_REGISTRY_VERSION" \
        "-X github.com/distribution/distribution/v3/version.version=$J2K_REGISTRY_VERSION")"
fi
unset -f j2k_go_tool
export J2K_ORAS J2K_COSIGN J2K_REGISTRY J2K_ORAS_VERSION J2K_COSIGN_VERSION J2K_REGISTRY_VERSION
