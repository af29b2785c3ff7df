# Sourced by tests/run.sh and bench/run.sh (bash, from the repository root): installs what the
# tests and benchmarks need when it is missing, from the package registries only, caching
# downloads and builds in $JUP2KUB_CACHE (outside the repo) so later runs are fast, and puts
# the environment's python first on PATH.
export JUP2KUB_CACHE="${JUP2KUB_CACHE:-$HOME/.cache/jup2kub}"
mkdir -p "$JUP2KUB_CACHE"

# One virtualenv per checkout (the project is installed editable into it): two clones on one
# machine, e.g. a developer's and CI's, must not repoint each other's installs.
VENV="${J2K_VENV:-$JUP2KUB_CACHE/venvs/$(printf %s "$PWD" | sha256sum | cut -c1-12)}"
# Each venv records its checkout; the venvs of checkouts that are gone (CI's fresh clones, removed
# work trees) are removed, else every clone leaves 1.3 GB behind and the disk fills (the kubelets
# of the e2e cluster then evict everything for disk pressure).
for j2k_old in "$JUP2KUB_CACHE"/venvs/*/.checkout; do
    [ -f "$j2k_old" ] || continue
    j2k_dir="$(cat "$j2k_old")"
    if [ ! -f "$j2k_dir/pyproject.toml" ] && [ "$(dirname "$j2k_old")" != "$VENV" ]; then
        rm -rf "$(dirname "$j2k_old")"
    fi
done
# a venv whose creation was interrupted has python but no pip: make it again
if [ ! -x "$VENV/bin/python" ] || ! "$VENV/bin/python" -m pip --version >/dev/null 2>&1; then
    rm -rf "$VENV"
    python3 -m venv "$VENV"
fi
[ -n "${J2K_VENV:-}" ] || printf %s "$PWD" > "$VENV/.checkout"
"$VENV/bin/python" -m pip install -q --upgrade pip >/dev/null
"$VENV/bin/python" -m pip install -q -e ".[test]"
# An editable install has no bytecode, and PYTHONDONTWRITEBYTECODE (set on some machines, this
# one included) keeps Python from caching it: every command would compile ~60 modules (60 ms).
# `pip install .` compiles at install time for users; do the same for this checkout.
"$VENV/bin/python" -m compileall -q generator/jup2kub runtime/jup2kub_runtime >/dev/null
export PATH="$VENV/bin:$PATH"

# Each tool has its own idempotent installer here (helm, Kafka, Docker, ...). They export the
# locations they set up (e.g. J2K_HELM) for the test fixtures and benchmarks.
#
# The OCI tools (35-oci-tools.sh: ORAS, cosign, the registry) are Go builds of several minutes on
# a fresh machine, and nothing else needs them during setup: they build in the background while
# the other scripts mostly download (apt, Maven, debootstrap), then the script runs again in the
# foreground to export what it built. The background build is ended if setup fails first.
j2k_oci_setup=tests/setup.d/35-oci-tools.sh
j2k_oci_log="$JUP2KUB_CACHE/oci-tools-setup.log"
( source "$j2k_oci_setup" ) >"$j2k_oci_log" 2>&1 &
j2k_oci_pid=$!
trap 'kill "$j2k_oci_pid" 2>/dev/null || true' EXIT
for setup in tests/setup.d/*.sh; do
    [ -e "$setup" ] || continue
    [ "$setup" != "$j2k_oci_setup" ] || continue
    echo "== setup: $setup" >&2
    # shellcheck source=/dev/null
    source "$setup"
done
echo "== setup: $j2k_oci_setup (built in the background: $j2k_oci_log)" >&2
wait "$j2k_oci_pid" || { cat "$j2k_oci_log" >&2; false; }
trap - EXIT
# shellcheck source=tests/setup.d/35-oci-tools.sh
source "$j2k_oci_setup"
unset j2k_oci_setup j2k_oci_log j2k_oci_pid
