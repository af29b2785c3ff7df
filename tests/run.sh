#!/usr/bin/env bash
# The project's test command (README: "bash tests/run.sh"). On a fresh machine it installs
# everything the tests need (tests/env.sh), then runs pytest. Extra arguments go to pytest.
set -euo pipefail
cd "$(dirname "$0")/.."
# shellcheck source=tests/env.sh
source tests/env.sh
exec python -m pytest "$@"
