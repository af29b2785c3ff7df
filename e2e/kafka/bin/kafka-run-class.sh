#!/bin/bash
# Runs a Kafka main class with the jars in ../libs: the contract of the Apache Kafka
# distribution's bin/kafka-run-class.sh (same environment variables), for the locally built
# apache/kafka-compatible image (the distribution's scripts are not on Maven Central).
#   KAFKA_HEAP_OPTS, KAFKA_JVM_PERFORMANCE_OPTS, KAFKA_GC_LOG_OPTS, KAFKA_LOG4J_OPTS, KAFKA_OPTS,
#   KAFKA_JMX_OPTS/JMX_PORT, LOG_DIR, JAVA_HOME, CLASSPATH; options -name NAME, -loggc, -daemon
set -euo pipefail
if [ $# -lt 1 ]; then
  echo "USAGE: $0 [-daemon] [-name servicename] [-loggc] classname [opts]" >&2
  exit 1
fi
base_dir=$(cd "$(dirname "$0")/.." && pwd)

daemon_name=""
gc_log_enabled=false
daemon_mode=false
while [ $# -gt 0 ]; do
  case "$1" in
    -name) daemon_name="$2"; shift 2 ;;
    -loggc) gc_log_enabled=true; shift ;;
    -daemon) daemon_mode=true; shift ;;
    *) break ;;
  esac
done

cp="$base_dir/libs/*"
if [ -n "${CLASSPATH:-}" ]; then cp="$CLASSPATH:$cp"; fi

LOG_DIR="${LOG_DIR:-$base_dir/logs}"
mkdir -p "$LOG_DIR"

KAFKA_LOG4J_OPTS="${KAFKA_LOG4J_OPTS:--Dlog4j.configuration=file:$base_dir/config/tools-log4j.properties}"
KAFKA_LOG4J_OPTS="-Dkafka.logs.dir=$LOG_DIR $KAFKA_LOG4J_OPTS"
KAFKA_HEAP_OPTS="${KAFKA_HEAP_OPTS:--Xmx256M}"
KAFKA_JVM_PERFORMANCE_OPTS="${KAFKA_JVM_PERFORMANCE_OPTS:--server -XX:+UseG1GC -XX:MaxGCPauseMillis=20 -XX:InitiatingHeapOccupancyPercent=35 -XX:+ExplicitGCInvokesConcurrent -XX:MaxInlineLevel=15 -Djava.awt.headless=true}"

KAFKA_JMX_OPTS="${KAFKA_JMX_OPTS:-}"
if [ -n "${JMX_PORT:-}" ]; then
  KAFKA_JMX_OPTS="${KAFKA_JMX_OPTS:--Dcom.sun.management.jmxremote -Dcom.sun.management.jmxremote.authenticate=false -Dcom.sun.management.jmxremote.ssl=false} -Dcom.sun.management.jmxremote.port=$JMX_PORT"
fi

gc_opts=""
if [ "$gc_log_enabled" = true ] && [ -n "$daemon_name" ]; then
  gc_opts="${KAFKA_GC_LOG_OPTS:--Xlog:gc*:file=$LOG_DIR/$daemon_name-gc.log:time,tags:filecount=10,filesize=100M}"
fi

if [ -n "${JAVA_HOME:-}" ]; then java="$JAVA_HOME/bin/java"; else java=java; fi

# shellcheck disable=SC2086
set -- "$java" $KAFKA_HEAP_OPTS $KAFKA_JVM_PERFORMANCE_OPTS $gc_opts $KAFKA_JMX_OPTS \
  $KAFKA_LOG4J_OPTS -cp "$cp" ${KAFKA_OPTS:-} "$@"
if [ "$daemon_mode" = true ]; then
  nohup "$@" > "$LOG_DIR/${daemon_name:-kafka}.out" 2>&1 < /dev/null &
else
  exec "$@"
fi
