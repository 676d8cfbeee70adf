"""The VectorIndex contract, each behaviour written once and run on every backend (see conftest.py)."""
