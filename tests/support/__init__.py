"""Helpers shared by the test suites, the e2e tests and the benchmarks (not fixtures: those stay
in conftest.py files). Imported as ``tests.support.<module>``: pytest puts the repository root on
sys.path (``pythonpath`` in pyproject.toml), so no test edits sys.path to reach them."""
