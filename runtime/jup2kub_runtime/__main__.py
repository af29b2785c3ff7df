"""Entrypoint of every step image: ``python -m jup2kub_runtime`` (configured by J2K_* vars)."""

from __future__ import annotations

import functools
import logging
import os
import sys
import threading

from .contract.config import HEALTH_PORT_LINE, Config
from .contract.errors import ConfigError, SpecError, StepRuntimeError
from .contract.spec import StepSpec
from .serving import log_summary
from .serving.health import Health, HealthServer
from .serving.history import recent_runs, run_outputs
from .serving.loop import StepLoop
from .serving.transport import Transport
from .storage.state_store import StateStore


def main() -> int:
    try:
        cfg = Config.from_env()
    except ConfigError as exc:
        print(f"jup2kub-runtime: configuration error: {exc}", file=sys.stderr)
        return 2
    logging.basicConfig(
        level=getattr(logging, cfg.log_level, logging.INFO),
        stream=sys.stderr,
        format=f"%(asctime)s %(levelname)s {cfg.step}[{os.getpid()}] %(name)s: %(message)s",
    )
    logging.getLogger("kafka").setLevel(logging.WARNING)
    log_summary.install()
    try:
        spec = StepSpec.load(cfg.code_path)
    except SpecError as exc:
        print(f"jup2kub-runtime: J2K_CODE_PATH: {exc}", file=sys.stderr)
        return 2
    if (spec.pipeline, spec.step) != (cfg.pipeline, cfg.step):
        print(
            f"jup2kub-runtime: J2K_CODE_PATH holds step {spec.pipeline}/{spec.step}, but "
            f"J2K_PIPELINE/J2K_STEP say {cfg.pipeline}/{cfg.step}",
            file=sys.stderr,
        )
        return 2
    store = StateStore(cfg.state_path, fsync=cfg.fsync)
    # temp files of writers killed earlier (a long-lived volume must not accumulate them)
    threading.Thread(target=store.sweep_temporaries, name="sweep", daemon=True).start()
    health = Health(cfg.pipeline, cfg.step, cfg.liveness_stall_seconds, store.writable)
    health.runs_provider = functools.partial(recent_runs, store, cfg.step)
    health.outputs_provider = functools.partial(run_outputs, store, cfg.step)
    try:
        server = HealthServer(health, cfg.health_host, cfg.port)
    except OSError as exc:
        print(
            f"jup2kub-runtime: J2K_PORT: cannot listen on {cfg.health_host}:{cfg.port}: "
            f"{exc.strerror or exc}",
            file=sys.stderr,
        )
        return 2
    if cfg.port == 0:  # a port the system chose: say which (``jup2kub run --kafka`` reads it)
        print(f"{HEALTH_PORT_LINE}{server.port}", file=sys.stderr, flush=True)
    server.start()
    try:
        code = StepLoop(cfg, spec, store, Transport(cfg), health).run()
    except StepRuntimeError as exc:
        logging.getLogger("jup2kub_runtime").error("%s", exc)
        code = 1
    logging.shutdown()
    sys.stdout.flush()
    sys.stderr.flush()
    # A step abandoned at shutdown may still run in its daemon thread: do not wait for it.
    os._exit(code)


if __name__ == "__main__":
    sys.exit(main())
