"""What the command line sets up before anything else is imported.

jsonschema (imported by nbformat) imports ``rfc3987_syntax`` when it is installed, to check the
"iri" string formats, and that module builds a Lark grammar at import: about 0.6 s added to
every command where JupyterLab is installed (its jupyter-events requires it). No schema Jup2Kub
validates uses those formats, so the command line's own process goes without them. Only this
process: step processes and kernels are started afresh and import what the notebook imports.
"""

from __future__ import annotations

import sys

sys.modules.setdefault("rfc3987_syntax", None)  # type: ignore[arg-type]
