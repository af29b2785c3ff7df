# Jup2Kub per-step layer: the step's locked packages and data files, on top of the shared
# runtime layer. Built with network "none" from wheels in the build context (see
# runtime.Dockerfile). The install stage keeps the wheels out of the final image.
# The step's code bundle (step.json) is not in the image: the chart mounts it read-only at
# J2K_CODE_PATH (/app/step), so steps of any pipeline needing the same packages share an image.
ARG RUNTIME_IMAGE

FROM ${RUNTIME_IMAGE} AS build
# Marks the throw-away install stage, which the build removes afterwards.
LABEL io.jup2kub.stage=build
USER 0
COPY wheels/ /tmp/wheels/
COPY step-install.lock /tmp/step-install.lock
# step-install.lock is requirements.lock less what the runtime layer already has (same versions).
RUN if grep -q '==' /tmp/step-install.lock; then \
      python -m pip install --quiet --disable-pip-version-check --no-cache-dir --no-index \
        --find-links /tmp/wheels --require-hashes --no-deps --target /opt/jup2kub/step-site \
        -r /tmp/step-install.lock; \
    fi \
 && mkdir -p /opt/jup2kub/step-site \
 && python -m pip check --disable-pip-version-check \
 && find /opt/jup2kub/step-site -mindepth 2 -type d -name tests -prune -exec rm -rf {} +
# ^ packages' own test suites (pandas/tests alone is ~60 MB with its bytecode) are never imported
#   by a pipeline; top-level packages named "tests" (depth 1) are kept.

FROM ${RUNTIME_IMAGE}
COPY --from=build /opt/jup2kub/step-site /opt/jup2kub/step-site
# @DATA_FILES@ (data files the trace found, copied at the path the notebook read them from)
COPY requirements.lock /app/requirements.lock
