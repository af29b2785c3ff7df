# The Prometheus Operator's published ServiceMonitor and PrometheusRule CRDs, for validating the
# chart's monitoring objects (tests/test_chart_monitoring.py): read from the
# prometheus-operator/prometheus-operator Go module, fetched once through the Go module proxy
# (`go mod download`, GOPROXY as configured) and cached in $JUP2KUB_CACHE/prometheus-operator.
# Sourced by tests/run.sh (bash, set -euo pipefail); exports J2K_SERVICEMONITOR_CRD and
# J2K_PROMETHEUSRULE_CRD for the tests.
J2K_PROMETHEUS_OPERATOR_VERSION="v0.85.0"  # the one place the Prometheus Operator version is pinned
j2k_promop_dir="${JUP2KUB_CACHE:-$HOME/.cache/jup2kub}/prometheus-operator"
J2K_SERVICEMONITOR_CRD="$j2k_promop_dir/monitoring.coreos.com_servicemonitors-$J2K_PROMETHEUS_OPERATOR_VERSION.yaml"
J2K_PROMETHEUSRULE_CRD="$j2k_promop_dir/monitoring.coreos.com_prometheusrules-$J2K_PROMETHEUS_OPERATOR_VERSION.yaml"
if [ ! -s "$J2K_SERVICEMONITOR_CRD" ] || [ ! -s "$J2K_PROMETHEUSRULE_CRD" ]; then
    command -v go >/dev/null 2>&1 || {
        echo "28-prometheus-operator-crd.sh: no Go toolchain to fetch the Prometheus Operator's module" \
            "(github.com/prometheus-operator/prometheus-operator)" >&2
        false
    }
    mkdir -p "$j2k_promop_dir"
    j2k_promop_module="github.com/prometheus-operator/prometheus-operator@$J2K_PROMETHEUS_OPERATOR_VERSION"
    j2k_promop_zip="$(cd "$j2k_promop_dir" && GOFLAGS=-mod=mod go mod download -json \
        "$j2k_promop_module" | sed -n 's/^\t"Zip": "\(.*\)",$/\1/p')"
    for j2k_promop_crd in "$J2K_SERVICEMONITOR_CRD" "$J2K_PROMETHEUSRULE_CRD"; do
        j2k_promop_name="$(basename "$j2k_promop_crd" "-$J2K_PROMETHEUS_OPERATOR_VERSION.yaml")"
        unzip -p "$j2k_promop_zip" \
            "$j2k_promop_module/example/prometheus-operator-crd/$j2k_promop_name.yaml" \
            > "$j2k_promop_crd.tmp"
        mv "$j2k_promop_crd.tmp" "$j2k_promop_crd"
    done
    unset j2k_promop_module j2k_promop_zip j2k_promop_crd j2k_promop_name
fi
unset j2k_promop_dir
export J2K_SERVICEMONITOR_CRD J2K_PROMETHEUSRULE_CRD J2K_PROMETHEUS_OPERATOR_VERSION
