"""Sharing through a registry (issue 31): step images and the chart pushed to a real OCI
registry (the CNCF distribution registry on the host's loopback), the chart installed from
``oci://`` by ``jup2kub deploy`` and by ``helm install``, the nodes pulling the step images by
digest from the registry (nothing loaded into them).

The nodes reach the registry through ``e2e/cluster registry add 127.0.0.1:PORT``: a
``hosts.toml`` for every node's containerd (plain HTTP), and with several nodes a relay of
``127.0.0.1:PORT`` into each node's network namespace. Only on the harness's own cluster: a
registry on this machine's loopback is not reachable from another cluster's nodes.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import nbformat
import pytest
import yaml
from nbformat import v4

from e2e.network import membership
from e2e.support import (
    E2E,
    Cluster,
    containerd_socket,
    docker_ok,
    helm,
    result_file,
    state_dir,
    wait_final,
    with_cluster_dns,
)
from tests.support.registry import Registry, running_registry

TEAM = "team"  # where the step images go: 127.0.0.1:PORT/team/<repository>
CHARTS = "charts"  # where the chart goes: oci://127.0.0.1:PORT/charts/<name>
STEPS = ("work", "after")


def _notebook(path: Path) -> Path:
    nb = v4.new_notebook()
    nb.metadata = {
        "kernelspec": {"name": "python3", "display_name": "Python 3", "language": "python"}
    }
    params = v4.new_code_cell("x = 0")
    params.metadata["tags"] = ["parameters"]
    nb.cells = [
        params,
        v4.new_code_cell("#| step: work\ny = 3 * x + 1"),
        v4.new_code_cell("#| step: after\nresult = f'oci {x}:{2 * y}'\nprint(result)"),
    ]
    nbformat.write(nb, path)
    return path


def expected(x: int) -> str:
    return f"oci {x}:{2 * (3 * x + 1)}"


@dataclass(frozen=True)
class Published:
    registry: Registry
    notebook: Path
    out: Path
    name: str  # the chart's (and pipeline's) name
    version: str
    #: step -> the image reference the chart gives its pod (HOST/team/REPO:TAG@DIGEST)
    images: dict[str, str]
    #: step -> the digest values.yaml pins
    digests: dict[str, str]
    #: step -> its image's repository in the registry (HOST/team/REPO)
    repositories: dict[str, str]

    @property
    def chart(self) -> str:
        return f"oci://{self.registry.host}/{CHARTS}/{self.name}"


@pytest.fixture(scope="module")
def registry(cluster: Cluster, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Registry]:
    """A registry on the host's loopback that every node pulls from (plain HTTP)."""
    if not cluster.own:
        pytest.skip(
            "the registry runs on this machine's loopback: only the harness's own nodes reach "
            "it (e2e/cluster registry add)"
        )
    with running_registry(tmp_path_factory.mktemp("registry")) as reg:
        r = subprocess.run(
            [str(E2E / "cluster"), "registry", "add", reg.host],
            capture_output=True,
            text=True,
            timeout=120,
        )
        assert r.returncode == 0, r.stdout + r.stderr
        try:
            yield reg
        finally:
            subprocess.run(
                [str(E2E / "cluster"), "registry", "remove", reg.host], check=False, timeout=120
            )


def _node_images(host: str) -> dict[str, list[str]]:
    """Per node: the image references in its containerd naming the registry ``host``."""
    found = {}
    for node in membership.current():
        r = subprocess.run(
            [
                "ctr",
                "--address",
                str(containerd_socket(node.name)),
                "--namespace",
                "k8s.io",
                "images",
                "ls",
                "-q",
            ],
            capture_output=True,
            text=True,
            timeout=120,
            check=True,
        )
        found[node.name] = [ref for ref in r.stdout.split() if ref.startswith(f"{host}/")]
    return found


@pytest.fixture(scope="module")
def published(registry: Registry, tmp_path_factory: pytest.TempPathFactory) -> Published:
    """The step images built fresh and pushed (never loaded into a node), the chart packaged
    and pushed: what the registry holds agrees with the chart's values."""
    if not shutil.which("jup2kub") or not docker_ok():
        pytest.skip("needs jup2kub and a Docker engine (bash e2e/run.sh)")
    work = tmp_path_factory.mktemp("oci")
    nb = _notebook(work / "oci-share.ipynb")
    out = work / "out"
    base = os.environ.get("J2K_BASE_IMAGE", "jup2kub-test-base:bookworm-py311-1")
    build = subprocess.run(
        [
            "jup2kub",
            "build",
            str(nb),
            "-o",
            str(out),
            "--kafka-nodes",
            "1",
            "--replicas",
            "1",
            "--base-image",
            base,
            "--image-registry",
            f"{registry.host}/{TEAM}",
            "--push",
        ],
        capture_output=True,
        text=True,
        timeout=3600,
    )
    assert build.returncode == 0, build.stdout + build.stderr
    values = yaml.safe_load((out / "values.yaml").read_text())
    assert values["image"]["registry"] == f"{registry.host}/{TEAM}", values["image"]
    images, digests, repositories = {}, {}, {}
    for step in STEPS:
        image = values["steps"][step]["image"]
        digest = image["digest"]
        assert digest.startswith("sha256:") and len(digest) == 71, image
        # the registry's own digest of what was pushed is the one the chart pins
        assert registry.manifest_digest(f"{TEAM}/{image['repository']}", image["tag"]) == digest
        digests[step] = digest
        repositories[step] = f"{registry.host}/{TEAM}/{image['repository']}"
        images[step] = f"{repositories[step]}:{image['tag']}@{digest}"
    chart = yaml.safe_load((out / "Chart.yaml").read_text())
    pkg = subprocess.run(
        [
            "jup2kub",
            "package",
            str(out),
            "-d",
            str(work / "dist"),
            "--oci",
            f"oci://{registry.host}/{CHARTS}",
        ],
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert pkg.returncode == 0, pkg.stdout + pkg.stderr
    name, version = str(chart["name"]), str(chart["version"])
    assert version in registry.tags(f"{CHARTS}/{name}"), registry.repositories()
    record = json.loads((out / ".jup2kub-published.json").read_text())
    chart_digest = registry.manifest_digest(f"{CHARTS}/{name}", version)
    assert record["chart"] == f"{registry.host}/{CHARTS}/{name}:{version}@{chart_digest}"
    return Published(registry, nb, out, name, version, images, digests, repositories)


PASSWORD = "e2e registry key password"


def _jup2kub(*args: str | Path, timeout: float = 900) -> subprocess.CompletedProcess[str]:
    """jup2kub with the signing password in its environment (never on a command line)."""
    env = {**os.environ, "COSIGN_PASSWORD": PASSWORD}
    return subprocess.run(
        ["jup2kub", *map(str, args)], capture_output=True, text=True, timeout=timeout, env=env
    )


@pytest.fixture(scope="module")
def keys(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """Two key pairs (``jup2kub keygen``): the team's, which signs, and another."""
    work = tmp_path_factory.mktemp("keys")
    made = {}
    for who in ("team", "other"):
        r = _jup2kub("keygen", work / who)
        assert r.returncode == 0, r.stdout + r.stderr
        made[who] = work / who
    return made


@pytest.fixture(scope="module")
def signed(published: Published, keys: dict[str, Path]) -> Published:
    """``jup2kub sign OUT --key team.key``: the step images by digest, the chart with its
    provenance file, pushed again (helm carries the .prov) and signed by its new digest."""
    pub = published
    r = _jup2kub("sign", pub.out, "--key", f"{keys['team']}.key")
    assert r.returncode == 0, r.stdout + r.stderr
    for step in STEPS:
        assert f"signed image {pub.repositories[step]}@{pub.digests[step]}" in r.stdout, r.stdout
    record = json.loads((pub.out / ".jup2kub-published.json").read_text())
    chart_digest = pub.registry.manifest_digest(f"{CHARTS}/{pub.name}", pub.version)
    assert (
        record["chart"] == f"{pub.registry.host}/{CHARTS}/{pub.name}:{pub.version}@{chart_digest}"
    )
    assert f"pushed and signed chart oci://{record['chart']}" in r.stdout, r.stdout
    return pub


def _namespace(cluster: Cluster, prefix: str, tmp: Path) -> tuple[str, Path]:
    ns = f"j2k-e2e-{prefix}-{os.getpid()}"
    cluster.kubectl("create", "namespace", ns)
    cluster.state_claim(ns, "256Mi")
    values = tmp / f"{prefix}-values.yaml"
    values.write_text(
        yaml.safe_dump({"storage": {"mode": "existingClaim", "existingClaim": "state"}})
    )
    return ns, values


def _step_pods(cluster: Cluster, ns: str) -> dict[str, dict[str, Any]]:
    """Step name -> its (one) running pod."""
    items = json.loads(cluster.kubectl("-n", ns, "get", "pods", "-o", "json").stdout)["items"]
    pods = {}
    for p in items:
        component = p["metadata"].get("labels", {}).get("app.kubernetes.io/component")
        if component in STEPS and not p["metadata"].get("deletionTimestamp"):
            pods[component] = p
    return pods


def _assert_pods_run_the_pinned_images(pods: dict[str, dict[str, Any]], pub: Published) -> None:
    assert sorted(pods) == sorted(STEPS), sorted(pods)
    for step, pod in pods.items():
        container = pod["spec"]["containers"][0]
        assert container["image"] == pub.images[step], (step, container["image"])
        status = pod["status"]["containerStatuses"][0]
        assert status["ready"], (step, status)
        # what the node resolved and runs: that digest, from that registry
        assert status["imageID"].endswith("@" + pub.digests[step]), (step, status["imageID"])
        assert status["imageID"].startswith(f"{pub.registry.host}/{TEAM}/"), status["imageID"]


def _run_completes(cluster: Cluster, pub: Published, ns: str, x: int) -> None:
    """A run submitted through the release's Kafka completes with the notebook's result."""
    broker = cluster.kafka_bootstrap(ns)
    r = with_cluster_dns(
        cluster, "jup2kub", "submit", str(pub.notebook), "--kafka", broker, "-p", "x", str(x)
    )
    assert r.returncode == 0, r.stdout + r.stderr
    run_id = r.stdout.strip().splitlines()[-1]
    states = wait_final(cluster, str(pub.notebook), broker, run_id, steps=len(STEPS))
    assert {s["state"] for s in states.values()} == {"succeeded"}, states
    printed = result_file(state_dir(cluster, ns), run_id, "after").read_text()
    assert f"{expected(x)}\\n" in printed, printed


def _cleanup(cluster: Cluster, release: str, ns: str) -> None:
    helm(cluster, "uninstall", release, "-n", ns, "--wait", check=False)
    cluster.kubectl("delete", "namespace", ns, "--wait=false", check=False)


def _deploy(
    cluster: Cluster, pub: Published, release: str, ns: str, values: Path, key: Path
) -> subprocess.CompletedProcess[str]:
    """``jup2kub deploy oci://... --version V --verify --key KEY``."""
    return subprocess.run(
        [
            "jup2kub",
            "deploy",
            pub.chart,
            "--version",
            pub.version,
            "--release",
            release,
            "-n",
            ns,
            "-f",
            str(values),
            "--timeout",
            "15m",
            "--verify",
            "--key",
            str(key),
        ],
        capture_output=True,
        text=True,
        timeout=1000,
        env=cluster.env(),
    )


def test_deploy_verify_from_oci_pulls_the_step_images_by_digest(
    cluster: Cluster, signed: Published, keys: dict[str, Path], tmp_path: Path
) -> None:
    pub = signed
    # the signatures hold in the registry the cluster pulls from
    verified = _jup2kub("verify", pub.out, "--key", f"{keys['team']}.pub")
    assert verified.returncode == 0, verified.stdout + verified.stderr
    assert verified.stdout.splitlines()[-1] == "all signatures hold", verified.stdout
    # nothing of the registry's is on any node yet: the images can only come from a pull
    before = _node_images(pub.registry.host)
    assert not any(before.values()), before
    ns, values = _namespace(cluster, "oci-deploy", tmp_path)
    release = "ocipipeline"
    try:
        # another key: refused before the cluster is touched, naming what failed
        refused = _deploy(cluster, pub, release, ns, values, Path(f"{keys['other']}.pub"))
        assert refused.returncode == 2, refused.stdout + refused.stderr
        assert "Traceback" not in refused.stderr, refused.stderr
        for step in STEPS:
            assert f"{pub.repositories[step]}@{pub.digests[step]}" in refused.stderr, refused.stderr
        assert f"{pub.registry.host}/{CHARTS}/{pub.name}" in refused.stderr, refused.stderr
        assert json.loads(helm(cluster, "list", "-n", ns, "-a", "-o", "json").stdout) == []
        assert _node_images(pub.registry.host) == before
        # the team's key: verified on the pulled bytes, then installed
        r = _deploy(cluster, pub, release, ns, values, Path(f"{keys['team']}.pub"))
        assert r.returncode == 0, r.stdout + r.stderr
        record = json.loads((pub.out / ".jup2kub-published.json").read_text())
        assert f"verified chart {record['chart']}" in r.stderr, r.stderr
        assert f"verified provenance {pub.name}-{pub.version}.tgz.prov" in r.stderr, r.stderr
        for step in STEPS:
            assert f"verified image {pub.repositories[step]}@{pub.digests[step]}" in r.stderr
        assert r.returncode == 0, r.stdout + r.stderr
        assert f"{len(STEPS) + 1}/{len(STEPS) + 1} workloads ready" in r.stdout, r.stdout
        pods = _step_pods(cluster, ns)
        _assert_pods_run_the_pinned_images(pods, pub)
        # the kubelet pulled each step image from the registry
        events = json.loads(cluster.kubectl("-n", ns, "get", "events", "-o", "json").stdout)
        pulled = {
            e["involvedObject"]["name"]
            for e in events["items"]
            if e.get("reason") == "Pulled" and e["message"].startswith("Successfully pulled image")
        }
        for step, pod in pods.items():
            assert pod["metadata"]["name"] in pulled, (step, sorted(pulled))
        # and the node running it holds the image under the registry's name, by digest
        after = _node_images(pub.registry.host)
        for step, pod in pods.items():
            by_digest = f"{pub.repositories[step]}@{pub.digests[step]}"
            assert by_digest in after[pod["spec"]["nodeName"]], (step, by_digest, after)
        # the release's chart is the published one
        chart = helm(cluster, "list", "-n", ns, "-o", "json").stdout
        assert json.loads(chart)[0]["chart"] == f"{pub.name}-{pub.version}", chart
        _run_completes(cluster, pub, ns, 7)
    finally:
        _cleanup(cluster, release, ns)


def test_helm_install_straight_from_oci_verifies_the_provenance(
    cluster: Cluster, signed: Published, keys: dict[str, Path], tmp_path: Path
) -> None:
    """The issue's words: ``helm install mypipeline oci://...`` (helm's own CLI, plain HTTP
    to the loopback registry) with ``--verify``: the chart's provenance file, pulled with it,
    checked against the team's OpenPGP key; another key's is refused with nothing installed.
    Then the pipeline runs."""
    pub = signed
    ns, values = _namespace(cluster, "oci-helm", tmp_path)
    release = "mypipeline"
    try:
        refused = helm(
            cluster,
            "install",
            release,
            pub.chart,
            "--version",
            pub.version,
            "--plain-http",
            "--verify",
            "--keyring",
            f"{keys['other']}.pubring.gpg",
            "-n",
            ns,
            "-f",
            str(values),
            check=False,
        )
        assert refused.returncode != 0, refused.stdout
        assert "openpgp" in refused.stderr.lower() or "signature" in refused.stderr.lower()
        listed = helm(cluster, "list", "-n", ns, "-a", "-o", "json").stdout
        assert json.loads(listed) == [], listed
        helm(
            cluster,
            "install",
            release,
            pub.chart,
            "--version",
            pub.version,
            "--plain-http",
            "--verify",
            "--keyring",
            f"{keys['team']}.pubring.gpg",
            "-n",
            ns,
            "-f",
            str(values),
            "--timeout",
            "15m",
            timeout=1000,
        )
        # helm's --wait counts a 1-replica Deployment as ready at once (e2e/README.md)
        workloads = cluster.kubectl("-n", ns, "get", "statefulsets,deployments", "-o", "name")
        for w in workloads.stdout.split():
            cluster.kubectl("-n", ns, "rollout", "status", w, "--timeout=10m", timeout=700)
        _assert_pods_run_the_pinned_images(_step_pods(cluster, ns), pub)
        _run_completes(cluster, pub, ns, 11)
    finally:
        _cleanup(cluster, release, ns)
