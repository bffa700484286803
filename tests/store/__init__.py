"""Tests of the store: one contract suite run against every backend."""
