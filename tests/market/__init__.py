"""
Tests for the online marketplace.
"""
