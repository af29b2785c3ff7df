"""Validate an RO-Crate offline with rocrate-validator, its HTTP cache seeded first with
vendored JSON-LD context documents, so that the crate's ``@context`` URLs resolve without the
network. Prints ``{"passed": bool, "issues": [...], "profiles": [...]}`` as JSON.

Run with the validator's own Python (its venv has rocrate_validator and requests-cache):
``python validate_crate_offline.py CRATE PROFILE SEVERITY CACHE_PATH URL=FILE ...``.
The validator opens its cache as ``requests_cache.CachedSession(cache_name=CACHE_PATH,
backend="sqlite")`` (``rocrate_validator.utils.http.HttpRequester``) and with ``offline`` answers
only from it, keyed by method and URL: each document is stored as a 200 answer to ``GET URL``.
"""

from __future__ import annotations

import io
import json
import sys
from pathlib import Path

import requests
from requests_cache import CachedSession
from rocrate_validator import services
from rocrate_validator.models import Severity, ValidationSettings
from urllib3.response import HTTPResponse


def seed(cache_path: str, documents: dict[str, Path]) -> None:
    session = CachedSession(cache_name=cache_path, backend="sqlite", expire_after=-1)
    for url, path in documents.items():
        response = requests.Response()
        response.status_code = 200
        response.url = url
        response.request = requests.Request("GET", url).prepare()
        response.headers["Content-Type"] = "application/ld+json"
        response._content = path.read_bytes()
        response.encoding = "utf-8"
        response.raw = HTTPResponse(
            body=io.BytesIO(b""),
            headers=dict(response.headers),
            status=200,
            preload_content=False,
            request_url=url,
        )
        session.cache.save_response(response)
    session.close()


def validate(crate: str, profile: str, severity: str, cache_path: str) -> dict[str, object]:
    settings = ValidationSettings(
        rocrate_uri=crate,
        profile_identifier=profile,
        requirement_severity=Severity[severity],
        offline=True,
        cache_path=Path(cache_path),
    )
    result = services.validate(settings)
    issues = [
        {"severity": i.severity.name, "check": i.check.name, "message": i.message}
        for i in result.get_issues(Severity[severity])
    ]
    return {"passed": result.passed(Severity[severity]), "issues": issues}


if __name__ == "__main__":
    crate, profile, severity, cache = sys.argv[1:5]
    pairs = (arg.split("=", 1) for arg in sys.argv[5:])
    seed(cache, {url: Path(file) for url, file in pairs})
    print(json.dumps(validate(crate, profile, severity, cache)))
