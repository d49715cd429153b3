"""Suite-wide fixtures: a real node process with real certificates (``tests/fixtures/cluster.py``)."""

pytest_plugins = ["tests.fixtures.cluster"]
