# KEDA's published ScaledObject CRD, for validating the chart's kafkaLag autoscaling
# (tests/test_chart_keda.py): read from the kedacore/keda Go module, fetched once through the Go
# module proxy (`go mod download`, GOPROXY as configured) and cached in $JUP2KUB_CACHE/keda.
# Sourced by tests/run.sh (bash, set -euo pipefail); exports J2K_KEDA_CRD for the tests.
J2K_KEDA_VERSION="v2.16.1"  # the one place the KEDA version is pinned
j2k_keda_dir="${JUP2KUB_CACHE:-$HOME/.cache/jup2kub}/keda"
J2K_KEDA_CRD="$j2k_keda_dir/keda.sh_scaledobjects-$J2K_KEDA_VERSION.yaml"
if [ ! -s "$J2K_KEDA_CRD" ]; then
    command -v go >/dev/null 2>&1 || {
        echo "27-keda-crd.sh: no Go toolchain to fetch KEDA's module (github.com/kedacore/keda/v2)" >&2
        false
    }
    mkdir -p "$j2k_keda_dir"
    j2k_keda_zip="$(cd "$j2k_keda_dir" && GOFLAGS=-mod=mod go mod download -json \
        "github.com/kedacore/keda/v2@$J2K_KEDA_VERSION" | sed -n 's/^\t"Zip": "\(.*\)",$/\1/p')"
    unzip -p "$j2k_keda_zip" \
        "github.com/kedacore/keda/v2@$J2K_KEDA_VERSION/config/crd/bases/keda.sh_scaledobjects.yaml" \
        > "$J2K_KEDA_CRD.tmp"
    mv "$J2K_KEDA_CRD.tmp" "$J2K_KEDA_CRD"
    unset j2k_keda_zip
fi
unset j2k_keda_dir
export J2K_KEDA_CRD J2K_KEDA_VERSION
