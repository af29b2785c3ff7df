# kube-score for the chart's posture tests (tests/test_chart_posture.py): the one on PATH, else
# built once from its Go module (like helm in 20-helm.sh) and cached in $JUP2KUB_CACHE/bin.
# Sourced by tests/run.sh (bash, set -euo pipefail); exports J2K_KUBE_SCORE for the fixtures.
J2K_KUBE_SCORE_VERSION="v1.20.0"  # the one place the kube-score version is pinned
if [ -n "${J2K_KUBE_SCORE:-}" ] && [ -x "${J2K_KUBE_SCORE}" ]; then
    :
elif command -v kube-score >/dev/null 2>&1; then
    J2K_KUBE_SCORE="$(command -v kube-score)"
else
    j2k_ks_bin="${JUP2KUB_CACHE:-$HOME/.cache/jup2kub}/bin"
    J2K_KUBE_SCORE="$j2k_ks_bin/kube-score"
    # The stamp records how the cached binary was built; any change rebuilds it.
    j2k_ks_stamp="kube-score $J2K_KUBE_SCORE_VERSION built-by-25-kube-score.sh/1"
    if [ ! -x "$J2K_KUBE_SCORE" ] || [ "$(cat "$j2k_ks_bin/kube-score.stamp" 2>/dev/null)" != "$j2k_ks_stamp" ]; then
        command -v go >/dev/null 2>&1 || {
            echo "25-kube-score.sh: kube-score is not on PATH and there is no Go toolchain to build it" >&2
            false
        }
        mkdir -p "$j2k_ks_bin"
        echo "building kube-score $J2K_KUBE_SCORE_VERSION with $(go version) (about a minute, once)" >&2
        GOBIN="$j2k_ks_bin" GOFLAGS="-buildvcs=false" CGO_ENABLED=0 go install -trimpath \
            -ldflags "-s -w -X main.version=${J2K_KUBE_SCORE_VERSION#v}" \
            "github.com/zegl/kube-score/cmd/kube-score@$J2K_KUBE_SCORE_VERSION"
        echo "$j2k_ks_stamp" > "$j2k_ks_bin/kube-score.stamp"
    fi
    unset j2k_ks_bin j2k_ks_stamp
fi
export J2K_KUBE_SCORE J2K_KUBE_SCORE_VERSION
