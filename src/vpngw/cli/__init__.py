"""The ``vpngw`` command line."""
