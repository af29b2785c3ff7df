"""The deployed pipeline on a cluster: install (``deploy``), watch (``readiness``), report
(``status``) and read runs from the step pods (``pods``), through helm and the Kubernetes API."""
