"""Images into the nodes' containerd (``ctr images import``, into every running node, one
thread each, as kind does): pods use them with ``imagePullPolicy: IfNotPresent`` or ``Never``,
since nothing can be pulled here."""

from __future__ import annotations

import shutil
import tempfile
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from e2e.host.commands import log, run
from e2e.host.layout import STATE
from e2e.host.processes import pid_of
from e2e.network import membership
from e2e.network.addresses import Node
from e2e.node.containerd import ctr


def _load_into(node: Node, tars: Sequence[Path]) -> list[str]:
    names: list[str] = []
    for tar in tars:
        r = ctr(node, "images", "import", str(tar))
        names += [
            line.split()[1] for line in r.stdout.splitlines() if line.startswith("unpacking ")
        ] or [f"{tar}: {r.stdout.strip()}"]
    return names


def load_images(tars: Sequence[Path], nodes: tuple[Node, ...] | None = None) -> list[str]:
    """Into every node whose containerd runs (a killed node misses them: said, not hidden)."""
    nodes = nodes or membership.current()
    running = [n for n in nodes if pid_of(n.daemon("containerd"))]
    if not running:
        raise SystemExit("the cluster is not running (e2e/cluster up)")
    for missed in sorted(set(nodes) - set(running), key=lambda n: n.index):
        log(f"warning: {missed.name} is down: it does not get {', '.join(map(str, tars))}")
    with ThreadPoolExecutor(len(running)) as pool:
        loaded = list(pool.map(lambda n: _load_into(n, tars), running))
    return loaded[0]


def load_images_or_refs(items: Sequence[str]) -> list[str]:
    """Tarballs are imported as they are; other arguments are `docker save`d first."""
    names: list[str] = []
    refs = [i for i in items if not Path(i).is_file()]
    files = [Path(i) for i in items if Path(i).is_file()]
    if files:
        names += load_images(files)
    if refs:
        if not shutil.which("docker"):
            raise SystemExit(f"not files, and no docker to save them from: {refs}")
        with tempfile.TemporaryDirectory(dir=STATE) as tmp:
            tar = Path(tmp) / "images.tar"
            run(["docker", "save", "-o", str(tar), *refs], capture=True, timeout=1800)
            names += load_images([tar])
    return names
