"""The JupyterLab extension (issue 20, item 1b), for real: a JupyterLab server with the
extension as ``pip install`` puts it (prebuilt, no Node), driven by Debian's Chromium through
Playwright. The side panel shows the open notebook's steps and DAG, badges name each cell's
step, Run runs the pipeline and links the results, Build writes the chart; ``%jup2kub
inspect`` in the notebook finds its notebook through the server's session. Screenshots are
kept in tests/artifacts/labextension/ (J2K_TEST_ARTIFACTS)."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import nbformat
import pytest

MakeNb = Callable[..., Path]
TOKEN = "jup2kub-test-token"
ARTIFACTS = (
    Path(os.environ.get("J2K_TEST_ARTIFACTS", Path(__file__).resolve().parent / "artifacts"))
    / "labextension"
)

playwright = pytest.importorskip("playwright.sync_api")


def _chromium() -> str:
    found = os.environ.get("J2K_CHROMIUM") or shutil.which("chromium")
    if not found:
        pytest.fail("Chromium is not installed (tests/setup.d/15-chromium.sh installs it)")
    return found


@pytest.fixture
def lab(tmp_path: Path) -> Iterator[tuple[str, Path]]:
    """A JupyterLab server on 127.0.0.1 over ``root``; yields its URL and root."""
    root = tmp_path / "root"
    root.mkdir()
    home = tmp_path / "home"
    env = {
        **os.environ,
        "HOME": str(home),
        "JUPYTER_CONFIG_DIR": str(home / "config"),
        "JUPYTER_RUNTIME_DIR": str(home / "runtime"),
    }
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


def _notebook(root: Path) -> Path:
    from tests.support.notebooks import build_notebook

    nb = build_notebook(
        [
            ("code", "n = 4", ["parameters"]),
            "#| step: make\nvalues = list(range(n))",
            "#| step: double\ndoubled = [2 * v for v in values]",
            "#| step: total\nprint('total', sum(values) + sum(doubled))",
            "%load_ext jup2kub\n%jup2kub inspect",
        ],
        "python",
    )
    nb.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3"}
    path = root / "flow.ipynb"
    path.write_text(nbformat.writes(nb), encoding="utf-8")
    return path


def test_side_panel_badges_run_and_build_in_a_real_browser(lab: tuple[str, Path]) -> None:
    url, root = lab
    path = _notebook(root)
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    with playwright.sync_playwright() as p:
        browser = p.chromium.launch(executable_path=_chromium(), args=["--no-sandbox"])
        try:
            page = browser.new_page(viewport={"width": 1500, "height": 950})
            page.goto(f"{url}lab/tree/{path.name}?token={TOKEN}")
            page.wait_for_selector(".jp-Notebook .jp-Cell", timeout=120_000)
            page.click(".lm-TabBar-tab[data-id='jup2kub-panel']")
            status = page.locator(".jp-Jup2Kub-status")
            status.filter(has_text="3 steps").wait_for(timeout=60_000)
            assert "make → double → total" in status.inner_text()
            assert page.locator(".jp-Jup2Kub-dag svg").count() == 1
            badges = page.locator(".jp-Jup2Kub-badge").all_inner_texts()
            assert badges == ["make", "double", "total"]
            # the notebook's own %jup2kub inspect: the kernel knows its notebook (the server
            # tells it), and the DAG shows inline
            # (only once the kernel is connected and idle: Shift+Enter while it still starts
            # is dropped, the cell left unexecuted, as the failure screenshot showed)
            page.get_by_text(re.compile(r"\| Idle$")).first.wait_for(timeout=120_000)
            page.locator(".jp-Cell").nth(4).click()
            page.keyboard.press("Shift+Enter")
            inline = page.locator(".jp-Cell").nth(4).locator(".jp-OutputArea")
            inline.locator(".jp-RenderedSVG, svg").first.wait_for(timeout=120_000)  # the DAG
            assert "values ← make" in inline.locator(".jp-RenderedHTMLCommon").first.inner_text()
            page.screenshot(path=str(ARTIFACTS / "panel-and-inline-dag.png"))

            page.click(".jp-Jup2Kub-buttons button[data-action='run']")
            status.filter(has_text="Run succeeded.").wait_for(timeout=180_000)
            states = page.locator(".jp-Jup2Kub-run td").all_inner_texts()
            assert states == ["make", "succeeded", "double", "succeeded", "total", "succeeded"]
            page.screenshot(path=str(ARTIFACTS / "panel-after-run.png"))
            page.click(".jp-Jup2Kub-results")
            page.locator(".lm-TabBar-tab", has_text="flow-results.ipynb").wait_for()
            # the panel follows the notebook in front: back to the one to build
            page.locator(".lm-TabBar-tab", has_text="flow.ipynb").click()
            status.filter(has_text="flow: 3 steps").wait_for(timeout=60_000)

            page.click(".jp-Jup2Kub-buttons button[data-action='build']")
            status.filter(has_text="Chart written to flow-chart").wait_for(timeout=120_000)
        except Exception:
            page.screenshot(path=str(ARTIFACTS / "failure.png"))
            raise
        finally:
            browser.close()
    result = nbformat.read(root / "flow-results.ipynb", as_version=4)
    printed = [o["text"] for c in result.cells for o in c.get("outputs", []) if "text" in o]
    assert printed == ["total 18\n"]
    assert (root / "flow-chart" / "Chart.yaml").is_file()
