"""Configuration from the environment the Helm chart sets; bad settings stop the process.

``Config.from_env`` raises ConfigError naming the variable; ``__main__`` prints it and exits 2.
``Config.for_step(...).to_env()`` is that environment for one step of a pipeline, for whoever
starts a step process (the generator's local runner), so the wiring is derived in one place.
"""

from __future__ import annotations

import dataclasses
import os
import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from .errors import ConfigError
from .topics import (
    consumer_group,
    dead_letter_topic,
    input_topics,
    output_topics,
    status_topic,
)
from .valid_names import NAME_RE, TOPIC_RE, secret_parameter_env

_HOSTPORT_RE = re.compile(r"^(\[[0-9A-Fa-f:.]+\]|[A-Za-z0-9._-]+):(\d{1,5})$")

#: where the chart mounts the shared state volume (its ``storage.mountPath``)
DEFAULT_STATE_PATH = Path("/var/lib/jup2kub/state")
#: where a step image holds its step.json (the chart's ``runtime.codePath``)
DEFAULT_CODE_PATH = Path("/app/step")
#: the HTTP port of /healthz, /readiness, /metrics and /runs (the chart's ``runtime.port``)
DEFAULT_PORT = 8080
#: what a step does when it breaks an assumption of the analysis (it changed an input it was
#: to leave alone, or drew from a seeded global random generator where no draw was seen):
#: fail the run (permanently), warn on the step's stderr and go on, or not check at all
GUARD_MODES = ("fail", "warn", "off")
DEFAULT_GUARD_MODE = "fail"
#: inputs stored larger than this are not fingerprinted. A fingerprint costs what pickling the
#: value costs, twice per input (after loading, after the cells); measured on 2 shared cores:
#: ~2 GiB/s for numeric arrays and frames (out-of-band buffers, hashed in place), 25-50 MiB/s
#: for object-heavy values (strings, dicts of lists): at most ~30 ms resp. ~1.3-2.5 s per input
DEFAULT_GUARD_MAX_BYTES = 32 << 20
#: how many of a map cell's chunks one process runs at once (default: the CPU count); the local
#: runner sets it to its own limit
MAP_JOBS_ENV = "J2K_MAP_JOBS"
#: "elements": a replica that only runs map chunks (``serving.loop.StepLoop._elements_only``)
MAP_ROLE_ENV = "J2K_MAP_ROLE"
#: a file the runtime also writes what the cells print to, as they print it (``jup2kub run
#: --kafka --log-output`` tails it); unset, as on a cluster: the cells' output is only recorded
CELL_OUTPUT_ENV = "J2K_CELL_OUTPUT"


def min_insync_replicas(replication_factor: int) -> int:
    """The ``min.insync.replicas`` of the pipeline's topics for a replication factor (0: leave
    the broker's default). Kafka's usual advice: with 3 replicas, an ``acks=all`` write needs 2
    (one broker may be lost without losing an acknowledged write or blocking producers); below
    3 replicas any setting above 1 blocks producers whenever one broker is down. The chart's
    ``jup2kub.topics.minInsyncReplicas`` computes the same."""
    return min(2, replication_factor - 1) if replication_factor >= 3 else 0


@dataclass(frozen=True)
class GuardSettings:
    """The runtime checks of the analysis' assumptions (J2K_GUARD_MODE, J2K_GUARD_MAX_BYTES);
    the single-execution command reads them alone, the Kafka runtime as part of Config."""

    mode: str = DEFAULT_GUARD_MODE
    max_bytes: int = DEFAULT_GUARD_MAX_BYTES

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None) -> GuardSettings:
        e = os.environ if env is None else env
        mode = (e.get("J2K_GUARD_MODE") or DEFAULT_GUARD_MODE).strip().lower()
        if mode not in GUARD_MODES:
            raise ConfigError("J2K_GUARD_MODE", f"{mode!r} is not one of {', '.join(GUARD_MODES)}")
        return cls(mode, _int(e, "J2K_GUARD_MAX_BYTES", DEFAULT_GUARD_MAX_BYTES, minimum=0))


@dataclass(frozen=True)
class Config:
    """All settings of one step process (see the chart's values for the documented ones)."""

    bootstrap_servers: list[str]
    pipeline: str
    step: str
    input_topics: list[str]
    output_topics: list[str]
    status_topic: str
    dead_letter_topic: str
    consumer_group: str
    state_path: Path
    code_path: Path
    max_retries: int = 3
    retry_backoff_seconds: float = 1.0
    retry_backoff_max_seconds: float = 60.0
    step_timeout_seconds: float = 0.0
    port: int = DEFAULT_PORT
    # Optional knobs (defaults suit a cluster; the tests shorten the timeouts):
    health_host: str = "0.0.0.0"
    max_message_bytes: int = 262144
    topic_partitions: int = 3
    topic_replication_factor: int = 1
    #: ``min.insync.replicas`` of the topics this step creates (0: the broker's default);
    #: None: ``min_insync_replicas(topic_replication_factor)``
    topic_min_insync_replicas: int | None = None
    max_poll_interval_ms: int = 300000
    session_timeout_ms: int = 10000
    shutdown_grace_seconds: float = 25.0
    liveness_stall_seconds: float = 60.0
    fsync: bool = True
    #: run each run in its own directory <state>/runs/<run_id>/files, so relative file paths in
    #: the notebook's code are shared by the steps of a run and never by two runs
    run_files: bool = True
    log_level: str = "INFO"
    #: see GuardSettings
    guard_mode: str = DEFAULT_GUARD_MODE
    guard_max_bytes: int = DEFAULT_GUARD_MAX_BYTES

    def __post_init__(self) -> None:
        if self.topic_min_insync_replicas is None:
            derived = min_insync_replicas(self.topic_replication_factor)
            object.__setattr__(self, "topic_min_insync_replicas", derived)

    @property
    def topic_configs(self) -> dict[str, str]:
        """The topic-level configs of every topic this step creates (NewTopic topic_configs)."""
        if self.topic_min_insync_replicas:
            return {"min.insync.replicas": str(self.topic_min_insync_replicas)}
        return {}

    @property
    def guards(self) -> GuardSettings:
        return GuardSettings(self.guard_mode, self.guard_max_bytes)

    def retry_delay(self, attempt: int) -> float:
        """Backoff before retry number ``attempt`` (1-based): doubled each time, capped."""
        delay: float = self.retry_backoff_seconds * 2.0 ** (attempt - 1)
        return min(delay, self.retry_backoff_max_seconds)

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None) -> Config:
        e = os.environ if env is None else env
        pipeline = _name(e, "J2K_PIPELINE")
        step = _name(e, "J2K_STEP")
        grace = _float(e, "J2K_SHUTDOWN_GRACE_SECONDS", 25.0)
        guards = GuardSettings.from_env(e)
        replication = _int(e, "J2K_TOPIC_REPLICATION_FACTOR", 1, minimum=1)
        min_insync = _int(
            e,
            "J2K_TOPIC_MIN_INSYNC_REPLICAS",
            min_insync_replicas(replication),
            minimum=0,
            maximum=replication,
        )
        return cls(
            bootstrap_servers=_servers(e),
            pipeline=pipeline,
            step=step,
            input_topics=_topics(e, "J2K_INPUT_TOPICS", required=True),
            output_topics=_topics(e, "J2K_OUTPUT_TOPICS", required=False),
            status_topic=_topic(e, "J2K_STATUS_TOPIC", status_topic(pipeline)),
            dead_letter_topic=_topic(e, "J2K_DEAD_LETTER_TOPIC", dead_letter_topic(pipeline)),
            consumer_group=_topic(e, "J2K_CONSUMER_GROUP", consumer_group(pipeline, step)),
            state_path=Path(_required(e, "J2K_STATE_PATH")),
            code_path=Path(e.get("J2K_CODE_PATH") or DEFAULT_CODE_PATH),
            max_retries=_int(e, "J2K_MAX_RETRIES", 3, minimum=0),
            retry_backoff_seconds=_float(e, "J2K_RETRY_BACKOFF_SECONDS", 1.0),
            retry_backoff_max_seconds=_float(e, "J2K_RETRY_BACKOFF_MAX_SECONDS", 60.0),
            step_timeout_seconds=_float(e, "J2K_STEP_TIMEOUT_SECONDS", 0.0),
            port=_int(e, "J2K_PORT", DEFAULT_PORT, minimum=0, maximum=65535),
            health_host=e.get("J2K_HEALTH_HOST") or "0.0.0.0",
            max_message_bytes=_int(e, "J2K_MAX_MESSAGE_BYTES", 262144, minimum=1024),
            topic_partitions=_int(e, "J2K_TOPIC_PARTITIONS", 3, minimum=1),
            topic_replication_factor=replication,
            topic_min_insync_replicas=min_insync,
            max_poll_interval_ms=_int(e, "J2K_MAX_POLL_INTERVAL_MS", 300000, minimum=1000),
            session_timeout_ms=_int(e, "J2K_SESSION_TIMEOUT_MS", 10000, minimum=1000),
            shutdown_grace_seconds=grace,
            liveness_stall_seconds=_float(e, "J2K_LIVENESS_STALL_SECONDS", 60.0),
            fsync=_bool(e, "J2K_FSYNC", True),
            run_files=_bool(e, "J2K_RUN_FILES", True),
            log_level=(e.get("J2K_LOG_LEVEL") or "INFO").upper(),
            guard_mode=guards.mode,
            guard_max_bytes=guards.max_bytes,
        )

    def to_env(self) -> dict[str, str]:
        """The J2K_* variables that ``from_env`` reads back to this Config (every field, as
        J2K_<FIELD NAME>)."""
        return {
            f"J2K_{f.name.upper()}": _env_value(getattr(self, f.name))
            for f in dataclasses.fields(self)
        }

    @classmethod
    def for_step(
        cls,
        pipeline: str,
        step: str,
        upstream: Sequence[str],
        downstream: Sequence[str],
        bootstrap: str | Sequence[str],
        state_path: str | os.PathLike[str] = DEFAULT_STATE_PATH,
        code_path: str | os.PathLike[str] = DEFAULT_CODE_PATH,
        **knobs: Any,
    ) -> Config:
        """One step's settings, its topics and group derived from its place in the DAG: a
        root step reads ``<pipeline>.runs``, any other one the edges from its upstream steps.
        ``knobs`` are the optional fields (``port=``, ``max_retries=``, ...). Validated like
        ``from_env`` (ConfigError names the variable)."""
        servers = bootstrap.split(",") if isinstance(bootstrap, str) else list(bootstrap)
        cfg = cls(
            bootstrap_servers=[s.strip() for s in servers if s.strip()],
            pipeline=pipeline,
            step=step,
            input_topics=input_topics(pipeline, step, upstream),
            output_topics=output_topics(pipeline, step, downstream),
            status_topic=status_topic(pipeline),
            dead_letter_topic=dead_letter_topic(pipeline),
            consumer_group=consumer_group(pipeline, step),
            state_path=Path(state_path),
            code_path=Path(code_path),
            **knobs,
        )
        return cls.from_env(cfg.to_env())


def _env_value(value: object) -> str:
    """A field as ``from_env`` parses it: lists comma-joined, booleans 1/0, floats exact."""
    if isinstance(value, list):
        return ",".join(str(v) for v in value)
    if isinstance(value, bool):
        return "1" if value else "0"
    if isinstance(value, float):
        return repr(value)
    return str(value)


def _required(e: Mapping[str, str], var: str) -> str:
    value = e.get(var, "").strip()
    if not value:
        raise ConfigError(var, "is required but not set")
    return value


def _name(e: Mapping[str, str], var: str) -> str:
    value = _required(e, var)
    if not NAME_RE.match(value):
        raise ConfigError(var, f"{value!r} is not a valid name (1-63 letters, digits, '_' or '-')")
    return value


def _servers(e: Mapping[str, str]) -> list[str]:
    var = "J2K_BOOTSTRAP_SERVERS"
    items = [s.strip() for s in _required(e, var).split(",") if s.strip()]
    for item in items:
        m = _HOSTPORT_RE.match(item)
        if not m or not 0 < int(m.group(2)) < 65536:
            raise ConfigError(var, f"{item!r} is not host:port")
    if not items:
        raise ConfigError(var, "lists no host:port")
    return items


def _topic(e: Mapping[str, str], var: str, default: str) -> str:
    value = (e.get(var) or "").strip() or default
    if not TOPIC_RE.match(value):
        raise ConfigError(var, f"{value!r} is not a valid Kafka topic or group name")
    return value


def _topics(e: Mapping[str, str], var: str, *, required: bool) -> list[str]:
    raw = _required(e, var) if required else e.get(var, "")
    items = [t.strip() for t in raw.split(",") if t.strip()]
    if required and not items:
        raise ConfigError(var, "lists no topic")
    for t in items:
        if not TOPIC_RE.match(t):
            raise ConfigError(var, f"{t!r} is not a valid Kafka topic name")
    return items


def _int(
    e: Mapping[str, str],
    var: str,
    default: int,
    *,
    minimum: int | None = None,
    maximum: int | None = None,
) -> int:
    raw = (e.get(var) or "").strip()
    if not raw:
        return default
    try:
        value = int(raw)
    except ValueError:
        raise ConfigError(var, f"{raw!r} is not an integer") from None
    if (minimum is not None and value < minimum) or (maximum is not None and value > maximum):
        raise ConfigError(var, f"{value} is out of range")
    return value


def _float(e: Mapping[str, str], var: str, default: float) -> float:
    raw = (e.get(var) or "").strip()
    if not raw:
        return default
    try:
        value = float(raw)
    except ValueError:
        raise ConfigError(var, f"{raw!r} is not a number") from None
    if not value >= 0 or value == float("inf"):
        raise ConfigError(var, f"{raw!r} must be a finite number >= 0")
    return value


def _bool(e: Mapping[str, str], var: str, default: bool) -> bool:
    raw = (e.get(var) or "").strip().lower()
    if not raw:
        return default
    if raw in ("1", "true", "yes", "on"):
        return True
    if raw in ("0", "false", "no", "off"):
        return False
    raise ConfigError(var, f"{raw!r} is not a boolean")


#: what a runtime prints with its health server's port when J2K_PORT=0 let the system choose
HEALTH_PORT_LINE = "jup2kub-runtime: health server port "


def secret_parameters(names: Iterable[str]) -> dict[str, str]:
    """The values of the secret parameters ``names`` from this process's environment (the
    chart maps them from Kubernetes Secrets, ``jup2kub run`` from its own environment)."""
    values = {name: os.environ.get(secret_parameter_env(name)) for name in names}
    missing = sorted(name for name, value in values.items() if value is None)
    if missing:
        name = missing[0]
        raise ConfigError(
            secret_parameter_env(name),
            f"not set, so the secret parameter {name} has no value; on the cluster set "
            f"secretParameters.{name}.secret (the Kubernetes Secret) in the chart's values, "
            f"with jup2kub run set {name.upper()} in the environment",
        )
    return {name: value for name, value in values.items() if value is not None}
