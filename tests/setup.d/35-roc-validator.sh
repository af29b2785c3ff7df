# rocrate-validator (PyPI roc-validator), for validating the runs' RO-Crates
# (tests/test_provenance.py), in a virtualenv of its own: it pins rich<14, and the project's venv
# has the rich its CLI is tested with (15), so installing it there would downgrade rich for
# everything else. Pinned here, in one place; cached in $JUP2KUB_CACHE/roc-validator-<version>.
# Sourced by tests/run.sh (bash, set -euo pipefail; never exits); run by
# tests/support/crate_validation.py when the environment lacks it.
# Exports J2K_ROC_VALIDATOR_PYTHON (that venv's python, which has rocrate_validator).
J2K_ROC_VALIDATOR_VERSION=0.13.0
j2k_rocv="${JUP2KUB_CACHE:-$HOME/.cache/jup2kub}/roc-validator-$J2K_ROC_VALIDATOR_VERSION"
if [ ! -f "$j2k_rocv/.complete" ]; then
    echo "35-roc-validator.sh: installing roc-validator $J2K_ROC_VALIDATOR_VERSION (once)" >&2
    rm -rf "$j2k_rocv"
    python3 -m venv "$j2k_rocv"
    "$j2k_rocv/bin/python" -m pip install -q "roc-validator==$J2K_ROC_VALIDATOR_VERSION" >&2
    touch "$j2k_rocv/.complete"
fi
J2K_ROC_VALIDATOR_PYTHON="$j2k_rocv/bin/python"
unset j2k_rocv
export J2K_ROC_VALIDATOR_PYTHON J2K_ROC_VALIDATOR_VERSION
