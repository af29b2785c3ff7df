#!/bin/bash
# The distribution's bin/kafka-console-consumer.sh: runs org.apache.kafka.tools.consumer.ConsoleConsumer.
set -euo pipefail
exec "$(dirname "$0")/kafka-run-class.sh" org.apache.kafka.tools.consumer.ConsoleConsumer "$@"
