#!/usr/bin/env bash
# The benchmark command (README: "bash bench/run.sh"): the same environment as the tests
# (tests/env.sh installs what is missing), then `python -m bench` with the extra arguments.
set -euo pipefail
cd "$(dirname "$0")/.."
# shellcheck source=tests/env.sh
source tests/env.sh
# The checkout is installed editable; a user's `pip install .` compiles the package's bytecode
# at install time. Compile it here too, so that commands measured under PYTHONDONTWRITEBYTECODE
# (set on some machines, this one included) do not compile ~60 modules at every start (60 ms).
python -m compileall -q generator/jup2kub runtime/jup2kub_runtime >/dev/null
exec python -m bench "$@"
