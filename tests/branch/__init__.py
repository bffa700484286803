"""
Tests for the branch sales server, aggregator and main.csv writer.
"""
