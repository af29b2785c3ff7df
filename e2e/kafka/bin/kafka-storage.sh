#!/bin/bash
# The distribution's bin/kafka-storage.sh: runs kafka.tools.StorageTool.
set -euo pipefail
exec "$(dirname "$0")/kafka-run-class.sh" kafka.tools.StorageTool "$@"
