"""Builds (once) and caches every binary the e2e cluster runs, from upstream sources.

Kubernetes, etcd and CoreDNS come from the Go module proxy: each is built in a throwaway module
whose go.mod requires the upstream module at the pinned version (and, for Kubernetes, pins every
staging module to the matching v0.x.y, which replaces the ./staging/src paths the upstream go.mod
uses). The pod sandbox ("pause") binary is a few lines of Go built here too. Results go to
``<cache>/bin``; a stamp per component records what was built so a later run skips it.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

from e2e import stamps, versions

GO_SOURCES = Path(__file__).resolve().parent / "go"
GO_ENV = {"CGO_ENABLED": "0", "GOFLAGS": "-buildvcs=false -trimpath", "GOTOOLCHAIN": "local"}


def log(msg: str) -> None:
    print(f"[e2e/cluster] {msg}", file=sys.stderr, flush=True)


def _go(args: list[str], cwd: Path) -> None:
    env = dict(os.environ)
    env.update(GO_ENV)
    subprocess.run(["go", *args], cwd=cwd, env=env, check=True)


def _stamp_ok(cache: Path, name: str, want: str, outputs: list[str]) -> bool:
    bin_dir = cache / "bin"
    return stamps.current(bin_dir / f".{name}.built", want, *(bin_dir / o for o in outputs))


def _write_stamp(cache: Path, name: str, want: str) -> None:
    stamps.record(cache / "bin" / f".{name}.built", want)


def _module(dirpath: Path, go_mod: str, files: dict[str, str] | None = None) -> None:
    shutil.rmtree(dirpath, ignore_errors=True)
    dirpath.mkdir(parents=True)
    (dirpath / "go.mod").write_text(go_mod)
    for name, text in (files or {}).items():
        (dirpath / name).write_text(text)


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


def build_kubernetes(cache: Path) -> None:
    want = f"kubernetes {versions.KUBERNETES} staging {versions.STAGING} cri-cleanup 1"
    if _stamp_ok(cache, "kubernetes", want, [*versions.KUBE_COMMANDS, "cri-cleanup"]):
        return
    work = cache / "src" / "kubernetes"
    _module(work, kubernetes_go_mod(), {"tools.go": _tools_go(versions.KUBE_COMMANDS)})
    shutil.copytree(GO_SOURCES / "cri-cleanup", work / "cricleanup")
    log(f"building Kubernetes {versions.KUBERNETES} from the Go module proxy (first time only)")
    t0 = time.monotonic()
    _go(["mod", "tidy"], work)
    for cmd in versions.KUBE_COMMANDS:
        log(f"  go build {cmd}")
        _go(
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
    _go(
        ["build", "-ldflags", "-s -w", "-o", str(cache / "bin" / "cri-cleanup"), "./cricleanup"],
        work,
    )
    _write_stamp(cache, "kubernetes", want)
    log(f"Kubernetes built in {time.monotonic() - t0:.0f} s")


def _tools_go(cmds: tuple[str, ...]) -> str:
    imports = "\n".join(f'\t_ "k8s.io/kubernetes/cmd/{c}"' for c in cmds)
    # a build-tag-guarded file so `go mod tidy` keeps the commands' dependencies
    return f"//go:build tools\n\npackage tools\n\nimport (\n{imports}\n)\n"


def build_etcd(cache: Path) -> None:
    want = f"etcd {versions.ETCD}"
    if _stamp_ok(cache, "etcd", want, ["etcd"]):
        return
    work = cache / "src" / "etcd"
    v = versions.ETCD
    go_mod = (
        "module j2k.local/etcdbuild\n\ngo 1.24.0\n\n"
        f"require go.etcd.io/etcd/server/v3 {v}\n\n"
        # upstream's server/go.mod replaces its siblings with ../ paths: pin them instead
        "replace (\n"
        f"\tgo.etcd.io/etcd/api/v3 => go.etcd.io/etcd/api/v3 {v}\n"
        f"\tgo.etcd.io/etcd/client/pkg/v3 => go.etcd.io/etcd/client/pkg/v3 {v}\n"
        f"\tgo.etcd.io/etcd/client/v3 => go.etcd.io/etcd/client/v3 {v}\n"
        f"\tgo.etcd.io/etcd/pkg/v3 => go.etcd.io/etcd/pkg/v3 {v}\n"
        ")\n"
    )
    main = (
        "package main\n\n"
        'import (\n\t"os"\n\n\t"go.etcd.io/etcd/server/v3/etcdmain"\n)\n\n'
        "func main() { etcdmain.Main(os.Args) }\n"
    )
    _module(work, go_mod, {"main.go": main})
    log(f"building etcd {v} from the Go module proxy (first time only)")
    _go(["mod", "tidy"], work)
    _go(["build", "-ldflags", "-s -w", "-o", str(cache / "bin" / "etcd"), "."], work)
    _write_stamp(cache, "etcd", want)


def build_coredns(cache: Path) -> None:
    mod = "github.com/coredns/coredns"
    _build_main_module(cache, "coredns", mod, versions.COREDNS, mod)


def _build_main_module(cache: Path, name: str, module: str, version: str, pkg: str) -> None:
    """Builds package ``pkg`` of ``module@version`` (a module without replace directives)."""
    want = f"{name} {module} {version}"
    if _stamp_ok(cache, name, want, [name]):
        return
    work = cache / "src" / name
    go_mod = f"module j2k.local/{name}build\n\ngo 1.24.0\n\nrequire {module} {version}\n"
    tools = f'//go:build tools\n\npackage tools\n\nimport _ "{pkg}"\n'
    _module(work, go_mod, {"tools.go": tools})
    log(f"building {name} {version} from the Go module proxy (first time only)")
    _go(["mod", "tidy"], work)
    _go(["build", "-ldflags", "-s -w", "-o", str(cache / "bin" / name), pkg], work)
    _write_stamp(cache, name, want)


def build_local_path(cache: Path) -> None:
    mod = "github.com/rancher/local-path-provisioner"
    _build_main_module(cache, "local-path-provisioner", mod, versions.LOCAL_PATH_PROVISIONER, mod)


def build_kube_router(cache: Path) -> None:
    """Only for `e2e/cluster netpol up` (not part of build_all: most runs do not need it)."""
    mod = "github.com/cloudnativelabs/kube-router/v2"
    _build_main_module(cache, "kube-router", mod, versions.KUBE_ROUTER, f"{mod}/cmd/kube-router")


def build_pause(cache: Path) -> None:
    want = "pause 1"
    if _stamp_ok(cache, "pause", want, ["pause"]):
        return
    work = cache / "src" / "pause"
    _module(
        work,
        "module j2k.local/pause\n\ngo 1.24.0\n",
        {"main.go": (GO_SOURCES / "pause" / "main.go").read_text()},
    )
    _go(["build", "-ldflags", "-s -w", "-o", str(cache / "bin" / "pause"), "."], work)
    _write_stamp(cache, "pause", want)


def build_netcheck(cache: Path) -> None:
    want = "netcheck 1"
    if _stamp_ok(cache, "netcheck", want, ["netcheck"]):
        return
    work = cache / "src" / "netcheck"
    _module(
        work,
        "module j2k.local/netcheck\n\ngo 1.24.0\n",
        {"main.go": (GO_SOURCES / "netcheck" / "main.go").read_text()},
    )
    _go(["build", "-ldflags", "-s -w", "-o", str(cache / "bin" / "netcheck"), "."], work)
    _write_stamp(cache, "netcheck", want)


def build_all(cache: Path) -> None:
    (cache / "bin").mkdir(parents=True, exist_ok=True)
    build_pause(cache)
    build_netcheck(cache)
    build_kubernetes(cache)
    build_etcd(cache)
    build_coredns(cache)
    build_local_path(cache)


if __name__ == "__main__":
    root = Path(os.environ.get("JUP2KUB_CACHE", Path.home() / ".cache" / "jup2kub"))
    build_all(root / f"k8s-{versions.KUBERNETES}")
