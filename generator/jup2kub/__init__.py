"""Jup2Kub: a Jupyter notebook becomes a fault-tolerant pipeline on Kubernetes."""

__version__ = "0.1.0"
