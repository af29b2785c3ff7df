#!/bin/bash
# The distribution's bin/kafka-console-producer.sh: runs kafka.tools.ConsoleProducer.
set -euo pipefail
exec "$(dirname "$0")/kafka-run-class.sh" kafka.tools.ConsoleProducer "$@"
