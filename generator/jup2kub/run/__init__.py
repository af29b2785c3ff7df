"""Runs on this machine: one run procedure (``executor``) over two executors (``local``: one
process per step; ``kafka``: the cluster's runtime on a broker), the results notebook
(``results``), and the Kafka client that submits and follows runs of a deployed pipeline
(``remote``)."""
