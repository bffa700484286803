"""
The replication state machine as a primary, one rule a test: orders
batched, appended and sent, replies counted, commits advanced, reads
answered, the log compacted.
"""
