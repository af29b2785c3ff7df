"""``python -m e2e.build``: build every binary of the cluster into the cache."""

from __future__ import annotations

from e2e.build.components import build_all
from e2e.host.layout import HOME

build_all(HOME)
