# A Docker engine and a local base image for the image tests (tests/test_images.py).
# Sourced by tests/run.sh (bash, set -euo pipefail). Idempotent and cached in $JUP2KUB_CACHE.
#  - Debian's docker.io (dockerd) and debootstrap, when missing (the tests' registry is CNCF
#    distribution v3, from 35-oci-tools.sh);
#  - dockerd started here only when no engine answers: unix socket only (no TCP), no iptables,
#    no bridge (tests use --network host, builds use network none); dockerd writes its pid to
#    $JUP2KUB_CACHE/dockerd/dockerd.pid. A dockerd this script did not start is never touched,
#    and this script never stops one: it stays up for later runs, like a system service.
#  - the test base image: no image registry is reachable here, so a minimal Debian bookworm
#    with python3 (3.11, the host's cp311 wheel tag), venv/pip and CA certificates is built once
#    with debootstrap and `docker import`ed. Exports J2K_BASE_IMAGE (tests pass --base-image).
j2k_cache="${JUP2KUB_CACHE:-$HOME/.cache/jup2kub}"
J2K_BASE_IMAGE="${J2K_BASE_IMAGE:-jup2kub-test-base:bookworm-py311-1}"

j2k_apt_missing=()
command -v dockerd >/dev/null 2>&1 || j2k_apt_missing+=(docker.io)
command -v debootstrap >/dev/null 2>&1 || j2k_apt_missing+=(debootstrap)
if [ "${#j2k_apt_missing[@]}" -gt 0 ]; then
    echo "40-docker.sh: installing ${j2k_apt_missing[*]} (Debian packages, once)" >&2
    apt-get update -qq >/dev/null
    # No init system here: package scripts cannot start services, and need not.
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends \
        "${j2k_apt_missing[@]}" >/dev/null 2>&1 || {
        # postinst scripts that try to start a service may fail without an init system;
        # what matters is that the binaries are there.
        command -v dockerd >/dev/null 2>&1 && command -v debootstrap >/dev/null 2>&1 || {
            echo "40-docker.sh: apt-get install ${j2k_apt_missing[*]} failed" >&2
            false
        }
    }
fi
unset j2k_apt_missing

j2k_engine_up() { timeout 15 docker version --format '{{.Server.Version}}' >/dev/null 2>&1; }
if ! j2k_engine_up; then
    j2k_dockerd_dir="$j2k_cache/dockerd"
    mkdir -p "$j2k_dockerd_dir"
    j2k_pid="$(cat "$j2k_dockerd_dir/dockerd.pid" 2>/dev/null || true)"
    if [ -n "$j2k_pid" ] && kill -0 "$j2k_pid" 2>/dev/null \
        && [ "$(cat "/proc/$j2k_pid/comm" 2>/dev/null)" = dockerd ]; then
        echo "40-docker.sh: our dockerd (pid $j2k_pid) is running but does not answer yet" >&2
    else
        echo "40-docker.sh: no Docker engine answers; starting dockerd (log: $j2k_dockerd_dir/dockerd.log)" >&2
        # setsid: the engine outlives this test run (it caches images); never bound to TCP.
        setsid dockerd --host=unix:///var/run/docker.sock --iptables=false --ip-masq=false \
            --ip-forward=false --bridge=none --pidfile="$j2k_dockerd_dir/dockerd.pid" \
            >>"$j2k_dockerd_dir/dockerd.log" 2>&1 </dev/null &
    fi
    for _ in $(seq 1 120); do
        j2k_engine_up && break
        sleep 0.5
    done
    j2k_engine_up || {
        echo "40-docker.sh: dockerd did not come up; see $j2k_dockerd_dir/dockerd.log" >&2
        tail -n 20 "$j2k_dockerd_dir/dockerd.log" >&2 || true
        false
    }
    unset j2k_dockerd_dir j2k_pid
fi
unset -f j2k_engine_up

if ! docker image inspect "$J2K_BASE_IMAGE" >/dev/null 2>&1; then
    j2k_base_dir="$j2k_cache/base-image"
    j2k_base_tar="$j2k_base_dir/${J2K_BASE_IMAGE//[:\/]/_}.tar"
    if [ ! -f "$j2k_base_tar" ]; then
        echo "40-docker.sh: debootstrapping the test base image (Debian bookworm + python3, a few minutes, once)" >&2
        mkdir -p "$j2k_base_dir"
        j2k_rootfs="$j2k_base_dir/rootfs.tmp"
        SUITE=bookworm tools/debian-rootfs.sh "$j2k_rootfs" python3,python3-venv,python3-pip,ca-certificates \
            >"$j2k_base_dir/debootstrap.log" 2>&1 || {
            echo "40-docker.sh: debootstrap failed; see $j2k_base_dir/debootstrap.log" >&2
            false
        }
        tar --numeric-owner -C "$j2k_rootfs" -cf "$j2k_base_tar.tmp" .
        mv "$j2k_base_tar.tmp" "$j2k_base_tar"
        rm -rf "$j2k_rootfs"
        unset j2k_rootfs
    fi
    docker import --change 'ENV LANG=C.UTF-8' --change 'CMD ["python3"]' \
        "$j2k_base_tar" "$J2K_BASE_IMAGE" >/dev/null
    unset j2k_base_dir j2k_base_tar
fi
unset j2k_cache
export J2K_BASE_IMAGE
