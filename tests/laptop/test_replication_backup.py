"""
The replication state machine as a backup, one rule a test: entries and
snapshots received and checked, forwarded requests and their replies.
"""
