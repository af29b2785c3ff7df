"""`jup2kub deploy` / `jup2kub status --release` without a cluster: values handling, the
client-side schema check with the real helm, and clear errors when the cluster is unreachable.
(The same commands against a live cluster are in e2e/tests/test_deploy.py.)"""

from __future__ import annotations

import os
from pathlib import Path

import pytest
import yaml

from jup2kub.cluster.pods import await_ready_pods
from jup2kub.cluster.readiness import PodInfo, Readiness
from jup2kub.durations import parse_duration
from jup2kub.errors import UsageError, ValuesError
from jup2kub.helm import load_values, merge_values
from tests.support.cli_runner import CORPUS, jup2kub


@pytest.fixture(scope="module")
def chart_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("deploy") / "out"
    r = jup2kub("build", CORPUS / "plain_cells.ipynb", "-o", out, "--no-images")
    assert r.returncode == 0, r.stderr
    return out


@pytest.fixture
def dead_cluster(tmp_path: Path) -> Path:
    """A kubeconfig whose API server is a closed loopback port."""
    path = tmp_path / "kubeconfig"
    path.write_text(
        yaml.safe_dump(
            {
                "apiVersion": "v1",
                "kind": "Config",
                "current-context": "dead",
                "clusters": [
                    {
                        "name": "dead",
                        "cluster": {
                            "server": "https://127.0.0.1:1",
                            "insecure-skip-tls-verify": True,
                        },
                    }
                ],
                "users": [{"name": "u", "user": {"token": "t"}}],
                "contexts": [
                    {
                        "name": "dead",
                        "context": {"cluster": "dead", "user": "u", "namespace": "team-a"},
                    }
                ],
            }
        )
    )
    return path


def test_merge_values_follows_helm() -> None:
    base = {
        "steps": {"a": {"replicas": 3, "env": [1, 2]}, "b": {"replicas": 1}},
        "kafka": {"nodes": 3},
        "drop": {"x": 1},
    }
    override = {"steps": {"a": {"env": [9]}, "b": None}, "kafka": {"nodes": 1}, "drop": None}
    merged = merge_values(base, override)
    # lists are replaced (never concatenated), maps merged, null deletes
    assert merged == {"steps": {"a": {"replicas": 3, "env": [9]}}, "kafka": {"nodes": 1}}
    assert base["steps"]["a"]["env"] == [1, 2]  # inputs untouched


def test_load_values_errors_name_the_file_and_line(tmp_path: Path) -> None:
    good = tmp_path / "a.yaml"
    good.write_text("storage:\n  mode: local\n")
    later = tmp_path / "b.yaml"
    later.write_text("storage:\n  mode: ebs\nextra: 1\n")
    assert load_values([good, later]) == {"storage": {"mode": "ebs"}, "extra": 1}
    bad = tmp_path / "bad.yaml"
    bad.write_text("storage:\n  mode: [local\n")
    with pytest.raises(ValuesError) as err:
        load_values([good, bad])
    assert err.value.exit_code == 2 and "bad.yaml, line" in str(err.value)
    listing = tmp_path / "list.yaml"
    listing.write_text("- a\n- b\n")
    with pytest.raises(ValuesError, match="mapping"):
        load_values([listing])


def test_parse_duration() -> None:
    assert parse_duration("15m") == 900
    assert parse_duration("1h30m") == 5400
    assert parse_duration("90s") == parse_duration("90") == 90
    with pytest.raises(UsageError):
        parse_duration("soon")


def test_deploy_rejects_a_values_typo_before_touching_the_cluster(
    chart_dir: Path, dead_cluster: Path, tmp_path: Path
) -> None:
    typo = tmp_path / "typo.yaml"
    typo.write_text("storage:\n  moed: local\n")
    r = jup2kub(
        "deploy",
        chart_dir,
        "--release",
        "demo",
        "-f",
        typo,
        "--kubeconfig",
        dead_cluster,
        "--timeout",
        "30s",
    )
    # the schema check is a client-side render: no cluster was needed to refuse it
    assert r.returncode == 2, r.stdout + r.stderr
    assert "schema" in r.stderr and "moed" in r.stderr
    assert "Traceback" not in r.stderr


def test_deploy_to_an_unreachable_cluster(chart_dir: Path, dead_cluster: Path) -> None:
    r = jup2kub(
        "deploy",
        chart_dir,
        "--release",
        "demo",
        "-f",
        chart_dir / "values-dev.yaml",
        "--kubeconfig",
        dead_cluster,
        "--timeout",
        "30s",
    )
    assert r.returncode == 1, r.stdout + r.stderr
    assert "cannot be reached" in r.stderr and "--kubeconfig" in r.stderr
    assert "Traceback" not in r.stderr


def test_status_of_a_release_on_an_unreachable_cluster(dead_cluster: Path) -> None:
    r = jup2kub("status", "--release", "demo", "--kubeconfig", dead_cluster)
    assert r.returncode == 1, r.stdout + r.stderr
    assert "cannot be reached" in r.stderr and "Traceback" not in r.stderr


def test_results_of_a_release_on_an_unreachable_cluster(dead_cluster: Path) -> None:
    r = jup2kub(
        "results",
        CORPUS / "plain_cells.ipynb",
        "run-1",
        "--release",
        "demo",
        "--kubeconfig",
        dead_cluster,
    )
    assert r.returncode == 1, r.stdout + r.stderr
    assert "cannot be reached" in r.stderr and "Traceback" not in r.stderr


@pytest.mark.parametrize(
    "args, message",
    [
        (["status"], "NOTEBOOK RUN_ID --kafka BOOTSTRAP, or --release NAME"),
        (["status", "--release", "demo", "nb.ipynb"], "--release takes no NOTEBOOK"),
        (["deploy", "{chart}", "--release", "Bad_Name"], "invalid release name"),
        (["deploy", "{chart}", "--release", "demo", "--timeout", "soon"], "invalid duration"),
        (["deploy", "{notebook}", "--release", "demo"], "not a Helm chart directory"),
        (["results", "{nb}", "run-1"], "exactly one of --state DIR and --release NAME"),
        (
            ["results", "{nb}", "run-1", "--release", "demo", "--state", "{chart}"],
            "exactly one of --state DIR and --release NAME",
        ),
        (["results", "{nb}", "bad id!", "--release", "demo"], "RUN_ID"),
    ],
)
def test_usage_errors(chart_dir: Path, dead_cluster: Path, args: list[str], message: str) -> None:
    args = [
        a.format(chart=chart_dir, notebook=CORPUS.parent, nb=CORPUS / "plain_cells.ipynb")
        for a in args
    ]
    r = jup2kub(*args, env={**os.environ, "KUBECONFIG": str(dead_cluster)})
    assert r.returncode == 2, r.stdout + r.stderr
    assert message in r.stderr


def _pods_state(ready: dict[str, bool]) -> Readiness:
    pods = [
        PodInfo(f"{step}-0", step, "Running", ok, 0, "n", None, port=8080)
        for step, ok in ready.items()
    ]
    return Readiness([], pods)


def test_results_wait_for_a_replaced_pod_to_be_ready() -> None:
    """`results --release` right after a step's pod was replaced: the pods are read again
    until the step has a ready one, instead of failing at once."""
    states = iter([_pods_state({"a": True, "b": False}), _pods_state({"a": True, "b": True})])
    reads: list[int] = []

    def read() -> Readiness:
        reads.append(1)
        return next(states)

    first = _pods_state({"a": True, "b": False})
    state, missing = await_ready_pods(first, read, ["a", "b"], timeout=30, poll=0.01)
    assert missing == [] and len(reads) == 2
    assert all(p.ready for p in state.pods)


def test_results_give_up_after_the_timeout_naming_the_step() -> None:
    never = _pods_state({"a": True, "b": False})
    state, missing = await_ready_pods(never, lambda: never, ["a", "b"], timeout=0.05, poll=0.01)
    assert missing == ["b"] and state is never
