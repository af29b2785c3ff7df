"""The chart's NetworkPolicies, enforced: a step pod's endpoints (run ids, captured outputs) are
refused to a pod outside the release, while `jup2kub status --release` and
`results --release` (the API server's pod proxy) still work.

On the harness's cluster the policies are enforced by kube-router's network policy controller
(`e2e/cluster netpol up`, started here and stopped after the module when it was not running
before). On an existing cluster, set J2K_E2E_NETPOL=1 if its CNI enforces NetworkPolicies;
otherwise the module is skipped (a non-enforcing CNI would make the refusal untestable).
"""

from __future__ import annotations

import json
import os
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import nbformat
import pytest
import yaml

from e2e.network import membership, netpol
from e2e.network.addresses import NODE_IP
from e2e.support import Cluster, helm, state_dir
from e2e.tests.test_pipeline import NOTEBOOK, built, submit, wait_run

__all__ = ["built"]  # the module fixture, shared with test_pipeline.py

RELEASE = "netpol"


@pytest.fixture(scope="module")
def enforced(cluster: Cluster) -> Iterator[None]:
    if not cluster.own:
        if os.environ.get("J2K_E2E_NETPOL") != "1":
            pytest.skip("set J2K_E2E_NETPOL=1 if this cluster's CNI enforces NetworkPolicies")
        yield
        return
    started = not netpol.running()
    try:
        netpol.up()
    except SystemExit as exc:
        pytest.fail(f"could not enforce NetworkPolicies: {exc}")
    yield
    if started:
        netpol.down()


@pytest.fixture(scope="module")
def release(
    cluster: Cluster, enforced: None, built: Path, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[dict[str, str]]:
    ns = f"j2k-e2e-netpol-{os.getpid()}"
    cluster.kubectl("create", "namespace", ns)
    cluster.state_claim(ns, "512Mi")
    values = tmp_path_factory.mktemp("values") / "e2e-values.yaml"
    settings: dict[str, Any] = {"storage": {"mode": "existingClaim", "existingClaim": "state"}}
    if cluster.own and len(membership.current()) > 1:
        # the tests' Kafka clients run on the host (`e2e/cluster exec`), which is a node of a
        # single-node cluster (a node's own traffic always passes) but none of several: there
        # it is a client outside the cluster, allowed as one would be
        settings["networkPolicy"] = {"extraFrom": [{"ipBlock": {"cidr": f"{NODE_IP}/32"}}]}
    values.write_text(yaml.safe_dump(settings))
    r = subprocess.run(
        [
            "jup2kub",
            "deploy",
            str(built),
            "--release",
            RELEASE,
            "-n",
            ns,
            "-f",
            str(built / "values-dev.yaml"),
            "-f",
            str(values),
            "--timeout",
            "15m",
        ],
        capture_output=True,
        text=True,
        timeout=1000,
        env=cluster.env(),
    )
    assert r.returncode == 0, r.stdout + r.stderr
    yield {"namespace": ns, "broker": cluster.kafka_bootstrap(ns)}
    helm(cluster, "uninstall", RELEASE, "-n", ns, "--wait", check=False)
    cluster.kubectl("delete", "namespace", ns, "--wait=false", check=False)


def _pod_ip(cluster: Cluster, ns: str, selector: str) -> str:
    pods = json.loads(cluster.kubectl("-n", ns, "get", "pods", "-l", selector, "-o", "json").stdout)
    return str(pods["items"][0]["status"]["podIP"])


def _probe_pod(cluster: Cluster, ns: str, name: str, labels: str = "") -> None:
    args = ["-n", ns, "run", name, f"--image={cluster.busybox}", "--restart=Never"]
    args += ["--image-pull-policy=IfNotPresent"]
    if labels:
        args.append(f"--labels={labels}")
    cluster.kubectl(*args, "--command", "--", "sleep", "900")
    cluster.kubectl("-n", ns, "wait", "--for=condition=Ready", f"pod/{name}", "--timeout=120s")


def _get(cluster: Cluster, ns: str, pod: str, url: str) -> subprocess.CompletedProcess[str]:
    """netcheck's HTTP GET (10 s timeout) from inside a pod."""
    return cluster.kubectl("-n", ns, "exec", pod, "--", "netcheck", "get", url, check=False)


def _blocked(r: subprocess.CompletedProcess[str]) -> bool:
    """Refused or dropped: kube-router rejects, other enforcers drop (a timeout)."""
    return r.returncode != 0 and any(
        s in r.stderr for s in ("connection refused", "deadline exceeded", "i/o timeout")
    )


def test_step_endpoints_are_refused_outside_the_release(
    cluster: Cluster, release: dict[str, str], namespace: str
) -> None:
    ns = release["namespace"]
    step = _pod_ip(cluster, ns, "jup2kub.io/role=step,app.kubernetes.io/component=load")
    kafka = _pod_ip(cluster, ns, "app.kubernetes.io/component=kafka")
    _probe_pod(cluster, namespace, "outsider")
    # the outsider's network works (cluster DNS answers it) ...
    dns = cluster.kubectl(
        "-n", namespace, "exec", "outsider", "--", "netcheck", "resolve", "kubernetes.default"
    )
    assert dns.stdout.strip()
    # ... but a step's runs, outputs and probes' port are closed to it, and so is Kafka
    for path in ("/runs", "/runs/any-run/outputs", "/healthz"):
        r = _get(cluster, namespace, "outsider", f"http://{step}:8080{path}")
        assert _blocked(r), (path, r.returncode, r.stdout, r.stderr)
    assert _blocked(_get(cluster, namespace, "outsider", f"http://{kafka}:9092/"))
    # a pod of the release reaches Kafka (which answers HTTP with a closed connection), and
    # no step: a step's data is not for its neighbours either
    chart = json.loads(cluster.kubectl("-n", ns, "get", "statefulset", "-o", "json").stdout)
    name = chart["items"][0]["metadata"]["labels"]["app.kubernetes.io/name"]
    labels = f"app.kubernetes.io/name={name},app.kubernetes.io/instance={RELEASE}"
    _probe_pod(cluster, ns, "insider", labels)
    r = _get(cluster, ns, "insider", f"http://{kafka}:9092/")
    assert r.returncode != 0 and not _blocked(r), r.stderr  # connected, then not HTTP
    assert _blocked(_get(cluster, ns, "insider", f"http://{step}:8080/runs"))
    cluster.kubectl("-n", ns, "delete", "pod", "insider", "--wait=false")


def test_the_api_server_is_looked_up_at_install(cluster: Cluster, release: dict[str, str]) -> None:
    """`helm template` cannot look it up; an install allows the default/kubernetes addresses."""
    policies = cluster.kubectl(
        "-n", release["namespace"], "get", "networkpolicy", "-l",
        "app.kubernetes.io/component=steps", "-o", "json",
    )  # fmt: skip
    (policy,) = json.loads(policies.stdout)["items"]
    (rule,) = policy["spec"]["ingress"]
    endpoints = cluster.kubectl("-n", "default", "get", "endpointslice", "kubernetes", "-o", "json")
    addresses = [a for e in json.loads(endpoints.stdout)["endpoints"] for a in e["addresses"]]
    assert addresses
    assert [peer["ipBlock"]["cidr"] for peer in rule["from"]] == [
        f"{a}/{128 if ':' in a else 32}" for a in addresses
    ]
    assert rule["ports"] == [{"port": 8080, "protocol": "TCP"}]


def test_status_and_results_through_the_api_server_still_work(
    cluster: Cluster, release: dict[str, str], tmp_path: Path
) -> None:
    ns, broker = release["namespace"], release["broker"]
    run_id = submit(cluster, broker, "n_rows=100", "seed=5")
    states = wait_run(cluster, broker, run_id)
    assert {s["state"] for s in states.values()} == {"succeeded"}, states
    r = subprocess.run(
        ["jup2kub", "status", "--release", RELEASE, "-n", ns, "--json"],
        capture_output=True,
        text=True,
        timeout=300,
        env=cluster.env(),
    )
    assert r.returncode == 0, r.stdout + r.stderr
    st = json.loads(r.stdout)
    assert st["run_errors"] == {}
    row = next(row for row in st["runs"] if row["run_id"] == run_id)
    assert sorted(row["steps"]) == ["clean", "load", "model", "report", "summarize"]
    assert all(s["state"] == "succeeded" for s in row["steps"].values())
    fetched, direct = tmp_path / "release.ipynb", tmp_path / "state.ipynb"
    for source, out in (
        (["--release", RELEASE, "-n", ns], fetched),
        (["--state", str(state_dir(cluster, ns))], direct),
    ):
        r = subprocess.run(
            ["jup2kub", "results", str(NOTEBOOK), run_id, *source, "-o", str(out)],
            capture_output=True,
            text=True,
            timeout=300,
            env=cluster.env(),
        )
        assert r.returncode == 0, r.stdout + r.stderr
    assert nbformat.read(fetched, 4) == nbformat.read(direct, 4)


def test_steps_from_opens_the_steps_to_a_namespace(
    cluster: Cluster, release: dict[str, str], built: Path, namespace: str
) -> None:
    """The refusal above is the policy's: networkPolicy.stepsFrom lets a namespace in."""
    ns = release["namespace"]
    step = _pod_ip(cluster, ns, "jup2kub.io/role=step,app.kubernetes.io/component=load")
    _probe_pod(cluster, namespace, "viewer")
    assert _blocked(_get(cluster, namespace, "viewer", f"http://{step}:8080/runs"))
    peer = {"namespaceSelector": {"matchLabels": {"kubernetes.io/metadata.name": namespace}}}
    helm(
        cluster, "upgrade", RELEASE, str(built), "-n", ns, "--reuse-values",
        "--set-json", f"networkPolicy.stepsFrom={json.dumps([peer])}", "--wait",
    )  # fmt: skip
    # the enforcer applies a changed policy asynchronously: wait for it (bounded)
    deadline = time.monotonic() + 60
    r = _get(cluster, namespace, "viewer", f"http://{step}:8080/runs")
    while r.returncode != 0 and time.monotonic() < deadline:
        time.sleep(2)
        r = _get(cluster, namespace, "viewer", f"http://{step}:8080/runs")
    assert r.returncode == 0, r.stderr
    assert json.loads(r.stdout) is not None  # the step's runs, as JSON
