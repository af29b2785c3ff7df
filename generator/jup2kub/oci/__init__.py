"""Sharing through OCI registries: references, the tools that move and sign artifacts (ORAS,
cosign, helm's OCI support), and what they record."""
