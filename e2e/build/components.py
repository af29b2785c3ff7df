"""Every binary the cluster runs, each built once: Kubernetes (e2e.build.kubernetes), etcd,
CoreDNS, local-path-provisioner, kube-router, and the small programs of e2e/go."""

from __future__ import annotations

from pathlib import Path

from e2e import versions
from e2e.build.gomodule import (
    build_local_main,
    build_main_module,
    go,
    module,
    stamp_ok,
    write_stamp,
)
from e2e.build.kubernetes import build_kubernetes
from e2e.host.commands import log


def build_etcd(cache: Path) -> None:
    want = f"etcd {versions.ETCD}"
    if stamp_ok(cache, "etcd", want, ["etcd"]):
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
    module(work, go_mod, {"main.go": main})
    log(f"building etcd {v} from the Go module proxy (first time only)")
    go(["mod", "tidy"], work)
    go(["build", "-ldflags", "-s -w", "-o", str(cache / "bin" / "etcd"), "."], work)
    write_stamp(cache, "etcd", want)


def build_coredns(cache: Path) -> None:
    mod = "github.com/coredns/coredns"
    build_main_module(cache, "coredns", mod, versions.COREDNS, mod)


def build_local_path(cache: Path) -> None:
    mod = "github.com/rancher/local-path-provisioner"
    build_main_module(cache, "local-path-provisioner", mod, versions.LOCAL_PATH_PROVISIONER, mod)


def build_kube_router(cache: Path) -> None:
    """Only for `e2e/cluster netpol up` (not part of build_all: most runs do not need it)."""
    mod = "github.com/cloudnativelabs/kube-router/v2"
    build_main_module(cache, "kube-router", mod, versions.KUBE_ROUTER, f"{mod}/cmd/kube-router")


def build_pause(cache: Path) -> None:
    build_local_main(cache, "pause")


def build_netcheck(cache: Path) -> None:
    build_local_main(cache, "netcheck")


def build_all(cache: Path) -> None:
    (cache / "bin").mkdir(parents=True, exist_ok=True)
    build_pause(cache)
    build_netcheck(cache)
    build_kubernetes(cache)
    build_etcd(cache)
    build_coredns(cache)
    build_local_path(cache)
