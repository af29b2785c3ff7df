"""A JupyterLab server with this checkout's prebuilt extension, on 127.0.0.1, and Debian's
Chromium to drive it: shared by the panel's tests (tests/test_labextension.py) and its e2e test
on a real release (e2e/tests/test_pipeline.py)."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest

TOKEN = "jup2kub-test-token"
REPO = Path(__file__).resolve().parents[2]


def chromium() -> str:
    found = os.environ.get("J2K_CHROMIUM") or shutil.which("chromium")
    if not found:
        pytest.fail("Chromium is not installed (tests/setup.d/15-chromium.sh installs it)")
    return found


@contextmanager
def jupyterlab(tmp_path: Path) -> Iterator[tuple[str, Path]]:
    """A JupyterLab server on 127.0.0.1 over ``tmp_path/root``; yields its URL and root. Its
    step catalog is ``root/../catalog.db`` (``$JUP2KUB_CATALOG``; not created until something
    records), its kubeconfig ``root/../kubeconfig`` (``$KUBECONFIG``, read when a request needs
    it: a test's stand-in API server, or the e2e cluster's)."""
    root = tmp_path / "root"
    root.mkdir()
    home = tmp_path / "home"
    env = {
        **os.environ,
        "HOME": str(home),
        "JUPYTER_CONFIG_DIR": str(home / "config"),
        "JUPYTER_RUNTIME_DIR": str(home / "runtime"),
        "JUP2KUB_CATALOG": str(tmp_path / "catalog.db"),
        "KUBECONFIG": str(tmp_path / "kubeconfig"),
    }
    # this checkout's prebuilt front end, ahead of any installed copy
    extensions = tmp_path / "labextensions"
    extensions.mkdir()
    (extensions / "jup2kub-labextension").symlink_to(REPO / "generator/jup2kub/labextension")
    # no "notified about Jupyter news?" prompt over the screenshots
    settings = home / "settings" / "@jupyterlab" / "apputils-extension"
    settings.mkdir(parents=True)
    (settings / "notification.jupyterlab-settings").write_text('{"fetchNews": "false"}')
    log = (tmp_path / "lab.log").open("w+")
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "jupyterlab",
            "--no-browser",
            "--ServerApp.ip=127.0.0.1",
            "--ServerApp.port=0",
            f"--IdentityProvider.token={TOKEN}",
            f"--ServerApp.root_dir={root}",
            "--LabApp.check_for_updates_class=jupyterlab.NeverCheckForUpdate",
            f"--LabApp.workspaces_dir={home / 'workspaces'}",
            f"--LabApp.user_settings_dir={home / 'settings'}",
            f"--LabApp.extra_labextensions_path={extensions}",
            *(["--allow-root"] if os.geteuid() == 0 else []),
        ],
        stdout=log,
        stderr=subprocess.STDOUT,
        env=env,
        cwd=root,
    )
    try:
        url = None
        for _ in range(600):
            log.seek(0)
            m = re.search(r"(http://127\.0\.0\.1:\d+/)lab", log.read())
            if m:
                url = m.group(1)
                break
            if proc.poll() is not None:
                break
            time.sleep(0.1)
        log.seek(0)
        assert url is not None, log.read()
        yield url, root
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
        log.close()


def widen_the_panel(page: Any) -> None:
    """Drag the right sidebar's edge leftwards: the Runs view's table reads better wide."""
    handle = page.locator("#jp-main-split-panel > .lm-SplitPanel-handle:not(.lm-mod-hidden)").last
    box = handle.bounding_box()
    if box is None:
        return
    x, y = box["x"] + box["width"] / 2, box["y"] + box["height"] / 2
    page.mouse.move(x, y)
    page.mouse.down()
    page.mouse.move(x - 330, y, steps=5)
    page.mouse.up()
