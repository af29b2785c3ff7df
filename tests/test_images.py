"""Step images on a real Docker engine (tests/setup.d/40-docker.sh starts one when needed):
build, content-hash reuse, containers on a real Kafka broker (read-only root, non-root user,
host directory as the state volume) against ``jup2kub run``, push to a local registry, and the
traced build with no host environment value in OUT or in the images."""

from __future__ import annotations

import contextlib
import json
import os
import time
import urllib.error
import urllib.request
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import docker
import nbformat
import pytest
from kafka import KafkaProducer

from jup2kub.api import inspect_notebook
from jup2kub.build import deps, images
from jup2kub.build.deps.capture import installed
from jup2kub.chart.options import ChartOptions
from jup2kub.chart.render import render_chart
from jup2kub.model.notebook import load_notebook
from jup2kub.model.pipeline import Pipeline
from jup2kub.plan import plan_pipeline
from jup2kub.run.executor import run_pipeline
from jup2kub.run.local import LocalExecutor
from jup2kub_runtime.contract.messages import run_message
from jup2kub_runtime.contract.topics import edge_topic, runs_topic
from jup2kub_runtime.storage.state_store import StateStore
from tests.support import docker_engine
from tests.support.kafka_broker import free_port
from tests.support.registry import running_registry

REPO = Path(__file__).resolve().parents[1]
CORPUS = REPO / "tests" / "corpus"
SETUP = REPO / "tests" / "setup.d" / "40-docker.sh"

CANARY = "j2k-canary-4b1e8d2a90-never-in-images"
STATE_MOUNT = images.DEFAULT_WORKDIR


# --------------------------------------------------------------------------- fixtures


@pytest.fixture(scope="module")
def base_image() -> str:
    return docker_engine.base_image()


@pytest.fixture(scope="module")
def client(base_image: str) -> docker.DockerClient:
    return images.engine()


@pytest.fixture(scope="module")
def target(client: docker.DockerClient, base_image: str) -> deps.Target:
    return images.probe_target(client, base_image)


def build(
    pipeline: Pipeline,
    client: docker.DockerClient,
    target: deps.Target,
    base: str,
    *,
    log: list[str] | None = None,
    **options: Any,
) -> tuple[images.BuildResult, deps.Dependencies, deps.Locks]:
    d = deps.capture(pipeline, target)
    locks = deps.lock(d)
    result = images.build_images(
        plan_pipeline(pipeline),
        d,
        locks,
        images.ImageOptions(base_image=base, **options),
        client=client,
        log=(log.append if log is not None else None),
    )
    return result, d, locks


def copy_notebook(src: Path, dst: Path, edit: dict[int, str] | None = None) -> Path:
    nb = nbformat.read(src, as_version=4)
    for index, source in (edit or {}).items():
        nb.cells[index].source = source
    dst.parent.mkdir(parents=True, exist_ok=True)
    nbformat.write(nb, dst)
    return dst


# --------------------------------------------------------------------------- containers


class StepContainers:
    """One container per step, as the chart runs them: read-only root, uid 10001, /tmp as
    tmpfs, the host directory ``state`` as the state volume, the broker on the host loopback."""

    def __init__(
        self,
        client: docker.DockerClient,
        result: images.BuildResult,
        pipeline: Pipeline,
        bootstrap: str,
        state: Path,
    ) -> None:
        self.client = client
        self.name = pipeline.name
        self.state = state
        self.containers: dict[str, Any] = {}
        self.ports: dict[str, int] = {}
        state.mkdir(parents=True, exist_ok=True)
        os.chown(state, images.USER_ID, images.USER_ID)
        # the code bundles, mounted read-only where the chart mounts its ConfigMaps
        bundles = plan_pipeline(pipeline).write_bundles(state.parent / "code")
        for step in pipeline.steps:
            inputs = [edge_topic(self.name, u, step.name) for u in step.after] or [
                runs_topic(self.name)
            ]
            outputs = [edge_topic(self.name, step.name, d) for d in pipeline.downstream(step.name)]
            port = free_port()
            env = {
                "J2K_BOOTSTRAP_SERVERS": bootstrap,
                "J2K_PIPELINE": self.name,
                "J2K_STEP": step.name,
                "J2K_INPUT_TOPICS": ",".join(inputs),
                "J2K_OUTPUT_TOPICS": ",".join(outputs),
                "J2K_STATE_PATH": STATE_MOUNT,
                "J2K_PORT": str(port),
                "J2K_HEALTH_HOST": "127.0.0.1",
                "J2K_TOPIC_PARTITIONS": "2",
            }
            self.containers[step.name] = client.containers.run(
                result.images[step.name].reference,
                detach=True,
                network_mode="host",
                read_only=True,
                user=f"{images.USER_ID}:{images.USER_ID}",
                tmpfs={"/tmp": "rw,size=512m"},
                environment=env,
                volumes={
                    str(state): {"bind": STATE_MOUNT, "mode": "rw"},
                    str(bundles[step.name]): {"bind": "/app/step", "mode": "ro"},
                },
                name=f"j2k-test-{self.name}-{step.name}-{uuid.uuid4().hex[:6]}",
            )
            self.ports[step.name] = port

    def get(self, step: str, path: str) -> int:
        try:
            with urllib.request.urlopen(
                f"http://127.0.0.1:{self.ports[step]}{path}", timeout=3
            ) as resp:
                return int(resp.status)
        except urllib.error.HTTPError as exc:
            return int(exc.code)

    def logs(self) -> str:
        return "\n".join(
            f"--- {s}\n{c.logs(tail=40).decode(errors='replace')}"
            for s, c in self.containers.items()
        )

    def wait_ready(self, timeout: float = 300) -> None:
        deadline = time.monotonic() + timeout
        for step, container in self.containers.items():
            while True:
                try:
                    if self.get(step, "/readiness") == 200:
                        break
                except OSError:
                    pass
                container.reload()
                assert container.status != "exited", self.logs()
                assert time.monotonic() < deadline, f"{step} not ready\n{self.logs()}"
                time.sleep(0.5)

    def stop(self) -> None:
        for container in self.containers.values():
            with contextlib.suppress(docker.errors.DockerException):
                container.remove(force=True)


def submit(bootstrap: str, pipeline: str, run_id: str) -> None:
    producer = KafkaProducer(bootstrap_servers=bootstrap, acks="all")
    try:
        producer.send(
            runs_topic(pipeline), json.dumps(run_message(run_id, {})).encode(), key=run_id.encode()
        ).get(60)
    finally:
        producer.close(timeout=5)


def same(a: Any, b: Any) -> bool:
    import numpy as np
    import pandas as pd

    if isinstance(a, (pd.DataFrame, pd.Series)):
        return type(a) is type(b) and bool(a.equals(b))
    if isinstance(a, np.ndarray):
        return isinstance(b, np.ndarray) and bool(np.array_equal(a, b))
    if isinstance(a, (list, tuple)):
        return type(a) is type(b) and len(a) == len(b) and all(map(same, a, b))
    if isinstance(a, dict):
        return isinstance(b, dict) and a.keys() == b.keys() and all(same(a[k], b[k]) for k in a)
    if type(a).__module__.startswith(("matplotlib", "sklearn")):
        return type(a) is type(b)  # figures/models: same kind; their numbers are checked apart
    return bool(a == b)


def stdout_of(store: StateStore, run_id: str, step: str) -> str:
    cells = store.outputs(run_id, step) or []
    if isinstance(cells, dict):
        cells = cells.get("cells", [])
    text = []
    for cell in cells:
        for o in cell.get("outputs", []):
            if o.get("output_type") == "stream":
                text.append("".join(o.get("text", "")))
            elif o.get("output_type") == "execute_result":
                text.append(str(o.get("data", {}).get("text/plain", "")))
    return "".join(text)


# --------------------------------------------------------------------------- tests


def test_images_are_non_root_read_only_friendly_and_reused(
    client: docker.DockerClient, target: deps.Target, base_image: str, tmp_path: Path
) -> None:
    nb = copy_notebook(CORPUS / "plain_cells.ipynb", tmp_path / "v1" / "plain_cells.ipynb")
    pipeline = inspect_notebook(nb)
    result, _, _ = build(pipeline, client, target, base_image)
    assert set(result.images) == {s.name for s in pipeline.steps}
    for img in result.images.values():
        # its own name, unless an image with the same content was there already (any
        # pipeline's: e.g. one of the e2e tests' on this engine), which is then used as it is
        assert img.repository.startswith("plain-cells-cell-") or img.reused == "label"
        assert client.images.get(img.reference).labels[images.CONTENT_LABEL] == img.tag
        config = client.images.get(img.reference).attrs["Config"]
        assert config["User"] == "10001:10001"
        assert config["Entrypoint"] == ["/opt/jup2kub/venv/bin/python", "-m", "jup2kub_runtime"]
        assert "8080/tcp" in config["ExposedPorts"]
        assert config["WorkingDir"] == STATE_MOUNT
        assert "J2K_CODE_PATH=/app/step" in config["Env"]
    # the lock is in the image (pins only: no step or pipeline name); the wheels are not
    # (install stage only); nor is the code bundle (the chart mounts it at /app/step)
    out = (
        client.containers.run(
            result.images["cell-0"].reference,
            [
                "-c",
                "import os, jup2kub_runtime; print(os.listdir('/app/step')); "
                "print(os.path.exists('/tmp/wheels')); lock = open('/app/requirements.lock')"
                ".read(); print(lock.count('--hash=sha256:'), 'cell-0' in lock); "
                # /metrics needs prometheus_client installed in the image
                "from jup2kub_runtime.serving.metrics import StepMetrics; "
                "print(b'j2k_ready{' in StepMetrics('p', 's').exposition()[0]); "
                # traces need OpenTelemetry's SDK and OTLP/HTTP exporter installed too
                "from jup2kub_runtime.execution.tracing import tracer; "
                "print(tracer({'OTEL_TRACES_EXPORTER': 'otlp'}).on)",
            ],
            entrypoint=["/opt/jup2kub/venv/bin/python"],
            remove=True,
            network_mode="none",
            read_only=True,
            user="10001:10001",
        )
        .decode()
        .split()
    )
    assert out[0] == "[]" and out[1] == "False" and int(out[2]) >= 3 and out[3] == "False"
    assert out[4] == "True" and out[5] == "True"
    # the steps need the same packages and no data file: one image, built at most once (an
    # earlier test session may have built it: its content hash is the same)
    assert len({i.image_id for i in result.images.values()}) == 1
    assert len({i.tag for i in result.images.values()}) == 1
    assert sum(i.built for i in result.images.values()) <= 1
    first = pipeline.steps[0].name
    assert all(i.reference == result.images[first].reference for i in result.images.values())

    # same notebook: nothing rebuilt, same tags
    log: list[str] = []
    again, _, _ = build(pipeline, client, target, base_image, log=log)
    assert not any(i.built for i in again.images.values())
    assert again.tags == result.tags
    assert sum(("not rebuilt" in line or "not built" in line) for line in log) == len(result.images)

    # one cell's code changed: no image changes (the code is not in the image)
    salt = uuid.uuid4().int % 10**9
    nb2 = copy_notebook(
        nb,
        tmp_path / "v2" / "plain_cells.ipynb",
        {2: f"squares = [v * v + 0 * {salt} for v in values]"},
    )
    changed, _, _ = build(inspect_notebook(nb2), client, target, base_image)
    assert not any(i.built for i in changed.images.values())
    assert changed.tags == result.tags
    # one cell imports a package: its step's image differs, and that of the step reading its
    # value (which inherits the package, to load the value); the others keep theirs
    nb3 = copy_notebook(
        nb,
        tmp_path / "v3" / "plain_cells.ipynb",
        {2: "import yaml\nsquares = [v * v for v in values]"},
    )
    imported, _, _ = build(inspect_notebook(nb3), client, target, base_image)
    changed_steps = {s for s, t in imported.tags.items() if t != result.tags[s]}
    assert "cell-2" in changed_steps and changed_steps <= {"cell-2", "cell-4"}


def test_step_containers_on_kafka_match_jup2kub_run(
    client: docker.DockerClient,
    target: deps.Target,
    base_image: str,
    kafka: str,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    nb_path = CORPUS / "sales_markers.ipynb"
    pipeline = inspect_notebook(nb_path)
    result, _, _ = build(pipeline, client, target, base_image)
    # packages' own test suites are not shipped (pandas/tests alone is ~60 MB)
    probe = (
        client.containers.run(
            result.images["load"].reference,
            [
                "-c",
                "import os, pandas; print(os.path.isdir(os.path.join("
                "os.path.dirname(pandas.__file__), 'tests')))",
            ],
            entrypoint=["/opt/jup2kub/venv/bin/python"],
            remove=True,
            network_mode="none",
            read_only=True,
            user="10001:10001",
        )
        .decode()
        .split()
    )
    assert probe == ["False"]
    # the reference: jup2kub run (embedded), in its own working directory
    local_cwd = tmp_path / "local"
    local_cwd.mkdir()
    monkeypatch.chdir(local_cwd)
    local = run_pipeline(
        load_notebook(nb_path), pipeline, local_cwd / "work", {}, LocalExecutor(jobs=2)
    )
    assert local.ok, local.steps
    monkeypatch.chdir(tmp_path)

    state = tmp_path / "state"
    containers = StepContainers(client, result, pipeline, kafka, state)
    try:
        containers.wait_ready()
        for step in containers.containers:
            assert containers.get(step, "/healthz") == 200
        # readiness may drop briefly while the consumer group rebalances: all ready together
        deadline = time.monotonic() + 120
        while not all(containers.get(s, "/readiness") == 200 for s in containers.containers):
            assert time.monotonic() < deadline, containers.logs()
            time.sleep(0.5)
        run_id = f"run-{uuid.uuid4().hex[:8]}"
        submit(kafka, containers.name, run_id)
        store = StateStore(state)
        deadline = time.monotonic() + 600
        while not all(store.is_complete(run_id, s.name) for s in pipeline.steps):
            assert time.monotonic() < deadline, containers.logs()
            time.sleep(0.5)
    finally:
        containers.stop()
    ref = StateStore(local_cwd / "work")
    for step in pipeline.steps:
        for name in sorted(step.outputs):
            a = ref.load_value(local.run_id, step.name, name)
            b = store.load_value(run_id, step.name, name)
            assert same(a, b), (step.name, name, a, b)
        assert stdout_of(store, run_id, step.name) == stdout_of(ref, local.run_id, step.name)
    assert "'slope'" in stdout_of(store, run_id, "report")  # the final summary dict shown
    # the file one step wrote and another read went through the shared volume, in the run's
    # own directory (concurrent runs never see each other's files)
    shared = state / "runs" / run_id / "files" / "clean_sales.csv"
    assert shared.read_bytes() == (local_cwd / "clean_sales.csv").read_bytes()


@pytest.fixture
def registry(tmp_path: Path) -> Iterator[str]:
    """The CNCF distribution registry on a free loopback port; stopped by its pid."""
    with running_registry(tmp_path / "registry") as reg:
        yield reg.host


def test_push_records_digests_for_the_chart(
    client: docker.DockerClient, target: deps.Target, base_image: str, registry: str, tmp_path: Path
) -> None:
    nb = CORPUS / "plain_cells.ipynb"
    pipeline = inspect_notebook(nb)
    result, _, _ = build(pipeline, client, target, base_image, registry=registry, push=True)
    assert set(result.digests) == {s.name for s in pipeline.steps}
    for step, img in result.images.items():
        # the steps need the same packages: one image (an earlier one's, tagged into this
        # registry), named by every step
        name = result.repositories.get(step, f"plain-cells-{step}")
        assert img.repository == f"{registry}/{name}"
        req = urllib.request.Request(
            f"http://{registry}/v2/{name}/manifests/{img.tag}",
            method="HEAD",
            headers={"Accept": "application/vnd.docker.distribution.manifest.v2+json"},
        )
        with urllib.request.urlopen(req, timeout=10) as resp:
            assert resp.headers["Docker-Content-Digest"] == img.digest
    files = render_chart(
        plan_pipeline(pipeline),
        ChartOptions(
            image_registry=registry,
            image_tags=result.tags,
            image_digests=result.digests,
            image_repositories=result.repositories,
        ),
    )
    import yaml

    values = yaml.safe_load(files["values.yaml"])
    for step, img in result.images.items():
        assert values["steps"][step]["image"]["digest"] == img.digest
        assert values["steps"][step]["image"]["tag"] == img.tag
        assert f"{registry}/{values['steps'][step]['image']['repository']}" == img.repository
    assert len({i.digest for i in result.images.values()}) == 1


def _export_contains(client: docker.DockerClient, image: str, needles: list[bytes]) -> set[bytes]:
    """Which of ``needles`` occur anywhere in the image's filesystem (``docker export``)."""
    container = client.containers.create(image)
    found: set[bytes] = set()
    keep = max(len(n) for n in needles)
    try:
        tail = b""
        for chunk in container.export():
            data = tail + chunk
            found.update(n for n in needles if n in data)
            tail = data[-keep:]
    finally:
        container.remove(force=True)
    return found


def test_traced_build_copies_data_and_leaks_no_environment(
    client: docker.DockerClient,
    target: deps.Target,
    base_image: str,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    data = tmp_path / "inputs" / "table.csv"
    data.parent.mkdir()
    data.write_text("a,b\n1,2\n3,4\n")
    work = tmp_path / "work"
    work.mkdir()
    nb = copy_notebook(CORPUS / "plain_cells.ipynb", work / "traced.ipynb")
    node = nbformat.read(nb, as_version=4)
    node.cells = [
        nbformat.v4.new_code_cell(
            "import importlib\nmodname = 'ya' + 'ml'\nmod = importlib.import_module(modname)\n"
            "doc = mod.safe_load('a: 1')"
        ),
        nbformat.v4.new_code_cell(
            f"with open({str(data)!r}) as f:\n    rows = f.read()\nn = len(rows) + doc['a']"
        ),
    ]
    nbformat.write(node, nb)
    monkeypatch.setenv("J2K_SECRET_CANARY", CANARY)
    pipeline = inspect_notebook(nb, split="cells")  # a step per cell, as the test names them
    d = deps.capture(pipeline, target)
    plan = plan_pipeline(pipeline)
    deps.trace(d, plan, cwd=work)
    locks = deps.lock(d)
    result = images.build_images(
        plan, d, locks, images.ImageOptions(base_image=base_image), client=client
    )
    out = tmp_path / "OUT"
    images.write_files(images.build_files(d, locks, result), out)
    assert "pyyaml==" in (out / "images" / "cell-0" / "requirements.lock").read_text()
    summary = json.loads((out / "images" / "trace-summary.json").read_text())
    assert summary["steps"]["cell-0"]["found_only_by_trace"] == ["pyyaml"]
    assert summary["data_files"][0]["path"] == str(data)
    # the dynamically imported package is installed in that step's image
    probe = (
        client.containers.run(
            result.images["cell-0"].reference,
            ["-c", "import yaml; print(yaml.__version__)"],
            entrypoint=["/opt/jup2kub/venv/bin/python"],
            remove=True,
            network_mode="none",
            read_only=True,
            user="10001:10001",
        )
        .decode()
        .strip()
    )
    assert probe == installed("pyyaml").version  # type: ignore[union-attr]
    # the data file is copied into the image of the step that reads it
    cat = client.containers.run(
        result.images["cell-1"].reference,
        [str(data)],
        entrypoint=["cat"],
        remove=True,
        network_mode="none",
    )
    assert cat.decode() == data.read_text()
    # the data file edited where it is: the content hash covers its bytes, so the step that
    # reads it gets a new image with the new contents (a stale copy would be a silent
    # difference), and the other step's image stays
    data.write_text("a,b\n5,6\n")
    again = images.build_images(
        plan, d, locks, images.ImageOptions(base_image=base_image), client=client
    )
    assert again.images["cell-1"].reference != result.images["cell-1"].reference
    assert again.images["cell-0"].reference == result.images["cell-0"].reference
    cat = client.containers.run(
        again.images["cell-1"].reference,
        [str(data)],
        entrypoint=["cat"],
        remove=True,
        network_mode="none",
    )
    assert cat.decode() == "a,b\n5,6\n"
    # no value of the build host's environment, in OUT or in any image
    for p in out.rglob("*"):
        if p.is_file():
            assert CANARY.encode() not in p.read_bytes(), p
    for img in result.images.values():
        assert not _export_contains(client, img.reference, [CANARY.encode()]), img.reference


COMPOSED = """\
name: sales-reuse
steps:
  - notebook: sales_markers.ipynb
    step: load
  - notebook: sales_markers.ipynb
    step: clean
    inputs:
      raw: load
"""


def test_a_composition_reuses_the_catalogued_images(
    client: docker.DockerClient, base_image: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Notebook A built (its steps catalogued), then a composition of A's steps: no image is
    built, and the chart names A's images (the code bundles are the chart's own)."""
    import yaml

    from jup2kub import api
    from jup2kub.catalog.store import Catalog

    monkeypatch.chdir(tmp_path)
    nb = copy_notebook(CORPUS / "sales_markers.ipynb", tmp_path / "sales_markers.ipynb")
    (tmp_path / "composed.yaml").write_text(COMPOSED)
    image_build = api.ImageBuild(base_image=base_image)
    with Catalog(str(tmp_path / "catalog.db")) as catalog:
        api.build(nb, tmp_path / "a", image_build=image_build, catalog=catalog)
        log: list[str] = []
        api.build(
            tmp_path / "composed.yaml",
            tmp_path / "c",
            image_build=image_build,
            catalog=catalog,
            log=log.append,
        )
        recorded = {r.step: r.image for r in catalog.steps("sales-reuse")}
    a = yaml.safe_load((tmp_path / "a" / "values.yaml").read_text())["steps"]
    c = yaml.safe_load((tmp_path / "c" / "values.yaml").read_text())["steps"]
    assert sorted(c) == ["clean", "load"]
    assert not [line for line in log if "building" in line], log
    for step in c:
        assert c[step]["image"] == a[step]["image"]
        ref = f"{a[step]['image']['repository']}:{a[step]['image']['tag']}"
        # (A's steps with the same packages share one image: any of them may be named)
        assert f"step {step}: reused catalogued image {ref} (of sales-markers/" in "\n".join(log)
        assert recorded[step] == ref
        spec = json.loads((tmp_path / "c" / "files" / "steps" / step / "step.json").read_text())
        assert spec["pipeline"] == "sales-reuse"
    built = json.loads((tmp_path / "c" / "images" / "images.json").read_text())["steps"]
    assert sorted(built) == ["clean", "load"]
    assert all(i["reused"].startswith("catalog:sales-markers/") for i in built.values())


def test_a_reference_counts_only_inside_the_builds_registry() -> None:
    """A found image's name is used as it is only where the chart's registry puts it."""
    rel = images._relative
    assert rel("a-load:abc", "", "abc") == "a-load"
    assert rel("team/a-load:abc", "", "abc") == "team/a-load"
    assert rel("127.0.0.1:5000/a-load:abc", "", "abc") is None  # another registry's name
    assert rel("reg.example.com/a-load:abc", "reg.example.com", "abc") == "a-load"
    assert rel("reg.example.com/a-load:abc", "other.example.com", "abc") is None
    assert rel("a-load:abd", "", "abc") is None
