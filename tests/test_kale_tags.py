"""Kale's tag language, read as kubeflow-kale 2.3 reads it (``kale/processors/nbprocessor.py``).

Each expected split below was checked against Kale's own ``NotebookProcessor.parse_notebook`` on
the same notebook. Where Kale would run cells out of notebook order, or drop them, the pipeline
keeps the notebook's order instead and says so in a warning.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import nbformat
import pytest
import yaml

from jup2kub.api import inspect_notebook
from jup2kub.chart.options import RESERVED_POD_LABELS
from jup2kub.errors import CompositionError, SplitError
from jup2kub.model.kale import QUANTITY
from jup2kub.model.notebook import load_notebook
from jup2kub.model.pipeline import Pipeline
from jup2kub.model.split import split_notebook
from jup2kub_runtime.storage.state_store import StateStore
from tests.support.cli_runner import jup2kub

MakeNb = Callable[..., Path]


def steps(p: Pipeline) -> list[tuple[str, list[int]]]:
    return [(s.name, s.cells) for s in p.steps]


def warnings(p: Pipeline) -> list[str]:
    return [str(w) for w in p.split_warnings]


def test_skip_is_transparent(make_notebook: MakeNb) -> None:
    """Untagged cells after a skip cell join what was open before it (Kale's titanic example
    puts its whole preprocessing there)."""
    p = inspect_notebook(
        make_notebook(
            [
                ("code", "import math", ["imports"]),
                ("code", "print('plot')", ["skip"]),
                ("code", "import json"),  # joins the imports
                ("code", "x = 1", ["step:load"]),
                ("code", "print(x)", ["skip"]),
                ("code", "print('skip again')", ["skip"]),
                ("code", "x += 1"),  # joins load
                ("code", "y = x", ["step:use", "prev:load"]),
            ]
        )
    )
    assert steps(p) == [("load", [3, 6]), ("use", [7])]
    assert p.prelude == [0, 2]
    assert p.skipped == [1, 4, 5]
    assert not warnings(p)


def test_the_first_role_tag_wins(make_notebook: MakeNb) -> None:
    """A cell's first imports/functions/skip/pipeline-* tag decides what it is; its step tag
    and settings are then ignored, as in Kale."""
    p = inspect_notebook(
        make_notebook(
            [
                ("code", "x = 1", ["step:a"]),
                ("code", "import os", ["step:b", "imports"]),
                ("code", "print(x)", ["limit:cpu:1", "skip", "step:c"]),
                ("code", "x += 1"),  # still step a: neither b nor c was started
            ]
        )
    )
    assert steps(p) == [("a", [0, 3])]
    assert p.prelude == [1]
    assert p.skipped == [2]
    (w,) = warnings(p)  # Kale would prepend `x += 1` to every step, as part of the imports
    assert "cell 3" in w and "runs it once, in step 'a'" in w


def test_the_prelude_holds_only_what_can_run_in_every_step(make_notebook: MakeNb) -> None:
    """Kale prepends the imports/functions block to every step. That is harmless for imports,
    definitions, constants nothing rebinds and module settings (which the analysis re-runs in
    later steps anyway); any other cell runs once, in notebook order."""
    p = inspect_notebook(
        make_notebook(
            [
                ("code", "import random\n%matplotlib inline\nrandom.seed(0)", ["imports"]),
                ("code", "print('setting up')"),  # not a module setting: runs once, first
                ("code", "LIMIT = 3\nNAMES = ('a', 'b')\ndef f(v):\n    return v", ["functions"]),
                ("code", "SCALE = 2.0", ["functions"]),
                ("code", "import random\nx = f(random.random()) * SCALE", ["step:a"]),
                ("code", "SCALE = 3.0\nprint(x * SCALE, LIMIT, NAMES)", ["step:b"]),
            ]
        )
    )
    assert p.prelude == [0, 2]
    assert steps(p) == [("setup", [1, 3]), ("a", [4]), ("b", [5])]
    first, second = warnings(p)
    assert "cell 1" in first and "more than imports, definitions, constants and module" in first
    assert "cell 3" in second and "binds SCALE, which a later cell binds again" in second


def test_empty_step_tag_is_no_step_tag(make_notebook: MakeNb) -> None:
    p = inspect_notebook(
        make_notebook([("code", "x = 1", ["step:load"]), ("code", "x.bit_length()", ["step:"])])
    )
    assert steps(p) == [("load", [0, 1])]


def test_untagged_cells_after_pipeline_parameters(make_notebook: MakeNb) -> None:
    """Kale reads them as parameters, which must be literal assignments; any other code runs
    in a step continuing the one before, since parameters are not steps."""
    p = inspect_notebook(
        make_notebook(
            [
                ("code", "x = 1", ["step:a"]),
                ("code", "n = 2", ["pipeline-parameters"]),
                ("code", "m = 3\nname = 'demo'"),  # literal assignments: parameters
                ("code", "y = x + n + m"),  # not a parameter: Kale refuses it
                ("code", "print(y)", ["step:b"]),
            ]
        )
    )
    assert p.parameter_cells == [1, 2]
    assert p.parameters == {"n": 2, "m": 3, "name": "demo"}
    assert steps(p) == [("a", [0]), ("a-2", [3]), ("b", [4])]
    assert p.step("a-2").parameters == {"n", "m"}
    assert p.step("a-2").inputs == {"x": "a"}
    (w,) = warnings(p)
    assert "cell 3" in w and "pipeline-parameters" in w and "step 'a-2'" in w


def test_a_step_name_seen_again_continues_that_step(make_notebook: MakeNb) -> None:
    """Kale merges the cells of a repeated step name into one step; right after the step that
    is the same step, after another step's cells it becomes a continuation, so no cell runs
    before a cell above it."""
    p = inspect_notebook(
        make_notebook(
            [
                ("code", "x = 1", ["step:a", "limit:cpu:1"]),
                ("code", "x += 1", ["step:a", "limit:cpu:2", "prev:b"]),  # merged, tags ignored
                ("code", "y = x * 2", ["step:b"]),
                ("code", "x = y + 1", ["step:a"]),  # after b: continues a as a-2
                ("code", "print(x, y)", ["step:c", "prev:a"]),
            ]
        )
    )
    assert steps(p) == [("a", [0, 1]), ("b", [2]), ("a-2", [3]), ("c", [4])]
    assert p.step("a").pod.limits == {"cpu": "1"}
    assert p.step("a").after == []  # the later prev:b is ignored, as in Kale
    assert p.step("a-2").pod.limits == {"cpu": "1"}
    assert p.step("a-2").after == ["b"]
    assert p.step("c").after == ["a", "b", "a-2"]  # prev:a: all of a above it
    assert p.step("c").inputs == {"x": "a-2", "y": "b"}
    ignored, continued = warnings(p)
    assert "cell 1" in ignored and "'prev:b', 'limit:cpu:2'" in ignored and "cell 0" in ignored
    assert "cell 3" in continued and "Kale merges" in continued and "'a-2'" in continued


def test_settings_need_a_step_tag(make_notebook: MakeNb) -> None:
    for tag in ("prev:a", "label:team:ml", "annotation:a:b", "cache:disabled", "image:x:1"):
        path = make_notebook([("code", "x = 1", ["step:a"]), ("code", "y = 2", [tag])])
        with pytest.raises(SplitError, match="without a step tag") as info:
            inspect_notebook(path)
        assert info.value.where is not None and info.value.where.endswith("cell 1")


def test_cells_before_the_first_tag_run_first_with_a_warning(make_notebook: MakeNb) -> None:
    p = inspect_notebook(
        make_notebook(
            [
                ("code", "print('skipped')", ["skip"]),
                ("code", "x = 1"),  # Kale drops it
                ("code", "x += 1"),  # Kale drops it
                ("code", "print(x)", ["step:show"]),
            ]
        )
    )
    assert steps(p) == [("setup", [1, 2]), ("show", [3])]
    (w,) = warnings(p)
    assert "cells 1, 2" in w and "Kale leaves them out" in w and "step 'setup'" in w


def test_notebook_references(make_notebook: MakeNb) -> None:
    """A ``notebook:`` cell is left out (with a warning); untagged cells after it wait for the
    next step cell, as in Kale."""
    p = inspect_notebook(
        make_notebook(
            [
                ("code", "x = 1", ["step:a"]),
                ("code", "# the sub-pipeline", ["notebook:prep"]),
                ("code", "y = x + 1"),
                ("code", "print(y)", ["step:b"]),
            ]
        )
    )
    assert steps(p) == [("a", [0]), ("b", [2, 3])]
    assert p.skipped == [1]
    (w,) = warnings(p)
    assert "cell 1" in w and "notebook:prep" in w and "sub-pipeline" in w

    with_code = make_notebook([("code", "x = 1", ["step:a"]), ("code", "y = 2", ["notebook:n"])])
    with pytest.raises(SplitError, match="holds code"):
        inspect_notebook(with_code)
    unowned = make_notebook([("code", "x = 1", ["step:a"]), ("code", "", ["notebook:n"]), "y = 2"])
    with pytest.raises(SplitError, match="followed by a step cell"):
        inspect_notebook(unowned)
    for source in ("", "# the first part"):  # Kale's composition: see tests/test_compose.py
        only = make_notebook([("code", source, ["notebook:a"]), ("code", "", ["notebook:b"])])
        with pytest.raises(CompositionError, match=r"notebook:a refers to .*a\.ipynb") as info:
            inspect_notebook(only)
        assert "cell 0" in str(info.value) and info.value.hint


def test_metrics_cells(make_notebook: MakeNb) -> None:
    p = inspect_notebook(
        make_notebook(
            [
                ("code", "acc = 0.9", ["step:train"]),
                ("code", "print(acc)", ["pipeline-metrics"]),
                ("code", "print('skipped')", ["skip"]),
                ("code", "print(acc * 100)"),  # joins the metrics
            ]
        )
    )
    assert steps(p) == [("train", [0]), ("pipeline-metrics", [1, 3])]
    (w,) = warnings(p)
    assert "cell 1" in w and "pipeline metrics" in w and "step 'pipeline-metrics'" in w


def test_pod_settings(make_notebook: MakeNb) -> None:
    path = make_notebook(
        [
            (
                "code",
                "x = 1",
                [
                    "step:train",
                    "limit:nvidia.com/gpu:1",
                    "limit:memory:4Gi",
                    "label:team:ml",
                    "annotation:example.com/source:s3://bucket/key",
                    "secret:db-credentials:password:DB_PASSWORD",
                ],
            ),
            ("code", "print(x)", ["step:report", "prev:train"]),
        ]
    )
    p = inspect_notebook(path)
    train = p.step("train").pod
    assert train.limits == {"nvidia.com/gpu": "1", "memory": "4Gi"}
    assert train.labels == {"team": "ml"}
    assert train.annotations == {"example.com/source": "s3://bucket/key"}  # Kale: s3//bucket/key
    assert train.secrets == {"DB_PASSWORD": ("db-credentials", "password")}
    assert p.step("report").pod.is_empty()
    shown = jup2kub("inspect", path).stdout
    assert "  limits:     memory=4Gi, nvidia.com/gpu=1\n  labels:     team=ml\n" in shown
    assert "  secrets:    DB_PASSWORD=secret db-credentials, key password\n" in shown


@pytest.mark.parametrize(
    ("tag", "problem"),
    [
        ("limit:cpu:lots", "not a Kubernetes quantity"),
        ("limit:bad resource:1", "not a Kubernetes resource name"),
        ("label:team:machine learning", "not a Kubernetes label value"),
        ("label:-team:ml", "not a Kubernetes label key"),
        ("annotation:a b:c", "not a Kubernetes annotation key"),
        ("limit:nvidia.com/gpu", "missing a part"),
        ("secret:db:password", "missing a part"),
        ("secret:Db:password:DB_PASSWORD", "not a Kubernetes Secret name"),
        ("secret:db:pass word:DB_PASSWORD", "not a key of a Kubernetes Secret"),
        ("secret:db:password:DB-PASSWORD", "not an environment variable name"),
        ("secret:db:password:J2K_STEP", "reserved for the step runtime"),
    ],
)
def test_bad_pod_settings_are_refused(make_notebook: MakeNb, tag: str, problem: str) -> None:
    with pytest.raises(SplitError, match=problem) as info:
        inspect_notebook(make_notebook([("code", "x = 1", ["step:a", tag])]))
    assert info.value.where is not None and info.value.where.endswith("cell 0")
    assert info.value.hint


def _with_metadata(path: Path, metadata: dict[str, Any]) -> Path:
    nb = nbformat.read(path, as_version=4)
    nb.metadata["kubeflow_notebook"] = metadata
    nbformat.write(nb, path)
    return path


def test_steps_defaults_apply_to_every_step(make_notebook: MakeNb) -> None:
    """Kale's notebook-wide ``steps_defaults``; a default wins a clash with a step's own tag
    (Kale's ``StepConfig.update``)."""
    path = _with_metadata(
        make_notebook(
            [
                ("code", "x = 1", ["step:a", "limit:cpu:2", "label:team:ml"]),
                ("code", "print(x)", ["step:b"]),
            ]
        ),
        {"steps_defaults": ["label:team:data", "annotation:owner:me", "cache:disabled"]},
    )
    p = inspect_notebook(path)
    assert p.step("a").pod.limits == {"cpu": "2"}
    assert p.step("a").pod.labels == {"team": "data"}
    assert p.step("b").pod.labels == {"team": "data"}
    assert p.step("b").pod.annotations == {"owner": "me"}
    (w,) = warnings(p)
    assert w.startswith("notebook metadata: tag 'cache:disabled' (on every step) is ignored")

    # Kale's API form: settings by kind
    secret = {"TOKEN": {"secret_name": "api", "secret_key": "token"}}
    _with_metadata(path, {"steps_defaults": {"limits": {"cpu": "4"}, "secrets": secret}})
    p = inspect_notebook(path)
    assert p.step("a").pod.limits == p.step("b").pod.limits == {"cpu": "4"}
    assert p.step("b").pod.secrets == {"TOKEN": ("api", "token")}
    assert p.step("a").pod.labels == {"team": "ml"}


def test_kubeflow_only_tags_are_named_in_warnings(make_notebook: MakeNb) -> None:
    path = make_notebook(
        [
            (
                "code",
                "x = 1",
                [
                    "step:train",
                    "cache:sometimes",
                    "image:python:3.12-slim",
                    "report:disabled",
                ],
            ),
        ]
    )
    proc = jup2kub("inspect", path)
    assert proc.returncode == 0, proc.stderr
    lines = [line for line in proc.stderr.splitlines() if line.startswith("warning: cell 0: tag")]
    for tag, instead in [
        ("cache:sometimes", "opts that step in or out"),
        ("image:python:3.12-slim", "--base-image"),
        ("report:disabled", "results notebook"),
    ]:
        assert any(f"'{tag}' (on step 'train') is ignored" in ln and instead in ln for ln in lines)


def test_quantity_grammar_matches_the_chart_schema() -> None:
    from jup2kub.chart.schema import SCHEMA_BASE, SKELETON

    schema = json.loads((SKELETON / SCHEMA_BASE).read_text())
    assert schema["definitions"]["quantity"]["pattern"] == QUANTITY.pattern


# --------------------------------------------------------------------------- Kale's examples

KALE_EXAMPLES = Path(__file__).parent / "kale"
TITANIC = KALE_EXAMPLES / "titanic" / "titanic_dataset_ml.ipynb"

#: Kale 2.3's own split of its titanic example (NotebookProcessor.parse_notebook; cells 3 and
#: 4, the imports and functions, are prepended to every step).
TITANIC_STEPS: Sequence[tuple[str, list[int]]] = [
    ("data-loading", [5, 6, 8, 9, 10]),
    ("data-preprocessing", [23, 25, 27, 29, 31, 32, 34]),
    ("dataconversion", [35, 37, 39, 41, 43, 45, 47]),
    ("featureengineering", [50, 52, 54, 55]),
    ("randomforest", [57]),
    ("logisticregression", [59]),
    ("naivebayes", [61]),
    ("svm", [63]),
    ("decisiontree", [65]),
    ("result", [67]),
]


def test_titanic_splits_as_kale_splits_it() -> None:
    split = split_notebook(load_notebook(TITANIC))
    assert [(s.name, s.cells) for s in split.steps] == list(TITANIC_STEPS)
    assert split.prelude == [3, 4]
    assert split.skipped == [12, 14, 16, 18, 20, 24]
    assert [w.cell for w in split.warnings] == [57, 59, 61, 63, 65]  # report:disabled
    p = inspect_notebook(TITANIC)
    assert p.step("result").after == [
        "randomforest",
        "logisticregression",
        "naivebayes",
        "svm",
        "decisiontree",
    ]


# --------------------------------------------------------------------------- the chart


def _gpu_notebook(make_notebook: MakeNb, *extra_tags: str) -> Path:
    return make_notebook(
        [
            (
                "code",
                "x = 1",
                [
                    "step:train",
                    "limit:nvidia.com/gpu:1",
                    "limit:memory:4Gi",
                    "label:team:ml",
                    "annotation:example.com/source:s3://bucket/key",
                    "secret:db-credentials:password:DB_PASSWORD",
                    *extra_tags,
                ],
            ),
            ("code", "print(x)", ["step:report", "prev:train"]),
        ],
        name="gpu.ipynb",
    )


def test_limits_labels_and_annotations_reach_the_step_deployment(
    make_notebook: MakeNb, tmp_path: Path
) -> None:
    from jup2kub.api import build
    from tests.test_chart import PROD_EFS, by_kind, run_helm, validate_strict

    _, out = build(_gpu_notebook(make_notebook), tmp_path / "out", image_build=None)
    for values in ("values.yaml", "values-dev.yaml", "values-prod.yaml"):
        run_helm("lint", "--strict", str(out), "-f", str(out / values), "--set", PROD_EFS)
    objects = [o for o in yaml.safe_load_all(run_helm("template", "rel", str(out)).stdout) if o]
    validate_strict(objects)
    deployments = by_kind(objects, "Deployment")
    train = deployments["rel-gpu-train"]["spec"]["template"]
    resources = train["spec"]["containers"][0]["resources"]
    # an extended resource: requests equal limits (Kubernetes requires it when both are set)
    assert resources["limits"]["nvidia.com/gpu"] == resources["requests"]["nvidia.com/gpu"] == "1"
    assert resources["limits"]["memory"] == resources["requests"]["memory"] == "4Gi"
    assert resources["limits"]["cpu"] == "1"  # stepDefaults still apply to the rest
    assert train["metadata"]["labels"]["team"] == "ml"
    assert train["metadata"]["labels"]["app.kubernetes.io/component"] == "train"
    annotations = dict(train["metadata"]["annotations"])
    assert annotations.pop("checksum/code")  # the chart's own: rolls the pods on a code edit
    assert annotations == {"example.com/source": "s3://bucket/key"}
    env = {e["name"]: e for e in train["spec"]["containers"][0]["env"]}
    assert env["DB_PASSWORD"]["valueFrom"] == {
        "secretKeyRef": {"name": "db-credentials", "key": "password"}
    }
    report = deployments["rel-gpu-report"]["spec"]["template"]
    assert "nvidia.com/gpu" not in report["spec"]["containers"][0]["resources"]["limits"]
    assert "team" not in report["metadata"]["labels"]
    assert list(report["metadata"]["annotations"]) == ["checksum/code"]  # the chart's own only
    assert "DB_PASSWORD" not in {e["name"] for e in report["spec"]["containers"][0]["env"]}
    assert set(report["metadata"]["labels"]) == RESERVED_POD_LABELS  # all the chart's own

    # values still override the tags, key by key
    override = tmp_path / "more-gpus.yaml"
    override.write_text(
        yaml.safe_dump(
            {
                "steps": {
                    "train": {
                        "resources": {
                            "requests": {"nvidia.com/gpu": 2},
                            "limits": {"nvidia.com/gpu": 2},
                        }
                    }
                }
            }
        )
    )
    objects = [
        o
        for o in yaml.safe_load_all(
            run_helm("template", "rel", str(out), "-f", str(override)).stdout
        )
        if o
    ]
    train = by_kind(objects, "Deployment")["rel-gpu-train"]["spec"]["template"]
    assert train["spec"]["containers"][0]["resources"]["limits"]["nvidia.com/gpu"] == 2


def test_a_label_the_chart_sets_is_refused(make_notebook: MakeNb, tmp_path: Path) -> None:
    path = _gpu_notebook(make_notebook, "label:app.kubernetes.io/component:mine")
    proc = jup2kub("build", path, "-o", tmp_path / "out", "--no-images")
    assert proc.returncode == 2, proc.stderr
    assert "label:app.kubernetes.io/component" in proc.stderr
    assert "step 'train'" in proc.stderr and "reserved:" in proc.stderr


# --------------------------------------------------------------------------- runs


def _run_and_compare(path: Path, tmp_path: Path, values: Sequence[str] = ()) -> Pipeline:
    """``jup2kub run`` equals nbclient top to bottom: outputs of every cell but the skipped
    ones (Kale does not run those), the final values crossing steps (or only ``values``, when
    some are rebound after they cross), and the files written."""
    from tests.support.equivalence import differing_files, reference_run, same, shown

    pipeline = inspect_notebook(path)
    last_writer = {
        v: s.name for s in pipeline.steps for v in s.outputs if v in values or not values
    }
    ref_dir, run_dir = tmp_path / "reference", tmp_path / "pipeline"
    ref_dir.mkdir()
    run_dir.mkdir()
    ref_nb, ref_values = reference_run(path, sorted(last_writer), ref_dir)
    proc = jup2kub("run", path, "--workdir", run_dir / "work", "--jobs", "2", cwd=run_dir)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    run_id = re.search(r"run (\S+): succeeded", proc.stdout).group(1)  # type: ignore[union-attr]
    result = nbformat.read(run_dir / "work" / "runs" / run_id / "result.ipynb", as_version=4)

    assert shown(result, pipeline.skipped) == shown(ref_nb, pipeline.skipped)
    store = StateStore(run_dir / "work")
    assert set(ref_values) == set(last_writer)
    for var, step in last_writer.items():
        assert same(ref_values[var], store.load_value(run_id, step, var)), var
    assert differing_files(ref_dir, run_dir) == []
    return pipeline


def test_kale_style_notebook_runs_like_nbclient(make_notebook: MakeNb, tmp_path: Path) -> None:
    """The cells after a ``skip`` cell run, in the step before it."""
    path = make_notebook(
        [
            ("md", "# A notebook tagged for Kale"),
            ("code", "import json\nimport statistics", ["imports"]),
            ("code", "def summarize(values):\n    return statistics.mean(values)", ["functions"]),
            ("code", "n = 8\nscale = 2", ["pipeline-parameters"]),
            ("code", "offset = 1"),  # a parameter too
            ("code", "raw = [i * scale + offset for i in range(n)]", ["step:load_data"]),
            ("code", "print('loaded', raw)"),
            ("code", "print('peek', raw[:2])", ["skip"]),
            ("code", "cleaned = [v for v in raw if v % 3]"),  # after the skip: load_data
            ("code", "print('cleaned', cleaned)"),
            (
                "code",
                "mean = summarize(cleaned)\nprint(json.dumps({'mean': mean}))",
                ["step:summary", "prev:load_data", "limit:cpu:500m", "label:team:ml"],
            ),
            ("code", "mean", ["skip"]),
            ("code", "with open('mean.json', 'w') as f:\n    json.dump({'mean': mean}, f)"),
            ("code", "print(mean * 2)", ["pipeline-metrics"]),
        ]
    )
    pipeline = _run_and_compare(path, tmp_path)
    assert steps(pipeline) == [
        ("load-data", [5, 6, 8, 9]),
        ("summary", [10, 12]),
        ("pipeline-metrics", [13]),
    ]
    assert pipeline.skipped == [7, 11]
    assert pipeline.parameter_cells == [3, 4]
    assert pipeline.step("summary").inputs == {"cleaned": "load-data"}


EDITS = [
    ("import seaborn as sns\n", ""),
    ("np.random.randint(", "np.random.default_rng(0).integers("),
    ("(n_estimators=100)", "(n_estimators=100, random_state=0)"),
    ("DecisionTreeClassifier()", "DecisionTreeClassifier(random_state=0)"),
]


def _titanic_as_tested(tmp_path: Path) -> Path:
    """Kale's titanic example, with the edits a machine without network and plotting needs and
    that make two runs comparable; the cells and tags are untouched otherwise:

    - the CSVs are read from the copies next to the notebook, not from GitHub;
    - ``seaborn`` is not imported: only the skip cells use it (and Kale does not run those), so
      their code is replaced by a comment (its 0.9-era API fails with today's seaborn anyway);
    - the random age fill draws from a seeded generator of its own and the random forest and
      decision tree get a ``random_state``, so the pipeline and nbclient draw the same numbers.
    """
    nb = nbformat.read(TITANIC, as_version=4)
    data = TITANIC.parent / "data"
    for cell in nb.cells:
        if cell.cell_type != "code":
            continue
        tags = cell.metadata.get("tags", [])
        source = cell.source
        for name in ("train", "test"):
            url = (
                "https://raw.githubusercontent.com/kubeflow/kale/refs/heads/main/"
                f"examples/titanic-ml-dataset/data/{name}.csv"
            )
            source = source.replace(repr(url).replace("'", '"'), repr(str(data / f"{name}.csv")))
        for old, new in EDITS:
            source = source.replace(old, new)
        cell.source = "# not run: a plot (Kale skips it)" if "skip" in tags else source
    path = tmp_path / "titanic_dataset_ml.ipynb"
    nbformat.write(nb, path)
    return path


def test_kales_titanic_example_runs_like_nbclient(tmp_path: Path) -> None:
    path = _titanic_as_tested(tmp_path)
    assert "raw.githubusercontent.com" not in path.read_text()
    final = ["train_df_eng", "train_labels", "acc_random_forest", "acc_log"]
    final += ["acc_gaussian", "acc_linear_svc", "acc_decision_tree"]
    pipeline = _run_and_compare(path, tmp_path, final)
    assert steps(pipeline) == list(TITANIC_STEPS)
    # the preprocessing after the skip cell (cells 25-34) ran: its columns reached the models
    assert pipeline.step("dataconversion").inputs["train_df_proc"] == "data-preprocessing"
    assert {"acc_random_forest", "acc_log", "acc_gaussian", "acc_linear_svc"} <= set(
        pipeline.step("result").inputs
    )


def test_build_and_run_show_the_warnings(make_notebook: MakeNb, tmp_path: Path) -> None:
    path = make_notebook(
        [("code", "x = 1", ["step:a", "report:disabled"]), ("code", "print(x)", ["step:b"])]
    )
    expected = "warning: cell 0: tag 'report:disabled' (on step 'a') is ignored"
    built = jup2kub("build", path, "-o", tmp_path / "out", "--no-images")
    assert built.returncode == 0, built.stderr
    assert expected in built.stderr
    ran = jup2kub("run", path, "--workdir", tmp_path / "w", cwd=tmp_path)
    assert ran.returncode == 0, ran.stderr
    assert expected in ran.stderr
