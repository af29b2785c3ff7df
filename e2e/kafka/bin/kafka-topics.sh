#!/bin/bash
# The distribution's bin/kafka-topics.sh: runs org.apache.kafka.tools.TopicCommand.
set -euo pipefail
exec "$(dirname "$0")/kafka-run-class.sh" org.apache.kafka.tools.TopicCommand "$@"
