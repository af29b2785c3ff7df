"""Provenance: an RO-Crate for every run (Workflow Run Crate profiles, Provenance Run Crate
level): ``local`` for runs whose state is on this machine, ``crate`` for the JSON-LD,
``export`` for the zip ``jup2kub runs export`` writes."""
