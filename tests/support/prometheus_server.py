"""The real Prometheus and promtool (built from Prometheus's Go module by
tests/setup.d/29-prometheus.sh), and a Prometheus server on loopback for a test: its own data
directory and free port, its HTTP API queried, stopped by its pid."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import time
import urllib.parse
import urllib.request
from collections.abc import Callable, Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.support.setup_scripts import exported

REPO = Path(__file__).resolve().parents[2]
SETUP = REPO / "tests" / "setup.d" / "29-prometheus.sh"


def tool(name: str) -> str:
    """``prometheus`` or ``promtool``: $J2K_PROMETHEUS / $J2K_PROMTOOL, else on PATH, else built
    the way the test command does (tests/setup.d/29-prometheus.sh, cached after the first
    time)."""
    variable = f"J2K_{name.upper()}"
    configured = os.environ.get(variable)
    if configured and os.access(configured, os.X_OK):
        return configured
    found = shutil.which(name) or exported(SETUP.name, variable)
    if not found:
        pytest.skip(
            f"no {name}: J2K_PROMETHEUS_BUILD=1 bash tests/run.sh builds it once "
            f"({SETUP.relative_to(REPO)}, 10-20 minutes)"
        )
    return found


def promtool(*args: str | Path, cwd: Path | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [tool("promtool"), *(str(a) for a in args)],
        capture_output=True,
        text=True,
        check=False,
        timeout=120,
        cwd=cwd,
    )


def rule_groups(prometheus_rule: Mapping[str, Any]) -> dict[str, Any]:
    """A PrometheusRule's groups as a Prometheus rule file (what the Operator hands over)."""
    return {"groups": prometheus_rule["spec"]["groups"]}


def free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


def static_job(job: str, targets: Sequence[str], labels: Mapping[str, str]) -> dict[str, Any]:
    """A scrape config of fixed ``host:port`` targets, each given ``labels``."""
    return {
        "job_name": job,
        "static_configs": [{"targets": list(targets), "labels": dict(labels)}],
    }


class Prometheus:
    """A Prometheus server on 127.0.0.1 with ``scrape_configs`` (Prometheus's own format),
    scraping and evaluating ``rule_files`` every ``interval``."""

    def __init__(
        self,
        workdir: Path,
        scrape_configs: Sequence[Mapping[str, Any]],
        rule_files: Iterable[Path] = (),
        interval: str = "1s",
    ) -> None:
        self.workdir = workdir
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        config = {
            "global": {"scrape_interval": interval, "evaluation_interval": interval},
            "rule_files": [str(p) for p in rule_files],
            "scrape_configs": [dict(c) for c in scrape_configs],
        }
        self.config = workdir / "prometheus.yml"
        workdir.mkdir(parents=True, exist_ok=True)
        self.config.write_text(yaml.safe_dump(config))
        self.log = workdir / "prometheus.log"
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self, timeout: float = 60) -> Prometheus:
        prometheus = tool("prometheus")
        check = promtool("check", "config", self.config)
        assert check.returncode == 0, check.stdout + check.stderr
        with self.log.open("wb") as log:
            self.proc = subprocess.Popen(
                [
                    prometheus,
                    f"--config.file={self.config}",
                    f"--storage.tsdb.path={self.workdir / 'data'}",
                    f"--web.listen-address=127.0.0.1:{self.port}",
                    "--storage.tsdb.retention.time=1h",
                    "--log.level=warn",
                ],
                stdout=log,
                stderr=subprocess.STDOUT,
            )
        self.wait(lambda: self._ready(), timeout, "Prometheus ready")
        return self

    def _ready(self) -> bool:
        assert self.proc is not None and self.proc.poll() is None, self.log_text()
        try:
            with urllib.request.urlopen(f"{self.url}/-/ready", timeout=2) as r:
                return bool(r.status == 200)
        except OSError:
            return False

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            os.kill(self.proc.pid, signal.SIGTERM)
            try:
                self.proc.wait(20)
            except subprocess.TimeoutExpired:
                os.kill(self.proc.pid, signal.SIGKILL)
                self.proc.wait(10)

    def log_text(self) -> str:
        return self.log.read_text(errors="replace")[-3000:] if self.log.exists() else ""

    def api(self, path: str, **params: str) -> Any:
        """The ``data`` of a successful API answer (``/api/v1/<path>``)."""
        query = f"?{urllib.parse.urlencode(params)}" if params else ""
        with urllib.request.urlopen(f"{self.url}/api/v1/{path}{query}", timeout=10) as r:
            body = json.loads(r.read())
        assert body["status"] == "success", body
        return body["data"]

    def query(self, expr: str) -> dict[tuple[tuple[str, str], ...], float]:
        """An instant query's vector: sorted label pairs -> value."""
        data = self.api("query", query=expr)
        assert data["resultType"] == "vector", data
        return {tuple(sorted(s["metric"].items())): float(s["value"][1]) for s in data["result"]}

    def alerts(self) -> list[dict[str, Any]]:
        alerts: list[dict[str, Any]] = self.api("alerts")["alerts"]
        return alerts

    def wait(self, holds: Callable[[], bool], timeout: float, what: str) -> None:
        deadline = time.monotonic() + timeout
        while not holds():
            if time.monotonic() > deadline:
                raise AssertionError(f"{what}: not within {timeout} s\n{self.log_text()}")
            time.sleep(0.5)
