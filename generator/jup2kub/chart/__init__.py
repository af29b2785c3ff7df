"""The deliverable: a self-contained Helm chart rendered from a pipeline's plan.

``options`` (the build's choices), ``schema`` (values.schema.json, the README's values table),
``render`` (every file, pure), ``write`` (atomically into OUT), ``package`` (.tgz + repo index).
The chart folder itself is ``skeleton/``.
"""
