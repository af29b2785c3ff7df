#!/bin/bash
# The distribution's bin/kafka-server-start.sh: kafka.Kafka with the broker defaults.
set -euo pipefail
if [ $# -lt 1 ]; then
  echo "USAGE: $0 [-daemon] server.properties [--override property=value]*" >&2
  exit 1
fi
base_dir=$(dirname "$0")
export KAFKA_LOG4J_OPTS="${KAFKA_LOG4J_OPTS:--Dlog4j.configuration=file:$base_dir/../config/log4j.properties}"
export KAFKA_HEAP_OPTS="${KAFKA_HEAP_OPTS:--Xmx1G -Xms1G}"
extra_args="${EXTRA_ARGS:--name kafkaServer -loggc}"
if [ "${1:-}" = "-daemon" ]; then
  extra_args="-daemon $extra_args"
  shift
fi
# shellcheck disable=SC2086
exec "$base_dir/kafka-run-class.sh" $extra_args kafka.Kafka "$@"
