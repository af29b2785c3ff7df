"""Builds an image compatible with the official ``apache/kafka`` one, without Docker Hub.

Layout as in the official image: the distribution under ``/opt/kafka`` (``bin/*.sh``,
``config/``, ``libs/``), user ``appuser`` (uid/gid 1000), ``/bin/sh`` and ``bash``, ``java`` on
PATH. Made of:

- a Debian bookworm root filesystem with ``openjdk-17-jre-headless`` (debootstrap, minbase),
- the Apache Kafka jars from Maven Central that tests/setup.d/30-kafka.sh fetches for the tests
  (tools/kafka/pom.xml; located, or fetched, by tests.support.kafka_broker.kafka_libs),
- e2e/kafka/bin: the distribution's script names and environment contract
  (``kafka-run-class.sh``: KAFKA_HEAP_OPTS, KAFKA_LOG4J_OPTS, KAFKA_OPTS, LOG_DIR, ...), running
  the same main classes (``kafka.Kafka``, ``kafka.tools.StorageTool``,
  ``org.apache.kafka.tools.TopicCommand``, ...).

Written as a ``docker save`` archive named ``apache/kafka:<version>`` (what the chart uses by
default), cached in ``$JUP2KUB_CACHE/kafka-image-<version>/``.
"""

from __future__ import annotations

import hashlib
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

from e2e.build import stamps
from e2e.images.oci import ImageConfig, write_docker_archive
from tests.support.kafka_broker import kafka_libs, kafka_version

E2E = Path(__file__).resolve().parents[1]
REPO = E2E.parent
KAFKA_DIR = E2E / "kafka"
SUITE = "bookworm"
PACKAGES = ("openjdk-17-jre-headless", "bash")
APPUSER_UID = 1000
JAVA_HOME = "/usr/lib/jvm/java-17-openjdk-amd64"


def log(msg: str) -> None:
    print(f"[e2e/kafka-image] {msg}", file=sys.stderr, flush=True)


def _rootfs(work: Path) -> Path:
    """bookworm minbase + the JRE, once (tools/debian-rootfs.sh, as for the tests' base image)."""
    root = work / "rootfs"
    recipe = REPO / "tools" / "debian-rootfs.sh"
    recipe_hash = hashlib.sha256(recipe.read_bytes()).hexdigest()[:12]
    want = f"{SUITE} {' '.join(PACKAGES)} {recipe_hash}"
    stamp = work / "rootfs.built"
    if stamps.current(stamp, want, root):
        return root
    if not shutil.which("debootstrap"):
        raise SystemExit("debootstrap missing: apt-get install debootstrap")
    tmp = work / "rootfs.tmp"
    log(f"debootstrap {SUITE} with {', '.join(PACKAGES)} (first time only)")
    with (work / "debootstrap.log").open("w") as out:
        subprocess.run(
            [str(recipe), str(tmp), ",".join(PACKAGES)],
            env={**os.environ, "SUITE": SUITE},
            check=True,
            stdout=out,
            stderr=subprocess.STDOUT,
            timeout=3600,
        )
    shutil.rmtree(root, ignore_errors=True)
    tmp.rename(root)
    stamps.record(stamp, want)
    return root


def _add_appuser(root: Path) -> None:
    passwd = root / "etc" / "passwd"
    if not re.search(r"^appuser:", passwd.read_text(), re.M):
        with passwd.open("a") as f:
            f.write(f"appuser:x:{APPUSER_UID}:{APPUSER_UID}::/home/appuser:/bin/bash\n")
        with (root / "etc" / "group").open("a") as f:
            f.write(f"appuser:x:{APPUSER_UID}:\n")
        home = root / "home" / "appuser"
        home.mkdir(parents=True, exist_ok=True)
        os.chown(home, APPUSER_UID, APPUSER_UID)


def _install_kafka(root: Path, libs: Path) -> None:
    opt = root / "opt" / "kafka"
    shutil.rmtree(opt, ignore_errors=True)
    shutil.copytree(KAFKA_DIR / "bin", opt / "bin")
    shutil.copytree(KAFKA_DIR / "config", opt / "config")
    shutil.copytree(libs, opt / "libs", ignore=shutil.ignore_patterns(".complete"))
    for d in (opt / "logs",):
        d.mkdir()
        os.chown(d, APPUSER_UID, APPUSER_UID)
    docker = root / "etc" / "kafka" / "docker"
    shutil.rmtree(docker, ignore_errors=True)
    docker.mkdir(parents=True)
    shutil.copy2(KAFKA_DIR / "docker" / "run", docker / "run")
    for sub in ("var/lib/kafka/data", "mnt/shared/config"):
        (root / sub).mkdir(parents=True, exist_ok=True)
        os.chown(root / sub, APPUSER_UID, APPUSER_UID)


def _inputs_digest(libs: Path) -> str:
    h = hashlib.sha256()
    for base in (KAFKA_DIR, libs):
        for p in sorted(base.rglob("*")):
            if p.is_file():
                h.update(str(p.relative_to(base)).encode())
                h.update(
                    p.read_bytes() if p.stat().st_size < 1 << 16 else str(p.stat().st_size).encode()
                )
    h.update(Path(__file__).read_bytes())
    return h.hexdigest()[:16]


def build(cache_root: Path, out_dir: Path | None = None) -> Path:
    version = kafka_version()
    work = cache_root / f"kafka-image-{version}"
    work.mkdir(parents=True, exist_ok=True)
    out = (out_dir or work) / f"apache-kafka-{version}.tar"
    libs = kafka_libs()
    want = _inputs_digest(libs)
    stamp = out.with_suffix(".built")
    if stamps.current(stamp, want, out):
        return out
    root = _rootfs(work)
    _add_appuser(root)
    _install_kafka(root, libs)
    log(f"writing apache/kafka:{version} to {out}")
    write_docker_archive(
        out,
        f"apache/kafka:{version}",
        ImageConfig(
            cmd=["/etc/kafka/docker/run"],
            env=[
                f"PATH=/opt/kafka/bin:{JAVA_HOME}/bin:/usr/local/sbin:/usr/local/bin:"
                "/usr/sbin:/usr/bin:/sbin:/bin",
                f"JAVA_HOME={JAVA_HOME}",
                "LANG=C.UTF-8",
            ],
            user="appuser",
            workdir="/",
            labels={
                "org.opencontainers.image.title": "apache/kafka (jup2kub e2e build)",
                "org.opencontainers.image.version": version,
                "org.opencontainers.image.source": (
                    "Apache Kafka jars from Maven Central; Debian bookworm JRE"
                ),
            },
        ),
        rootfs=root,
    )
    stamps.record(stamp, want)
    return out


if __name__ == "__main__":
    cache = Path(os.environ.get("JUP2KUB_CACHE", Path.home() / ".cache" / "jup2kub"))
    print(build(cache))
