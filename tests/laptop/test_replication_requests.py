"""
The replication state machine's customer side, one rule a test: requests
admitted, routed, forwarded, retried and expired.
"""
