"""What the command line sets up before anything else is imported.

jsonschema (imported by nbformat) imports the optional checkers of string formats that are
installed: ``rfc3987_syntax`` ("iri") builds a Lark grammar at import, about 0.6 s added to every
command where JupyterLab is installed (its jupyter-events requires them); ``rfc3986_validator``
and ``isoduration`` ("uri", "duration") cost another 25 ms together, with smaller ones. Nothing
Jup2Kub validates checks formats (nbformat and the composition schema validate without a format
checker), so the command line's own process goes without them. Only this process: step
processes and kernels are started afresh and import what the notebook imports.
"""

from __future__ import annotations

import sys

#: jsonschema._format imports each under ``suppress(ImportError)``: None makes that import fail
FORMAT_CHECKERS = (
    "rfc3987_syntax",
    "rfc3986_validator",
    "isoduration",
    "rfc3339_validator",
    "webcolors",
    "uri_template",
)

for _name in FORMAT_CHECKERS:
    # None makes the import fail (as documented for sys.modules); typeshed admits modules only
    sys.modules.setdefault(_name, None)  # type: ignore[arg-type]
