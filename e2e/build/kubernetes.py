"""Kubernetes' commands (and the CRI cleanup tool) from the k8s.io/kubernetes module: every
staging module is pinned to the matching v0.x.y, which replaces the ./staging/src paths the
upstream go.mod uses."""

from __future__ import annotations

import shutil
import time
from pathlib import Path

from e2e import versions
from e2e.build.gomodule import GO_SOURCES, go, module, stamp_ok, write_stamp
from e2e.host.commands import log


def kubernetes_go_mod() -> str:
    staging = "\n".join(
        f"\tk8s.io/{m} => k8s.io/{m} {versions.STAGING}" for m in versions.STAGING_MODULES
    )
    return (
        "module j2k.local/kubebuild\n\n"
        "go 1.24.0\n\n"
        # the same GODEBUG defaults as upstream's own build (k8s.io/kubernetes go.mod)
        "godebug default=go1.24\n\n"
        f"require k8s.io/kubernetes {versions.KUBERNETES}\n\n"
        f"replace (\n{staging}\n)\n"
    )


def kube_ldflags() -> str:
    v = versions.KUBERNETES
    major, minor = v.removeprefix("v").split(".")[:2]
    flags = []
    for pkg in ("k8s.io/component-base/version", "k8s.io/client-go/pkg/version"):
        flags += [
            f"-X {pkg}.gitVersion={v}",
            f"-X {pkg}.gitMajor={major}",
            f"-X {pkg}.gitMinor={minor}",
            f"-X {pkg}.gitTreeState=clean",
            f"-X {pkg}.buildDate=1970-01-01T00:00:00Z",
        ]
    return "-s -w " + " ".join(flags)


def _tools_go(cmds: tuple[str, ...]) -> str:
    imports = "\n".join(f'\t_ "k8s.io/kubernetes/cmd/{c}"' for c in cmds)
    # a build-tag-guarded file so `go mod tidy` keeps the commands' dependencies
    return f"//go:build tools\n\npackage tools\n\nimport (\n{imports}\n)\n"


def build_kubernetes(cache: Path) -> None:
    want = f"kubernetes {versions.KUBERNETES} staging {versions.STAGING} cri-cleanup 1"
    if stamp_ok(cache, "kubernetes", want, [*versions.KUBE_COMMANDS, "cri-cleanup"]):
        return
    work = cache / "src" / "kubernetes"
    module(work, kubernetes_go_mod(), {"tools.go": _tools_go(versions.KUBE_COMMANDS)})
    shutil.copytree(GO_SOURCES / "cri-cleanup", work / "cricleanup")
    log(f"building Kubernetes {versions.KUBERNETES} from the Go module proxy (first time only)")
    t0 = time.monotonic()
    go(["mod", "tidy"], work)
    for cmd in versions.KUBE_COMMANDS:
        log(f"  go build {cmd}")
        go(
            [
                "build",
                "-ldflags",
                kube_ldflags(),
                "-o",
                str(cache / "bin" / cmd),
                f"k8s.io/kubernetes/cmd/{cmd}",
            ],
            work,
        )
    go(
        ["build", "-ldflags", "-s -w", "-o", str(cache / "bin" / "cri-cleanup"), "./cricleanup"],
        work,
    )
    write_stamp(cache, "kubernetes", want)
    log(f"Kubernetes built in {time.monotonic() - t0:.0f} s")
