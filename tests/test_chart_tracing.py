"""The chart's traces (issue 30): ``tracing.otlpEndpoint`` sets the standard OpenTelemetry
environment on every step (the names: ``jup2kub_runtime.contract.tracing``, what the runtime
reads) and opens the endpoint's port in the steps' NetworkPolicy; off by default. Rendered by
the real ``helm template`` and validated strictly."""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

import pytest
import yaml

from jup2kub_runtime.contract import tracing as names
from tests.test_chart import (
    by_kind,
    charts,  # noqa: F401  (the fixture)
    component,
    env_of,
    render,
    run_helm,
    validate_strict,
    write_values,  # noqa: F401  (the fixture)
)

ENDPOINT = "http://otel-collector.observability:4318"
OTEL = (names.TRACES_EXPORTER_ENV, names.ENDPOINT_ENV, names.SERVICE_NAME_ENV)


def _egress_ports(policy: Mapping[str, Any]) -> list[list[int]]:
    """The ports of each egress rule open to any address (no ``to``)."""
    return [
        [p["port"] for p in rule["ports"]] for rule in policy["spec"]["egress"] if "to" not in rule
    ]


def _steps(objects: Sequence[Mapping[str, Any]]) -> dict[str, dict[str, Any]]:
    steps = {
        n: d
        for n, d in by_kind(objects, "Deployment").items()
        if d["spec"]["template"]["metadata"]["labels"].get("jup2kub.io/role") == "step"
    }
    assert len(steps) >= 3
    return steps


def test_off_by_default(charts: dict[str, Path]) -> None:  # noqa: F811
    objects = render(charts["diamond"])
    for deployment in _steps(objects).values():
        assert not set(OTEL) & set(env_of(deployment))
    # the in-cluster Kafka's rule has a `to`: no rule open to any address
    assert _egress_ports(component(objects, "NetworkPolicy", "steps")) == []


def test_the_endpoint_reaches_every_step_and_its_port(charts: dict[str, Path]) -> None:  # noqa: F811
    objects = render(charts["diamond"], sets=[f"tracing.otlpEndpoint={ENDPOINT}"])
    validate_strict(objects)
    steps = _steps(objects)
    for deployment in steps.values():
        env = env_of(deployment)
        # what the runtime reads to turn traces on (and its spans' service: the step)
        assert names.enabled(env)
        assert env[names.TRACES_EXPORTER_ENV] == names.OTLP
        assert env[names.ENDPOINT_ENV] == ENDPOINT
        assert env[names.SERVICE_NAME_ENV] == env["J2K_STEP"]
    assert {env_of(d)["J2K_STEP"] for d in steps.values()} == {"load", "left", "right", "join"}
    assert _egress_ports(component(objects, "NetworkPolicy", "steps")) == [[4318]]
    # the other policies do not change: only steps export spans
    kafka = component(objects, "NetworkPolicy", "kafka")
    assert kafka == component(render(charts["diamond"]), "NetworkPolicy", "kafka")


@pytest.mark.parametrize(
    ("endpoint", "port"),
    [
        ("https://traces.example.com", 443),
        ("http://collector/otlp", 80),
        ("http://[::1]:4319", 4319),
    ],
)
def test_the_port_of_an_endpoint_without_one_is_its_schemes(
    charts: dict[str, Path],  # noqa: F811
    endpoint: str,
    port: int,
) -> None:
    objects = render(charts["linear"], sets=[f"tracing.otlpEndpoint={endpoint}"])
    assert _egress_ports(component(objects, "NetworkPolicy", "steps")) == [[port]]


@pytest.mark.parametrize("endpoint", ["otel-collector:4318", "grpc://collector:4317", "http://"])
def test_the_schema_refuses_what_is_not_an_http_url(
    charts: dict[str, Path],  # noqa: F811
    endpoint: str,
    write_values: Callable[..., str],  # noqa: F811
) -> None:
    path = write_values({"tracing": {"otlpEndpoint": endpoint}})
    template = run_helm("template", "rel", str(charts["linear"]), "-f", path, ok=False)
    assert template.returncode != 0
    assert "schema" in template.stderr and "otlpEndpoint" in template.stderr


def test_readme_documents_the_spans(charts: dict[str, Path]) -> None:  # noqa: F811
    readme = (charts["diamond"] / "README.md").read_text()
    pipeline = yaml.safe_load((charts["diamond"] / "values.yaml").read_text())["pipeline"]["name"]
    assert "| `tracing.otlpEndpoint` |" in readme
    assert f"`{names.run_span_name(pipeline)}`" in readme
    assert f"`{names.TRACEPARENT_HEADER}`" in readme
    for key, _, _ in names.ATTRIBUTES:
        assert f"| `{key}` |" in readme, key
    for env in OTEL:
        assert f"`{env}" in readme, env
