"""The test suite, run with ``trial tests``."""
