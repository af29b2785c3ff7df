"""A Kubernetes API server stand-in for tests without a cluster (the e2e cluster is not ours to
use): an HTTP server on loopback answering what a real one answers for a release, read through
the real Kubernetes client with a kubeconfig pointing at it. Shared by the release tests of
``status --watch`` and of the JupyterLab panel's Runs view."""

from __future__ import annotations

import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import unquote, urlsplit

import yaml

NS = "team-a"
LABELS = {"app.kubernetes.io/instance": "demo"}


def deployment(step: str, desired: int, ready: int) -> dict[str, Any]:
    labels = {**LABELS, "app.kubernetes.io/component": step}
    return {
        "metadata": {"name": f"demo-{step}", "generation": 1, "labels": labels},
        "spec": {
            "replicas": desired,
            "selector": {"matchLabels": labels},
            "template": {"metadata": {"labels": labels}, "spec": {"containers": [{"name": "s"}]}},
        },
        "status": {
            "observedGeneration": 1,
            "replicas": desired,
            "readyReplicas": ready,
            "updatedReplicas": desired,
        },
    }


def pod(step: str, name: str, ready: bool) -> dict[str, Any]:
    return {
        "metadata": {"name": name, "labels": {**LABELS, "app.kubernetes.io/component": step}},
        "spec": {"containers": [{"name": "s", "ports": [{"name": "http", "containerPort": 8080}]}]},
        "status": {
            "phase": "Running",
            "containerStatuses": [
                {
                    "name": "s",
                    "ready": ready,
                    "restartCount": 0,
                    "image": "i",
                    "imageID": "i",
                    "state": {"running": {}},
                }
            ],
        },
    }


class CannedApiServer:
    """An HTTP server on loopback answering GETs from a path -> (content type, body) table."""

    def __init__(self, answers: dict[str, tuple[str, bytes]]) -> None:
        self.answers = answers
        self.asked: list[str] = []
        outer = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                path = unquote(urlsplit(self.path).path)
                outer.asked.append(path)
                kind, body = outer.answers.get(path, ("application/json", b""))
                self.send_response(200 if path in outer.answers else 404)
                self.send_header("Content-Type", kind)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, *args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    def __enter__(self) -> str:
        self.thread.start()
        return f"http://127.0.0.1:{self.server.server_address[1]}"

    def __exit__(self, *exc: object) -> None:
        self.server.shutdown()
        self.server.server_close()


def kubeconfig(tmp_path: Path, server: str) -> Path:
    path = tmp_path / "kubeconfig"
    path.write_text(
        yaml.safe_dump(
            {
                "apiVersion": "v1",
                "kind": "Config",
                "current-context": "c",
                "clusters": [{"name": "c", "cluster": {"server": server}}],
                "users": [{"name": "u", "user": {"token": "t"}}],
                "contexts": [
                    {"name": "c", "context": {"cluster": "c", "user": "u", "namespace": NS}}
                ],
            }
        )
    )
    return path
