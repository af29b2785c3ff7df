"""OCI references (pure logic): what is accepted, what is refused with which reason, and which
registries are spoken to over plain HTTP."""

from __future__ import annotations

import pytest

from jup2kub.errors import UsageError
from jup2kub.oci.references import PLAIN_HTTP_ENV, Reference, parse, parse_oci_url, plain_http

DIGEST = "sha256:" + "ab" * 32


def test_parses_tag_digest_and_port() -> None:
    ref = parse(f"registry.example.org:5000/team/step-a:1.0@{DIGEST}")
    assert ref == Reference("registry.example.org:5000", "team/step-a", "1.0", DIGEST)
    assert str(ref) == f"registry.example.org:5000/team/step-a:1.0@{DIGEST}"
    assert str(ref.by_digest()) == f"registry.example.org:5000/team/step-a@{DIGEST}"
    assert parse("localhost/x").registry == "localhost"
    assert parse_oci_url("oci://127.0.0.1:5000/charts").repository == "charts"


@pytest.mark.parametrize(
    ("text", "reason"),
    [
        ("step-a:1.0", "names no registry host"),
        ("team/step-a", "is not a registry host"),
        ("r.example.org/Team/step", "is not a repository"),
        ("r.example.org/team/step:bad tag", "is not a tag"),
        ("r.example.org/team/step@sha256:abc", "is not a sha256 digest"),
    ],
)
def test_refuses_with_the_reason(text: str, reason: str) -> None:
    with pytest.raises(UsageError, match=reason):
        parse(text)


def test_oci_url_needs_the_scheme() -> None:
    with pytest.raises(UsageError, match="not an oci:// URL"):
        parse_oci_url("https://r.example.org/charts")


def test_plain_http_for_loopback_and_named_hosts(monkeypatch: pytest.MonkeyPatch) -> None:
    assert plain_http("127.0.0.1:5000") and plain_http("127.8.0.1:80") and plain_http("localhost")
    assert plain_http("[::1]:5000")
    assert not plain_http("r.example.org:5000")
    monkeypatch.setenv(PLAIN_HTTP_ENV, "r.example.org:5000, other.lan")
    assert plain_http("r.example.org:5000") and plain_http("other.lan")
    assert not plain_http("r.example.org")
