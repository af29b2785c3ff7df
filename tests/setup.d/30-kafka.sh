# Apache Kafka jars, fetched once for everything that runs Kafka here: the runtime tests' broker
# (real, KRaft, single node), tests/test_chart_kafka.py, the e2e apache/kafka image.
# Sourced by tests/run.sh (bash, set -euo pipefail; never exits); run by
# tests/support/kafka_broker.py (kafka_libs) when the environment lacks it. The Kafka version is
# pinned in one place: <kafka.version> in tools/kafka/pom.xml. The jars come from Maven Central
# through Maven (dependency:copy-dependencies), cached in
# $JUP2KUB_CACHE/kafka-<version>-<pom digest>/libs (a changed pom gets a new directory; one in use
# by another checkout is never replaced).
# Exports J2K_KAFKA_HOME (that directory's parent; jars in $J2K_KAFKA_HOME/libs) and
# J2K_KAFKA_VERSION.
j2k_kafka_pom="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)/tools/kafka/pom.xml"
J2K_KAFKA_VERSION="$(sed -n 's:.*<kafka.version>\(.*\)</kafka.version>.*:\1:p' "$j2k_kafka_pom" | head -n1)"
if [ -z "$J2K_KAFKA_VERSION" ]; then
    echo "30-kafka.sh: no <kafka.version> in $j2k_kafka_pom" >&2
    false
fi
J2K_KAFKA_HOME="${JUP2KUB_CACHE:-$HOME/.cache/jup2kub}/kafka-$J2K_KAFKA_VERSION-$(sha256sum "$j2k_kafka_pom" | cut -c1-12)"
if [ ! -f "$J2K_KAFKA_HOME/libs/.complete" ]; then
    j2k_apt_missing=()
    command -v java >/dev/null 2>&1 || j2k_apt_missing+=(openjdk-17-jre-headless)
    command -v mvn >/dev/null 2>&1 || j2k_apt_missing+=(maven)
    if [ "${#j2k_apt_missing[@]}" -gt 0 ]; then
        apt-get update -qq >/dev/null
        DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${j2k_apt_missing[@]}" >/dev/null
    fi
    unset j2k_apt_missing
    echo "30-kafka.sh: fetching Apache Kafka $J2K_KAFKA_VERSION jars from Maven Central (once)" >&2
    rm -rf "$J2K_KAFKA_HOME.tmp"
    mvn -q -B -Dstyle.color=never -f "$j2k_kafka_pom" dependency:copy-dependencies \
        -DoutputDirectory="$J2K_KAFKA_HOME.tmp/libs" >&2
    touch "$J2K_KAFKA_HOME.tmp/libs/.complete"
    rm -rf "$J2K_KAFKA_HOME"
    mv "$J2K_KAFKA_HOME.tmp" "$J2K_KAFKA_HOME"
fi
unset j2k_kafka_pom
export J2K_KAFKA_HOME J2K_KAFKA_VERSION
