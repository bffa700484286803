"""
The laptop-order service: customer id -> last order number, replicated
primary-backup over views (see ``replication``), wire-compatible with the
existing C++ client (``protocols.laptop``).
"""
