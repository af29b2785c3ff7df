# Jup2Kub shared runtime layer: Python, the step runtime (jup2kub_runtime) with its pinned
# dependencies, a non-root user and the entrypoint. Every step image starts FROM it, so it is
# built (and stored, and pulled) once per base image and runtime lock.
#
# Built with network "none": the wheels come from the build context, where jup2kub resolved
# them on the build host for this image's Python and platform, and pip installs exactly the
# locked files (--no-index --require-hashes). Nothing in the build reaches a package index.
#
# Read-only root filesystem: nothing is written at run time outside /tmp (HOME, matplotlib's
# config/cache) and the working directory, the shared state volume's mount point.
ARG BASE_IMAGE=python:3.11-slim

FROM ${BASE_IMAGE} AS build
# Marks the throw-away install stage, which the build removes afterwards.
LABEL io.jup2kub.stage=build
COPY wheels/ /tmp/wheels/
COPY runtime.lock /tmp/runtime.lock
COPY jup2kub_runtime/ /tmp/jup2kub_runtime/
RUN python3 -m venv /opt/jup2kub/venv \
 && /opt/jup2kub/venv/bin/python -m pip install --quiet --disable-pip-version-check \
      --no-cache-dir --no-index --find-links /tmp/wheels --require-hashes -r /tmp/runtime.lock \
 && site="$(/opt/jup2kub/venv/bin/python -c 'import sysconfig; print(sysconfig.get_paths()["purelib"])')" \
 && cp -r /tmp/jup2kub_runtime "$site/jup2kub_runtime" \
 && echo /opt/jup2kub/step-site > "$site/jup2kub-step-site.pth" \
 && /opt/jup2kub/venv/bin/python -m compileall -q "$site/jup2kub_runtime" \
 && /opt/jup2kub/venv/bin/python -m pip check --disable-pip-version-check

FROM ${BASE_IMAGE}
# always passed by the build (images.DEFAULT_WORKDIR: the runtime's default state path)
ARG WORKDIR
COPY --from=build /opt/jup2kub /opt/jup2kub
# uid/gid 10001 as in the chart's podSecurityContext; numeric USER so runAsNonRoot can verify it.
RUN (grep -q '^[^:]*:[^:]*:10001:' /etc/passwd \
      || echo 'jup2kub:x:10001:10001:jup2kub step:/tmp:/usr/sbin/nologin' >> /etc/passwd) \
 && (grep -q '^[^:]*:[^:]*:10001:' /etc/group || echo 'jup2kub:x:10001:' >> /etc/group) \
 && mkdir -p /app/step /opt/jup2kub/step-site "$WORKDIR" \
 && chown 10001:10001 "$WORKDIR"
ENV LANG=C.UTF-8 \
    PATH=/opt/jup2kub/venv/bin:/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin \
    VIRTUAL_ENV=/opt/jup2kub/venv \
    HOME=/tmp \
    MPLCONFIGDIR=/tmp/matplotlib \
    MPLBACKEND=Agg \
    PYTHONUNBUFFERED=1 \
    PYTHONDONTWRITEBYTECODE=1 \
    J2K_CODE_PATH=/app/step \
    J2K_PORT=8080
# Files one step writes and another reads (relative paths) land on the shared volume, as with
# `jup2kub run` in one directory: the working directory is the state volume's mount point.
WORKDIR ${WORKDIR}
USER 10001:10001
EXPOSE 8080
ENTRYPOINT ["/opt/jup2kub/venv/bin/python", "-m", "jup2kub_runtime"]
