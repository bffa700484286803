"""Tests for the laptop-order service."""
