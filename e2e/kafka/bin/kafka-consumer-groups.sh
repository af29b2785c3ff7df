#!/bin/bash
# The distribution's bin/kafka-consumer-groups.sh: runs org.apache.kafka.tools.consumer.group.ConsumerGroupCommand.
set -euo pipefail
exec "$(dirname "$0")/kafka-run-class.sh" org.apache.kafka.tools.consumer.group.ConsumerGroupCommand "$@"
