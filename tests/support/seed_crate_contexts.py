"""Seed a rocrate-validator HTTP cache with vendored JSON-LD context documents, so that its
``--offline`` mode resolves a crate's ``@context`` URLs without the network.

Run with the validator's own Python (its venv has requests-cache):
``python seed_crate_contexts.py CACHE_PATH URL=FILE ...``. The validator opens its cache as
``requests_cache.CachedSession(cache_name=CACHE_PATH, backend="sqlite")``
(``rocrate_validator.utils.http.HttpRequester``) and in offline mode answers only from it, keyed
by method and URL: each document is stored as a 200 answer to ``GET URL``.
"""

from __future__ import annotations

import io
import sys
from pathlib import Path

import requests
from requests_cache import CachedSession
from urllib3.response import HTTPResponse


def seed(cache_path: str, documents: dict[str, Path]) -> None:
    session = CachedSession(cache_name=cache_path, backend="sqlite", expire_after=-1)
    for url, path in documents.items():
        request = requests.Request("GET", url).prepare()
        response = requests.Response()
        response.status_code = 200
        response.url = url
        response.request = request
        response.headers["Content-Type"] = "application/ld+json"
        response._content = path.read_bytes()
        response.raw = HTTPResponse(
            body=io.BytesIO(b""),
            headers=dict(response.headers),
            status=200,
            preload_content=False,
            request_url=url,
        )
        response.encoding = "utf-8"
        session.cache.save_response(response)
    session.close()


if __name__ == "__main__":
    pairs = (arg.split("=", 1) for arg in sys.argv[2:])
    seed(sys.argv[1], {url: Path(file) for url, file in pairs})
