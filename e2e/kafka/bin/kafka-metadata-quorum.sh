#!/bin/bash
# The distribution's bin/kafka-metadata-quorum.sh: runs org.apache.kafka.tools.MetadataQuorumCommand.
set -euo pipefail
exec "$(dirname "$0")/kafka-run-class.sh" org.apache.kafka.tools.MetadataQuorumCommand "$@"
