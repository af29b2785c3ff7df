# Prometheus and promtool for the monitoring tests (tests/test_prometheus_rules.py: the chart's
# rules through `promtool check rules` / `promtool test rules`; tests/runtime/
# test_prometheus_scrape.py: a real Prometheus scraping real steps; e2e/tests/test_prometheus.py
# on the cluster): the ones on PATH, else built from Prometheus's Go module (the only place they
# can come from here: the Go module proxy) and cached in $JUP2KUB_CACHE/bin.
# Sourced by tests/run.sh and e2e/run.sh (bash, set -euo pipefail); exports J2K_PROMETHEUS and
# J2K_PROMTOOL (empty when neither found nor built: the tests that need them are skipped).
#
# The build is slow, so it happens only when asked: J2K_PROMETHEUS_BUILD=1 (e2e/run.sh sets it).
# Measured: 18 minutes (1078 s) for both binaries in one `go install`, empty Go build cache,
# niced, on a 2-core machine busy with an e2e suite (load average 8-13); promtool alone took
# about 7 minutes there with the Go build cache warm from helm's build. That does not fit in the
# default suite's 30 minutes from a fresh machine. Once built, the cached binaries are used by
# every later run, asked or not.
#
# The module's versions v0.3xx.y are Prometheus 3.xx.y. Built without the `builtinassets` tag:
# the web UI's compiled assets are not in the module, so the server serves no UI, only its HTTP
# API (all the tests use). Built with `remove_all_sd,enable_kubernetes_sd`: of the service
# discoveries only Kubernetes (plus static, file and http, always in), which leaves out the cloud
# SDKs (AWS, Azure, GCE, ...) and much of the build.
J2K_PROMETHEUS_VERSION="v0.316.0"  # the one place the Prometheus version is pinned (3.16.0)
if [ -n "${J2K_PROMETHEUS:-}" ] && [ -x "${J2K_PROMETHEUS}" ] \
    && [ -n "${J2K_PROMTOOL:-}" ] && [ -x "${J2K_PROMTOOL}" ]; then
    :
elif command -v prometheus >/dev/null 2>&1 && command -v promtool >/dev/null 2>&1; then
    J2K_PROMETHEUS="$(command -v prometheus)"
    J2K_PROMTOOL="$(command -v promtool)"
else
    j2k_prom_bin="${JUP2KUB_CACHE:-$HOME/.cache/jup2kub}/bin"
    J2K_PROMETHEUS="$j2k_prom_bin/prometheus"
    J2K_PROMTOOL="$j2k_prom_bin/promtool"
    # The stamp records how the cached binaries were built; any change rebuilds them.
    j2k_prom_tags="remove_all_sd,enable_kubernetes_sd"
    j2k_prom_stamp="prometheus $J2K_PROMETHEUS_VERSION tags=$j2k_prom_tags built-by-29-prometheus.sh/1"
    if [ ! -x "$J2K_PROMETHEUS" ] || [ ! -x "$J2K_PROMTOOL" ] \
        || [ "$(cat "$j2k_prom_bin/prometheus.stamp" 2>/dev/null)" != "$j2k_prom_stamp" ]; then
        if [ "${J2K_PROMETHEUS_BUILD:-}" != "1" ]; then
            echo "29-prometheus.sh: no prometheus/promtool; the tests that need them are skipped" \
                "(J2K_PROMETHEUS_BUILD=1 builds them once from the Go module, 10-20 minutes)" >&2
            J2K_PROMETHEUS=""
            J2K_PROMTOOL=""
        else
            command -v go >/dev/null 2>&1 || {
                echo "29-prometheus.sh: prometheus/promtool are not on PATH and there is no Go" \
                    "toolchain to build them" >&2
                false
            }
            mkdir -p "$j2k_prom_bin"
            rm -f "$j2k_prom_bin/prometheus.stamp"
            echo "building prometheus and promtool $J2K_PROMETHEUS_VERSION with $(go version)" \
                "(10-20 minutes, once)" >&2
            j2k_prom_release="3.${J2K_PROMETHEUS_VERSION#v0.3}"  # v0.316.0 is Prometheus 3.16.0
            # go install builds both from the module's own go.mod (it has no replace directives)
            GOBIN="$j2k_prom_bin" GOFLAGS="-buildvcs=false" CGO_ENABLED=0 GOTOOLCHAIN=local \
                go install -trimpath -tags "$j2k_prom_tags" \
                -ldflags "-s -w -X github.com/prometheus/common/version.Version=$j2k_prom_release \
                    -X github.com/prometheus/common/version.Branch=$J2K_PROMETHEUS_VERSION" \
                "github.com/prometheus/prometheus/cmd/prometheus@$J2K_PROMETHEUS_VERSION" \
                "github.com/prometheus/prometheus/cmd/promtool@$J2K_PROMETHEUS_VERSION"
            echo "$j2k_prom_stamp" > "$j2k_prom_bin/prometheus.stamp"
            unset j2k_prom_release
        fi
    fi
    unset j2k_prom_bin j2k_prom_stamp j2k_prom_tags
fi
export J2K_PROMETHEUS J2K_PROMTOOL J2K_PROMETHEUS_VERSION
