#!/usr/bin/env bash
# Rebuilds the prebuilt JupyterLab extension into generator/jup2kub/labextension/ (committed:
# users install it with pip, no Node needed). Needs Node/npm (npm registry) and JupyterLab
# (pip install -e '.[lab]'); then reinstall the package so the assets land where Lab looks.
set -euo pipefail
cd "$(dirname "$0")"
npm ci --no-audit --no-fund --loglevel=error
npx tsc
core="$(python -c 'import jupyterlab, os; print(os.path.join(os.path.dirname(jupyterlab.__file__), "staging"))')"
rm -rf ../generator/jup2kub/labextension
node node_modules/@jupyterlab/builder/lib/build-labextension.js --core-path "$core" .
