#!/usr/bin/env bash
# The benchmark command (README: "bash bench/run.sh"): the same environment as the tests
# (tests/env.sh installs what is missing), then `python -m bench` with the extra arguments.
set -euo pipefail
cd "$(dirname "$0")/.."
# shellcheck source=tests/env.sh
source tests/env.sh
exec python -m bench "$@"
