"""Jup2Kub step runtime: runs one pipeline step inside its container.

This package is shipped in every step image and must never import ``jup2kub`` (the generator);
it depends only on kafka-python, flask, cloudpickle, prometheus_client and OpenTelemetry's SDK
and OTLP/HTTP exporter (imported only when traces are on). Its packages, each importing only
those below it (the import-linter contract in pyproject.toml):

- ``serving``   the Kafka side (``python -m jup2kub_runtime``): ``loop`` (consume-execute-
                produce), ``transport`` (kafka-python), ``offsets`` + ``outcomes`` (what is
                committed when), ``map_distribution`` (a map cell's chunks over all replicas),
                ``health`` (Flask /healthz, /readiness, /metrics, /runs), ``metrics``
                (prometheus_client, a registry per process), ``history`` (/runs),
                ``log_summary``
- ``execution`` running a step, Kafka-free (the local ``jup2kub run`` uses only this and below):
                ``step_run`` (one step's run, ``run_step``, and the single-execution command
                ``python -m jup2kub_runtime.execution.step_run``: ``STEP_RUN_MODULE`` below),
                ``cell_runner`` (``execute_step``: the cells as a kernel runs them, with
                ``output_capture``, ``rich_display``, ``kernel_imports``, ``shell``),
                ``map_chunks`` (a map cell's elements in parallel chunks), ``guards``,
                ``randomness``, ``placeholders``, ``preimport`` (imports ahead, quietly) +
                ``forkserver`` (the local runner's warm step processes), ``lifetime``,
                ``tracing`` (spans, or a no-op when off) + ``otel`` (the SDK behind it)
- ``storage``   the state volume (``state_store``: ``StateStore``), the value file format
                (``valuefile``), the step cache (``cachekey`` + ``stepcache``)
- ``contract``  the wire contract the generator imports: ``config`` (the ``J2K_*``
                environment), ``topics``, ``messages``, ``states`` (``StepState``), ``errors``
                (``ErrorRecord``), ``spec`` (step.json) + ``mapspec``, ``valid_names``,
                ``metrics`` (the names, types and labels served at /metrics), ``tracing`` (the
                spans' names and attributes, the ``traceparent`` header, the OTEL_* switch)
"""

__version__ = "0.1.0"

#: ``python -m STEP_RUN_MODULE ...``: the single-execution command (``step_run.main``). Named
#: here, not in ``step_run``, so that callers (the generator) get it without importing
#: ``cell_runner``, which sets MPLBACKEND for step processes when imported.
STEP_RUN_MODULE = f"{__name__}.execution.step_run"
#: ``python -m FORK_SERVER_MODULE ...``: the local runner's fork server (``forkserver.main``)
FORK_SERVER_MODULE = f"{__name__}.execution.forkserver"
