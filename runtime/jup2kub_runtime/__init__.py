"""Jup2Kub step runtime: runs one pipeline step inside its container.

This package is shipped in every step image and must never import ``jup2kub`` (the generator);
it depends only on kafka-python, flask and cloudpickle.

Modules, Kafka-free first (the local ``jup2kub run`` uses only these):

- ``spec``      ``StepSpec`` (+ ``Cell``, ``ReplayCell``, ``SPEC_VERSION``): the step.json bundle
- ``cells``     ``execute_step(spec, inputs, overrides)``: runs the cells, captures outputs
- ``state``     ``StateStore(root)``: runs/<run_id>/<step>/ values, outputs.json, COMPLETE marker
- ``valuefile`` the file format of one stored value (``pickle5-oob``; older ``cloudpickle``)
- ``step_run``  ``run_step(spec, store, run_id, params)`` and the single-execution command
                ``python -m jup2kub_runtime.step_run --spec step.json --state DIR --run-id ID``
                (``STEP_RUN_MODULE`` below names it for callers)
- ``preimport`` imports ahead, quietly, what steps import (long-lived processes)
- ``forkserver`` forks each local step's process from a warm one (Linux; ``jup2kub run``)
- ``errors``    permanent (dead-letter) vs temporary (retry) error classes, ``ErrorRecord``
- ``names``     the valid pipeline/step names, identifiers, topic names and run ids
- ``states``    ``StepState``: the one vocabulary of step states (status messages, /runs, CLI)
- ``cachekey``  a step's cache key (code, inputs, parameters, files, environment) by parts
- ``stepcache`` the step cache's verified entries (``run_step(..., cache=...)``, local runs)

Kafka side (``python -m jup2kub_runtime``): ``config`` (J2K_* environment), ``topics`` (names),
``messages`` (JSON messages and their validation), ``transport`` (kafka-python), ``loop``
(consume-execute-produce), ``health`` (Flask /healthz, /readiness, /metrics).
"""

__version__ = "0.1.0"

#: ``python -m STEP_RUN_MODULE ...``: the single-execution command (``step_run.main``). Named
#: here, not in ``step_run``, so that callers (the generator) get it without importing
#: ``cells``, which sets MPLBACKEND for step processes when imported.
STEP_RUN_MODULE = f"{__name__}.step_run"
#: ``python -m FORK_SERVER_MODULE ...``: the local runner's fork server (``forkserver.main``)
FORK_SERVER_MODULE = f"{__name__}.forkserver"
