"""Images into the node's containerd (``ctr images import``): pods use them with
``imagePullPolicy: IfNotPresent`` or ``Never``, since nothing can be pulled here."""

from __future__ import annotations

import shutil
import tempfile
from collections.abc import Sequence
from pathlib import Path

from e2e.host.commands import run
from e2e.host.layout import STATE
from e2e.node.containerd import ctr


def load_images(tars: Sequence[Path]) -> list[str]:
    names: list[str] = []
    for tar in tars:
        r = ctr("images", "import", str(tar))
        names += [
            line.split()[1] for line in r.stdout.splitlines() if line.startswith("unpacking ")
        ] or [f"{tar}: {r.stdout.strip()}"]
    return names


def load_images_or_refs(items: Sequence[str]) -> list[str]:
    """Tarballs are imported as they are; other arguments are `docker save`d first."""
    names: list[str] = []
    refs = [i for i in items if not Path(i).is_file()]
    names += load_images([Path(i) for i in items if Path(i).is_file()])
    if refs:
        if not shutil.which("docker"):
            raise SystemExit(f"not files, and no docker to save them from: {refs}")
        with tempfile.TemporaryDirectory(dir=STATE) as tmp:
            tar = Path(tmp) / "images.tar"
            run(["docker", "save", "-o", str(tar), *refs], capture=True, timeout=1800)
            names += load_images([tar])
    return names
