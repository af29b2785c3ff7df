"""A real single-node Apache Kafka broker (KRaft) for the runtime tests.

The jars come from tests/setup.d/30-kafka.sh (Maven Central, cached), located by ``kafka_libs``,
which the chart tests and the e2e Kafka image use too (one fetch); this module only formats a
log directory, starts ``kafka.Kafka`` on 127.0.0.1 with free ports and stops the process it
started, by pid. Stop/start keeps ports and log directory, so tests can restart the broker.
"""

from __future__ import annotations

import base64
import os
import signal
import socket
import subprocess
import time
import uuid
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
SETUP_SCRIPT = REPO / "tests" / "setup.d" / "30-kafka.sh"


def kafka_libs() -> Path:
    """The directory of Kafka jars, running the setup script if the environment lacks it."""
    home = os.environ.get("J2K_KAFKA_HOME")
    if (
        not home
        or not os.environ.get("J2K_KAFKA_VERSION")
        or not (Path(home) / "libs" / ".complete").exists()
    ):
        out = subprocess.run(
            [
                "bash",
                "-c",
                f'set -euo pipefail; source "{SETUP_SCRIPT}"; '
                'echo "$J2K_KAFKA_VERSION $J2K_KAFKA_HOME"',
            ],
            check=True,
            capture_output=True,
            text=True,
            timeout=900,
        )
        version, home = out.stdout.strip().splitlines()[-1].split(" ", 1)
        os.environ["J2K_KAFKA_HOME"] = home
        os.environ["J2K_KAFKA_VERSION"] = version
    return Path(home) / "libs"


def kafka_version() -> str:
    """The Kafka version of those jars (pinned in tools/kafka/pom.xml)."""
    kafka_libs()
    return os.environ["J2K_KAFKA_VERSION"]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


SERVER_PROPERTIES = """\
process.roles=broker,controller
node.id=1
controller.quorum.voters=1@127.0.0.1:{controller_port}
listeners=PLAINTEXT://127.0.0.1:{port},CONTROLLER://127.0.0.1:{controller_port}
advertised.listeners=PLAINTEXT://127.0.0.1:{port}
controller.listener.names=CONTROLLER
listener.security.protocol.map=PLAINTEXT:PLAINTEXT,CONTROLLER:PLAINTEXT
inter.broker.listener.name=PLAINTEXT
log.dirs={data}
num.partitions=1
offsets.topic.replication.factor=1
offsets.topic.num.partitions=4
transaction.state.log.replication.factor=1
transaction.state.log.min.isr=1
group.initial.rebalance.delay.ms=0
group.min.session.timeout.ms=1000
auto.create.topics.enable=false
log.flush.interval.messages=1
"""

LOG4J = """\
log4j.rootLogger=INFO, file
log4j.appender.file=org.apache.log4j.FileAppender
log4j.appender.file.File={log}
log4j.appender.file.layout=org.apache.log4j.PatternLayout
log4j.appender.file.layout.ConversionPattern=[%d] %p %m (%c)%n
log4j.logger.kafka.request.logger=WARN
log4j.logger.state.change.logger=WARN
log4j.logger.kafka.log.LogCleaner=WARN
"""


class KafkaBroker:
    """One broker process; ``start``/``stop`` may be called repeatedly on the same ports."""

    def __init__(self, workdir: Path) -> None:
        self.libs = kafka_libs()
        self.workdir = workdir
        self.workdir.mkdir(parents=True, exist_ok=True)
        self.port = free_port()
        self.controller_port = free_port()
        self.bootstrap = f"127.0.0.1:{self.port}"
        self.config = workdir / "server.properties"
        self.log = workdir / "broker.log"
        self.config.write_text(
            SERVER_PROPERTIES.format(
                port=self.port, controller_port=self.controller_port, data=workdir / "data"
            )
        )
        (workdir / "log4j.properties").write_text(LOG4J.format(log=self.log))
        self.proc: subprocess.Popen[bytes] | None = None
        self._java(
            "kafka.tools.StorageTool", "format", "-t", self._cluster_id(), "-c", str(self.config)
        )

    @staticmethod
    def _cluster_id() -> str:
        while True:  # kafka-storage reads an id starting with '-' as an option
            cid = base64.urlsafe_b64encode(uuid.uuid4().bytes).rstrip(b"=").decode()
            if not cid.startswith("-"):
                return cid

    def _cmd(self, main: str, *args: str) -> list[str]:
        return [
            "java",
            "-Xms128m",
            "-Xmx512m",
            "-XX:+UseSerialGC",
            "-XX:TieredStopAtLevel=1",
            f"-Dlog4j.configuration=file:{self.workdir / 'log4j.properties'}",
            "-cp",
            f"{self.libs}/*",
            main,
            *args,
        ]

    def _java(self, main: str, *args: str) -> None:
        subprocess.run(self._cmd(main, *args), check=True, capture_output=True, timeout=120)

    def start(self, timeout: float = 60.0) -> None:
        assert self.proc is None, "broker already running"
        out = (self.workdir / "stdout.log").open("ab")
        self.proc = subprocess.Popen(
            self._cmd("kafka.Kafka", str(self.config)),
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"Kafka broker exited early, see {self.workdir}/stdout.log")
            if self._started():
                return
            time.sleep(0.2)
        raise RuntimeError(f"Kafka broker not ready after {timeout}s, see {self.log}")

    def _started(self) -> bool:
        try:
            text = self.log.read_text(errors="replace")
        except FileNotFoundError:
            return False
        # KafkaRaftServer logs this once the broker is serving; count restarts.
        starts = text.count("Kafka Server started")
        return starts >= self._expected_starts()

    def _expected_starts(self) -> int:
        self._starts = getattr(self, "_starts", 0)
        if self.proc is not None and getattr(self, "_counted_for", None) is not self.proc:
            self._starts += 1
            self._counted_for = self.proc
        return self._starts

    def stop(self, timeout: float = 30.0) -> None:
        """Stop the broker we started (SIGTERM, then SIGKILL), by pid only."""
        if self.proc is None:
            return
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(10)
        self.proc = None


def topic_overrides(bootstrap: str, topic: str) -> dict[str, str]:
    """The configs set on ``topic`` itself (not inherited from the broker), by DescribeConfigs."""
    from kafka.admin import ConfigResource, ConfigResourceType, KafkaAdminClient

    admin = KafkaAdminClient(bootstrap_servers=bootstrap, request_timeout_ms=15000)
    try:
        (response,) = admin.describe_configs([ConfigResource(ConfigResourceType.TOPIC, topic)])
    finally:
        admin.close()
    ((error, message, _type, name, entries),) = response.resources
    assert error == 0, f"describe_configs {name}: {message}"
    # DescribeConfigs v1+: (name, value, read_only, source, is_sensitive, synonyms), where
    # source 1 is DYNAMIC_TOPIC_CONFIG; v0: (name, value, read_only, is_default, is_sensitive)
    overrides = {}
    for entry in entries:
        config_name, value, _read_only, source = entry[:4]
        topic_level = source == 1 if len(entry) == 6 else source is False
        if topic_level:
            overrides[config_name] = value
    return overrides
