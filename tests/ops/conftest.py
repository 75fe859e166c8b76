"""The lab fixture of the data-plane tests, for the metrics scrape with a real tunnel."""

from tests.dataplane.conftest import lab_world  # noqa: F401  (a fixture, used by name)
