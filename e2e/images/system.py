"""The images the e2e cluster needs, built locally (no registry can be reached from here).

- ``j2k.local/pause``: the pod sandbox (a static Go binary, see e2e/go/pause)
- ``j2k.local/coredns``: CoreDNS built from its Go module
- ``j2k.local/busybox``: Debian's static busybox and netcheck, for tests and helper pods
- ``j2k.local/local-path-provisioner``: dynamic hostPath volumes (the default StorageClass)
"""

from __future__ import annotations

import subprocess
from pathlib import Path

from e2e import versions
from e2e.build import stamps
from e2e.images.oci import Entry, ImageConfig, write_docker_archive

PAUSE_IMAGE = "j2k.local/pause:1"
COREDNS_IMAGE = f"j2k.local/coredns:{versions.COREDNS}"
BUSYBOX_IMAGE = "j2k.local/busybox:2"
LOCAL_PATH_IMAGE = f"j2k.local/local-path-provisioner:{versions.LOCAL_PATH_PROVISIONER}"

_DIRS = [Entry("tmp", kind="dir", mode=0o1777), Entry("etc", kind="dir", mode=0o755)]
_ETC = [
    Entry("etc/passwd", data=b"root:x:0:0:root:/root:/bin/sh\nnobody:x:65534:65534::/:/bin/sh\n"),
    Entry("etc/group", data=b"root:x:0:\nnogroup:x:65534:\n"),
    Entry("etc/nsswitch.conf", data=b"hosts: files dns\n"),
]


def _stamp(tar: Path, want: str) -> bool:
    return stamps.current(tar.with_suffix(".built"), want, tar)


def _done(tar: Path, want: str) -> None:
    stamps.record(tar.with_suffix(".built"), want)


def pause(bin_dir: Path, out_dir: Path) -> Path:
    out = out_dir / "pause.tar"
    if not _stamp(out, PAUSE_IMAGE):
        write_docker_archive(
            out,
            PAUSE_IMAGE,
            ImageConfig(entrypoint=["/pause"], user="65535:65535"),
            [Entry("pause", source=bin_dir / "pause", mode=0o755)],
        )
        _done(out, PAUSE_IMAGE)
    return out


def coredns(bin_dir: Path, out_dir: Path) -> Path:
    out = out_dir / "coredns.tar"
    if not _stamp(out, COREDNS_IMAGE):
        write_docker_archive(
            out,
            COREDNS_IMAGE,
            ImageConfig(entrypoint=["/coredns"]),
            [*_DIRS, *_ETC, Entry("coredns", source=bin_dir / "coredns", mode=0o755)],
        )
        _done(out, COREDNS_IMAGE)
    return out


def local_path(bin_dir: Path, out_dir: Path) -> Path:
    out = out_dir / "local-path-provisioner.tar"
    if not _stamp(out, LOCAL_PATH_IMAGE):
        write_docker_archive(
            out,
            LOCAL_PATH_IMAGE,
            ImageConfig(entrypoint=["/local-path-provisioner"]),
            [
                *_DIRS,
                *_ETC,
                Entry(
                    "local-path-provisioner", source=bin_dir / "local-path-provisioner", mode=0o755
                ),
            ],
        )
        _done(out, LOCAL_PATH_IMAGE)
    return out


def busybox(bin_dir: Path, out_dir: Path, busybox_bin: Path = Path("/bin/busybox")) -> Path:
    """Debian's busybox-static with a symlink per applet in /bin, plus /bin/netcheck (Go) for
    name lookups and HTTP: static glibc's getaddrinfo crashes there (wget, nc)."""
    out = out_dir / "busybox.tar"
    if not _stamp(out, BUSYBOX_IMAGE):
        if not busybox_bin.is_file():
            raise SystemExit(f"{busybox_bin} missing: apt-get install busybox-static")
        applets = subprocess.run(
            [str(busybox_bin), "--list"], check=True, capture_output=True, text=True
        ).stdout.split()
        links = [
            Entry(f"bin/{a}", kind="symlink", target="busybox") for a in applets if a != "busybox"
        ]
        write_docker_archive(
            out,
            BUSYBOX_IMAGE,
            ImageConfig(cmd=["/bin/sh"]),
            [
                *_DIRS,
                *_ETC,
                Entry("bin", kind="dir", mode=0o755),
                Entry("bin/busybox", source=busybox_bin, mode=0o755),
                *links,
                Entry("bin/netcheck", source=bin_dir / "netcheck", mode=0o755),
            ],
        )
        _done(out, BUSYBOX_IMAGE)
    return out
